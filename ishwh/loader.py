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
        raise IshwhError(
            f"rows for {current} violate the warehouse schema, nothing was loaded: "
            f"{str(exc).splitlines()[0]}"
        ) from exc
    except (duckdb.ConversionException, duckdb.BinderException) as exc:
        # A source built rows with a wrong column name or type: a bug in that source.
        raise IshwhError(
            f"rows for {current} do not fit the table, nothing was loaded: "
            f"{str(exc).splitlines()[0]}"
        ) from exc
    return added
