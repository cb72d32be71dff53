"""The report's numbers: the named queries of ``sql/queries/`` on a read-only connection.

Every number of the report comes out of SQL (the ``level_auc`` / ``structure_auc`` views and
the named queries built on them); this module only runs those queries, with the report's
filters as the queries' named parameters, and reshapes the results with polars (Table 1 in
its wide, printable form). The same queries run with
``ishwh sql --query NAME [--param runs=[1,2]]``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import duckdb
import polars as pl

from ishwh.errors import InvalidInput
from ishwh.query import bind, named_query
from ishwh.vocab import sort_stages
from ishwh.warehouse import connect

OVERALL_STAGE = "all stages"
SHUFFLED_SUFFIX = " (shuffled labels)"


def run_named(
    con: duckdb.DuckDBPyConnection,
    name: str,
    *,
    runs: Sequence[int] | None = None,
    level: int | None = None,
    structures: Sequence[int] | None = None,
) -> pl.DataFrame:
    """Run a named query with the report's filters (None = no filter) as a polars frame.

    The filters are the query's own optional parameters (``$runs``, ``$level``,
    ``$structures``); a query is given those it declares.
    """
    values = {
        "runs": None if runs is None else [int(r) for r in runs],
        "level": None if level is None else int(level),
        "structures": None if structures is None else [int(s) for s in structures],
    }
    query = named_query(name)
    params = bind(query, {k: v for k, v in values.items() if k in query.params})
    return pl.from_arrow(con.sql(query.sql, params=params or None).to_arrow_table())


def column_label(feature_set: str, label_mode: str) -> str:
    """Table 1 column name of a feature set (shuffled-label control runs are marked)."""
    return feature_set if label_mode == "true" else feature_set + SHUFFLED_SUFFIX


def format_auc(mean: float | None, std: float | None) -> str:
    """``0.912 ± 0.034``; the std is left out when undefined (one structure)."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{mean:.3f}"
    return f"{mean:.3f} ± {std:.3f}"


def _columns(long: pl.DataFrame, overall: pl.DataFrame) -> list[tuple[str, str, str]]:
    """(label, feature_set, label_mode) per column: true labels first, by overall AUC."""
    pairs = overall.select("feature_set", "label_mode").rows()
    for fs, mode in long.select("feature_set", "label_mode").unique().sort(
        "label_mode", "feature_set"
    ).rows():
        if (fs, mode) not in pairs:
            pairs.append((fs, mode))
    pairs.sort(key=lambda p: p[1] != "true")  # stable: keeps the overall order within a mode
    return [(column_label(fs, mode), fs, mode) for fs, mode in pairs]


def table1_wide(long: pl.DataFrame, overall: pl.DataFrame) -> pl.DataFrame:
    """Table 1 for reading: one row per stage x level, one ``mean ± std`` column per feature set.

    The column ``best`` names the true-label feature set with the highest mean AUC of the
    row (shuffled-label controls never win); the last row is the all-stages mean ± std per
    feature set (see ``sql/queries/table1_overall.sql``).
    """
    cols = _columns(long, overall)
    rows: list[dict] = []
    cells = {
        (r["stage"], r["level"], r["feature_set"], r["label_mode"]): r
        for r in long.iter_rows(named=True)
    }
    keys = long.select("stage", "level").unique(maintain_order=True).rows()
    for stage, level in keys:
        row: dict = {"stage": stage, "level": level, "n_structures": 0}
        best, best_auc = None, -1.0
        for label, fs, mode in cols:
            cell = cells.get((stage, level, fs, mode))
            row[label] = None if cell is None else format_auc(cell["mean_auc"], cell["std_auc"])
            if cell is None:
                continue
            row["n_structures"] = max(row["n_structures"], cell["n_structures"] or 0)
            if mode == "true" and cell["mean_auc"] is not None and cell["mean_auc"] > best_auc:
                best, best_auc = label, cell["mean_auc"]
        row["best"] = best
        rows.append(row)
    if overall.height:
        row = {"stage": OVERALL_STAGE, "level": None, "n_structures": None}
        best, best_auc = None, -1.0
        by_pair = {(r["feature_set"], r["label_mode"]): r for r in overall.iter_rows(named=True)}
        for label, fs, mode in cols:
            r = by_pair.get((fs, mode))
            row[label] = None if r is None else format_auc(r["overall_mean"], r["overall_std"])
            if r is not None and mode == "true" and r["overall_mean"] is not None and (
                r["overall_mean"] > best_auc
            ):
                best, best_auc = label, r["overall_mean"]
        row["best"] = best
        rows.append(row)
    schema = {"stage": pl.Utf8, "level": pl.Int64, "n_structures": pl.Int64}
    schema.update({label: pl.Utf8 for label, _, _ in cols})
    schema["best"] = pl.Utf8
    return pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)


def table1(
    db_path: str | os.PathLike, runs: Sequence[int] | None = None
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Table 1 of a warehouse (read-only): ``(wide, long, overall)`` polars frames.

    ``long`` is the ``table1`` named query (numbers), ``overall`` the ``table1_overall`` one,
    ``wide`` the printable table with ``mean ± std`` strings and the ``best`` column.
    """
    if runs is not None and not runs:
        raise InvalidInput("runs is empty: give run ids like 1,2", param="runs")
    with connect(db_path, read_only=True) as con:
        long = run_named(con, "table1", runs=runs)
        overall = run_named(con, "table1_overall", runs=runs)
    return table1_wide(long, overall), long, overall


def gene_tasks_wide(gene_auc: pl.DataFrame) -> pl.DataFrame:
    """Gene-level task AUCs for reading, laid out like Table 1.

    One row per stage x task, one column per feature set (repeated runs averaged); ``best``
    names the true-label feature set with the highest AUC of the row; each stage ends with
    a ``mean over tasks`` row.
    """
    labels = [column_label(fs, mode) for fs, mode in
              gene_auc.select("feature_set", "label_mode").rows()]
    g = gene_auc.with_columns(pl.Series("_col", labels, dtype=pl.Utf8))
    order = g.select("_col", "label_mode").unique().sort(
        "label_mode", "_col", descending=[True, False])
    cols = order["_col"].to_list()
    true_cols = set(order.filter(pl.col("label_mode") == "true")["_col"].to_list())
    cells = g.group_by("stage", "task", "_col").agg(pl.col("auc").mean())
    lookup = {(st, t, c): a for st, t, c, a in cells.rows()}
    stages = sort_stages(g["stage"].unique().to_list())
    rows = []
    for stage in stages:
        tasks = sorted(g.filter(pl.col("stage") == stage)["task"].unique().to_list())
        block = [{"stage": stage, "task": t, **{c: lookup.get((stage, t, c)) for c in cols}}
                 for t in tasks]
        mean = {"stage": stage, "task": "mean over tasks"}
        for c in cols:
            vals = [r[c] for r in block if r[c] is not None]
            mean[c] = sum(vals) / len(vals) if vals else None
        rows += [*block, mean]
    for r in rows:
        scored = [(r[c], c) for c in cols if c in true_cols and r[c] is not None]
        r["best"] = max(scored)[1] if scored else None
    schema = {"stage": pl.Utf8, "task": pl.Utf8, **{c: pl.Float64 for c in cols},
              "best": pl.Utf8}
    return pl.DataFrame(rows, schema=schema, orient="row")
