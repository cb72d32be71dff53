"""Loading validated rows into the contract tables — shared by every source
(manifest folder, synthetic atlas, Allen API).

A source builds a :class:`Batch` (one Arrow/polars table per warehouse table, already
validated), then :func:`load` inserts, in one transaction, only the rows whose key is not in
the warehouse yet. Loading the same batch twice therefore adds nothing, and a batch that
extends an earlier one adds only the new rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa

from ishwh.errors import IshwhError
from ishwh.store import registered
from ishwh.warehouse import transaction

# table -> key columns, in load order (parents first).
TABLE_KEYS: dict[str, tuple[str, ...]] = {
    "genes": ("gene_id",),
    "structures": ("structure_id",),
    "experiments": ("experiment_id",),
    "sections": ("section_id",),
    "annotations": ("experiment_id", "structure_id"),
    "withheld_annotations": ("experiment_id", "structure_id"),
    "gene_labels": ("gene_id", "task"),
    "expression_grids": ("experiment_id",),
}


@dataclass
class Batch:
    """Rows for each contract table; any may be ``None`` (nothing to load)."""

    genes: Any = None
    structures: Any = None
    experiments: Any = None
    sections: Any = None
    annotations: Any = None
    withheld_annotations: Any = None  # the truth of unannotated stages (evaluation only)
    gene_labels: Any = None
    expression_grids: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def tables(self) -> dict[str, pa.Table]:
        out = {}
        for f in fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if value is None:
                continue
            out[f.name] = _to_arrow(value)
        return out


def _to_arrow(value: Any) -> pa.Table:
    if isinstance(value, pa.Table):
        return value
    if isinstance(value, pl.DataFrame):
        return value.to_arrow()
    if isinstance(value, list):
        return pl.DataFrame(value, infer_schema_length=None).to_arrow()
    raise TypeError(f"cannot load {type(value).__name__}")


def insert_new(con: duckdb.DuckDBPyConnection, table: str, rows: pa.Table) -> int:
    """Insert the rows of ``rows`` whose key is not yet in ``table``; return how many."""
    if rows.num_rows == 0:
        return 0
    keys = TABLE_KEYS[table]
    cols = [c for c in rows.column_names]
    with registered(con, rows, "_ishwh_new"):
        before = con.execute(f"select count(*) from {table}").fetchall()[0][0]
        match = " and ".join(f"t.{k} = n.{k}" for k in keys)
        col_list = ", ".join(cols)
        con.execute(
            f"insert into {table} ({col_list}) "
            f"select distinct on ({', '.join('n.' + k for k in keys)}) "
            f"{', '.join('n.' + c for c in cols)} from _ishwh_new n "
            f"where not exists (select 1 from {table} t where {match})"
        ).fetchall()
        after = con.execute(f"select count(*) from {table}").fetchall()[0][0]
    return int(after - before)


# Secondary unique keys of the loaded tables: a clash there is not caught by ``insert_new``'s
# key match and aborts the load; :func:`_explain_clash` names the rows and their sources.
_UNIQUE_KEYS: dict[str, tuple[str, ...]] = {
    "genes": ("acronym",),
    "sections": ("experiment_id", "section_number"),
}


def _sources(con: duckdb.DuckDBPyConnection, table: str, value: Any) -> str:
    """Where the warehouse's rows of a gene or experiment came from (experiments.source)."""
    col = "gene_id" if table == "genes" else "experiment_id"
    rows = con.execute(f"select distinct source from experiments where {col} = ? "
                       "and source is not null order by 1 limit 3", [value]).fetchall()
    return ", ".join(r[0] for r in rows) or "an earlier ingest"


def _explain_clash(con: duckdb.DuckDBPyConnection, tables: dict[str, pa.Table]) -> str | None:
    """One line naming the first secondary-key clash between a batch and the warehouse."""
    batch_source = None
    if "experiments" in tables and "source" in tables["experiments"].column_names:
        found = [s for s in tables["experiments"].column("source").unique().to_pylist() if s]
        batch_source = ", ".join(found[:3]) if found else None
    coming = f" by this load ({batch_source})" if batch_source else " by this load"
    for table, unique in _UNIQUE_KEYS.items():
        rows = tables.get(table)
        keys = TABLE_KEYS[table]
        if rows is None or rows.num_rows == 0 or not set(unique + keys) <= set(rows.column_names):
            continue
        with registered(con, rows.select(list(keys + unique)), "_ishwh_clash"):
            on = " and ".join(f"t.{c} = n.{c}" for c in unique)
            differ = " or ".join(f"t.{k} <> n.{k}" for k in keys)
            hit = con.execute(
                f"select {', '.join('n.' + c for c in unique + keys)}, "
                f"{', '.join('t.' + k for k in keys)} "
                f"from _ishwh_clash n join {table} t on {on} where {differ} limit 1"
            ).fetchall()
        if not hit:
            continue
        row = hit[0]
        what = ", ".join(f"{c} {v}" for c, v in zip(unique, row[:len(unique)], strict=True))
        new_key = row[len(unique):len(unique) + len(keys)]
        old_key = row[len(unique) + len(keys):]
        return (f"{table}: {what} is already in the warehouse as {keys[0]} {old_key[0]} "
                f"(from {_sources(con, table, old_key[0])}) but is given {keys[0]} "
                f"{new_key[0]}{coming}")
    return None


def load(con: duckdb.DuckDBPyConnection, batch: Batch) -> dict[str, int]:
    """Load a batch all-or-nothing; return the number of new rows per table."""
    tables = batch.tables()
    added: dict[str, int] = {}
    current = ""
    try:
        with transaction(con):
            for name in TABLE_KEYS:
                if name in tables:
                    current = name
                    added[name] = insert_new(con, name, tables[name])
    except duckdb.ConstraintException as exc:
        cause = _explain_clash(con, tables) or str(exc).splitlines()[0]
        raise IshwhError(
            f"rows for {current} clash with the warehouse, nothing was loaded: {cause}",
            hint="give the clashing genes or sections other names or numbers, or load into "
                 "another warehouse",
        ) from exc
    except (duckdb.ConversionException, duckdb.BinderException) as exc:
        # A source built rows with a wrong column name or type: a bug in that source.
        raise IshwhError(
            f"rows for {current} do not fit the table, nothing was loaded: "
            f"{str(exc).splitlines()[0]}"
        ) from exc
    return added
