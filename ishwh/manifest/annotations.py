"""The manifest's calls: ``annotations.csv`` (experiment x structure -> pattern, intensity,
density; checked vectorised, for millions of rows) and ``gene_labels.csv`` (gene x task ->
0/1), checked against the sections file and the warehouse."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa

from ishwh.manifest.csvfiles import (
    ANNOTATIONS_COLUMNS,
    GENE_LABELS_COLUMNS,
    SCHEMAS,
    Problems,
    WarehouseView,
    at,
    read_csv,
    read_csv_frame,
    table,
)
from ishwh.store import registered
from ishwh.vocab import GRADES, PATTERNS

_TRUE = {"1", "true", "yes"}
_FALSE = {"0", "false", "no"}


def known_experiments(
    con: duckdb.DuckDBPyConnection, ids: Iterable[int], manifest: dict[int, Any]
) -> set[int]:
    """The experiments of ``ids`` that the manifest or the warehouse defines."""
    ask = sorted({i for i in ids if i not in manifest})
    if not ask:
        return set(manifest)
    with registered(con, pa.table({"experiment_id": pa.array(ask, pa.int64())}), "_ishwh_ids"):
        found = con.execute(
            "select experiment_id from _ishwh_ids join experiments using (experiment_id)"
        ).fetchall()
    return set(manifest) | {r[0] for r in found}


def annotations_rows(
    con: duckdb.DuckDBPyConnection, folder: Path, experiments: dict[int, Any],
    structures: dict[int, str], by_acronym: dict[str, list[int]], problems: Problems,
) -> pa.Table:
    """Check annotations.csv (vectorised) and return its rows for the loader."""
    name = "annotations.csv"
    empty = table("annotations", [])
    if not (folder / name).is_file():
        return empty
    df = read_csv_frame(folder, name, ANNOTATIONS_COLUMNS, problems)
    if df is None or df.height == 0:
        return empty
    found: list[tuple[int, int, str]] = []  # (line, order within the line, reason)

    def report(rows: pl.DataFrame, order: int, reason: Callable[[dict[str, Any]], str]) -> None:
        found.extend((r["line"], order, reason(r)) for r in rows.iter_rows(named=True))

    # Experiments: an integer, listed in sections.csv or already in the warehouse.
    df = df.with_columns(eid=pl.col("experiment_id").cast(pl.Int64, strict=False))
    report(df.filter(pl.col("eid").is_null()), 0,
           lambda r: f"experiment_id {r['experiment_id']!r} is not an integer")
    known = known_experiments(con, df["eid"].drop_nulls().unique().to_list(), experiments)
    unknown = pl.col("eid").is_not_null() & ~pl.col("eid").is_in(list(known))
    report(df.filter(unknown), 0,
           lambda r: f"unknown experiment {r['eid']} (not in sections.csv nor the warehouse)")
    df = df.with_columns(eid=pl.when(unknown).then(None).otherwise(pl.col("eid")))

    # Structures: an id of the ontology or an unambiguous acronym.
    acronyms = pl.DataFrame(
        {"structure": list(by_acronym),
         "acr_id": [ids[0] if len(ids) == 1 else None for ids in by_acronym.values()],
         "n_ids": [len(ids) for ids in by_acronym.values()]},
        schema={"structure": pl.String, "acr_id": pl.Int64, "n_ids": pl.Int64},
    )
    df = df.with_columns(num=pl.col("structure").cast(pl.Int64, strict=False)).join(
        acronyms, on="structure", how="left", maintain_order="left")
    by_id = pl.col("num").is_not_null()
    bad_id = by_id & ~pl.col("num").is_in(list(structures))
    report(df.filter(bad_id), 1, lambda r: f"unknown structure id {r['num']}")
    report(df.filter(~by_id & pl.col("n_ids").is_null()), 1,
           lambda r: f"unknown structure {r['structure']!r}")
    report(df.filter(~by_id & (pl.col("n_ids") > 1)), 1,
           lambda r: f"structure acronym {r['structure']!r} is ambiguous (ids "
                     f"{', '.join(map(str, sorted(by_acronym[r['structure']])))}); use the id")
    df = df.with_columns(
        sid=pl.when(by_id).then(pl.when(bad_id).then(None).otherwise(pl.col("num")))
        .otherwise(pl.col("acr_id")))

    # Calls: one of the enumeration in any case, or empty for unknown (NULL).
    for order, (col, allowed) in enumerate(
            (("pattern", PATTERNS), ("intensity", GRADES), ("density", GRADES)), start=2):
        low = pl.col(col).str.to_lowercase()
        report(df.filter((low != "") & ~low.is_in(list(allowed))), order,
               lambda r, col=col, allowed=allowed:
               f"bad {col} {r[col]!r} (one of: {', '.join(allowed)}, or empty for unknown)")
        df = df.with_columns(pl.when(low.is_in(list(allowed))).then(low).alias(col))

    # Duplicates: the same experiment and structure twice.
    df = df.filter(pl.col("eid").is_not_null() & pl.col("sid").is_not_null()).with_columns(
        first=pl.col("line").min().over("eid", "sid"))
    report(df.filter(pl.col("line") != pl.col("first")), 5,
           lambda r: f"duplicate annotation of experiment {r['eid']} in structure "
                     f"{structures[r['sid']]} ({r['sid']}); also on line {r['first']}")
    df = df.filter(pl.col("line") == pl.col("first"))

    rows = df.select(experiment_id="eid", structure_id="sid", pattern="pattern",
                     intensity="intensity", density="density", line="line").to_arrow()
    with registered(con, rows, "_ishwh_ann"):
        clashes = con.execute(
            """
            select n.line, n.experiment_id, n.structure_id
            from _ishwh_ann n join annotations a using (experiment_id, structure_id)
            where a.pattern is distinct from n.pattern
               or a.intensity is distinct from n.intensity
               or a.density is distinct from n.density
            """
        ).fetchall()
    found.extend((line, 6, f"experiment {eid} is already annotated differently in structure "
                           f"{structures[sid]} ({sid})") for line, eid, sid in clashes)
    for line, _, reason in sorted(found, key=lambda f: (f[0], f[1])):
        problems.add(at(name, line), reason)
    return rows.drop_columns(["line"]).cast(SCHEMAS["annotations"])


def gene_label_rows(
    con: duckdb.DuckDBPyConnection, folder: Path, genes: dict[str, dict[str, Any]],
    wh: WarehouseView, problems: Problems,
) -> list[dict[str, Any]]:
    """Check gene_labels.csv and return its rows for the loader."""
    name = "gene_labels.csv"
    if not (folder / name).is_file():
        return []
    rows = read_csv(folder, name, GENE_LABELS_COLUMNS, problems) or []
    out, lines, seen = [], [], {}
    for line, row in rows:
        where = at(name, line)
        gene, task, label = row["gene"], row["task"], row["label"].lower()
        gid = genes[gene]["gene_id"] if gene in genes else (wh.genes.get(gene) or (None,))[0]
        if gid is None:
            problems.add(where, f"unknown gene {gene!r} (not in sections.csv nor the warehouse)")
        if not task:
            problems.add(where, "empty task")
        if label not in _TRUE | _FALSE:
            problems.add(where, f"bad label {row['label']!r} (0 or 1)")
        if gid is None or not task or label not in _TRUE | _FALSE:
            continue
        if (gene, task) in seen:
            problems.add(where, f"duplicate label of gene {gene} for task {task!r}; also on "
                                f"line {seen[(gene, task)]}")
            continue
        seen[(gene, task)] = line
        out.append({"gene_id": gid, "task": task, "label": label in _TRUE})
        lines.append(line)
    if out:
        new = table("gene_labels", out).append_column("line", pa.array(lines, pa.int64()))
        with registered(con, new, "_ishwh_gl"):
            clashes = con.execute(
                """
                select n.line, n.task from _ishwh_gl n join gene_labels g using (gene_id, task)
                where g.label <> n.label order by n.line
                """
            ).fetchall()
        for line, task in clashes:
            problems.add(at(name, line), f"the warehouse already has the other label for "
                                          f"task {task!r}")
    return out
