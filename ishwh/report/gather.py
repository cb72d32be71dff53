"""The report's numbers: everything it shows, fetched from the warehouse in one read-only
session (:func:`gather` -> :class:`ReportData`): runs, Table 1, structure AUCs, ROC picks,
the manual-vs-predicted grid."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from importlib import metadata

import numpy as np
import polars as pl

from ishwh import __version__
from ishwh.annotate import prediction_probabilities
from ishwh.errors import InvalidInput, NotFound
from ishwh.report import more, plots
from ishwh.report.tables import run_named, table1_wide
from ishwh.vocab import stage_key
from ishwh.warehouse import connect

MAX_GRID_STRUCTURES = 30   # figure-6 columns; more would be unreadable
MAX_GRID_GENES = 12        # figure-6 rows
MIN_ROC_POSITIVES = 5      # ROC picks: structures with at least this many test positives


@dataclass
class ReportData:
    """Everything the report shows, fetched from the warehouse in one read-only session."""

    db_path: str
    runs: list[int]
    level: int | None
    runs_df: pl.DataFrame
    table1_long: pl.DataFrame
    table1_overall: pl.DataFrame
    table1_wide: pl.DataFrame
    structure_auc: pl.DataFrame
    split_balance: pl.DataFrame
    skipped_tasks: pl.DataFrame
    gene_task_auc: pl.DataFrame
    roc_panels: list[plots.RocPanel] = field(default_factory=list)
    grid: dict | None = None
    versions: dict[str, str] = field(default_factory=dict)
    more: dict[str, pl.DataFrame] = field(default_factory=dict)   # ishwh.report.more


def _versions() -> dict[str, str]:
    out = {"ishwh": __version__, "python": platform.python_version()}
    for pkg in ("duckdb", "polars", "numpy", "scikit-learn", "matplotlib"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:  # pragma: no cover - all are dependencies
            out[pkg] = "not installed"
    out["platform"] = platform.platform()
    return out


def _choose_level(sauc: pl.DataFrame, level: int | None) -> int | None:
    """The requested level, or the one with the most structures that have an AUC."""
    scored = sauc.filter(
        pl.col("auc").is_not_null() & pl.col("level").is_not_null()
        & (pl.col("label_mode") == "true")
    )
    counts = (
        scored.group_by("level").agg(pl.col("structure_id").n_unique().alias("n"))
        .sort(["n", "level"], descending=[True, False])
    )
    if level is None:
        return None if counts.is_empty() else int(counts["level"][0])
    if level not in counts["level"].to_list():
        have = ", ".join(str(v) for v in sorted(counts["level"].to_list())) or "none"
        raise NotFound(
            f"no structure AUCs at level {level} in these runs", hint=f"levels with AUCs: {have}"
        )
    return level


def _best_runs(sauc: pl.DataFrame, level: int) -> pl.DataFrame:
    """Per stage, the true-label run with the highest mean AUC at ``level``."""
    per_run = (
        sauc.filter(
            (pl.col("level") == level) & pl.col("auc").is_not_null()
            & (pl.col("label_mode") == "true")
        )
        .group_by("stage", "run_id", "feature_set")
        .agg(pl.col("auc").mean().alias("mean_auc"), pl.len().alias("n"))
        .sort(["mean_auc", "run_id"], descending=[True, False])
    )
    best = per_run.unique("stage", keep="first", maintain_order=True)
    return best.sort(pl.col("stage").map_elements(stage_key, return_dtype=pl.Int64))


def _roc_panels(con, sauc: pl.DataFrame, best: pl.DataFrame, level: int) -> list[plots.RocPanel]:
    panels = []
    for stage, run_id, fs, _mean, _n in best.iter_rows():
        rows = sauc.filter(
            (pl.col("run_id") == run_id) & (pl.col("level") == level) & pl.col("auc").is_not_null()
        ).sort(["auc", "acronym"], descending=[True, False])
        # An AUC on one or two test positives is mostly luck: pick among the structures with
        # enough positives, unless none has them.
        enough = rows.filter(pl.col("n_pos") >= MIN_ROC_POSITIVES)
        few = enough.is_empty()
        rows = rows if few else enough
        n = rows.height
        picks = []
        for idx, what in ((0, "highest"), ((n - 1) // 2, "median"), (n - 1, "lowest")):
            if idx not in [p[0] for p in picks]:
                picks.append((idx, what))
        chosen = [(rows.row(i, named=True), what) for i, what in picks]
        preds = run_named(
            con, "report_predictions", runs=[run_id],
            structures=[r["structure_id"] for r, _ in chosen],
        )
        curves = []
        for r, what in chosen:
            p = preds.filter(pl.col("structure_id") == r["structure_id"])
            curves.append(plots.RocCurve(
                label=f"{what}: {r['acronym']} ({r['n_pos']} pos / {r['n_neg']} neg)",
                auc=float(r["auc"]),
                truth=p["detected"].to_numpy(), score=p["score"].to_numpy(),
            ))
        title = f"{stage} · {fs} (run {run_id})"
        if few:
            title += f" · no structure has {MIN_ROC_POSITIVES}+ test positives"
        panels.append(plots.RocPanel(title, curves))
    return panels


def _to_unit(score: np.ndarray, calibrated: bool = False) -> tuple[np.ndarray, str]:
    """Scores for a 0..1 colour scale and the colour bar's label. ``predictions.score`` is
    the classifier's decision score: logistic(score) is in 0..1 but is not a calibrated
    probability, and says so; calibrated probabilities (``calibrated``) show as they are."""
    if calibrated:
        return score, "P(detected), calibrated"
    return 1.0 / (1.0 + np.exp(-score)), "score (uncalibrated)"


def _grid(con, sauc: pl.DataFrame, best: pl.DataFrame, level: int) -> dict | None:
    """Sample genes x structures of the best run at ``level`` (the paper's figure 6)."""
    if best.is_empty():
        return None
    stage, run_id, fs, _mean, _n = best.sort("mean_auc", descending=True).row(0)
    structs = sauc.filter(
        (pl.col("run_id") == run_id) & (pl.col("level") == level) & pl.col("auc").is_not_null()
    ).sort("graph_order", "structure_id")
    if structs.height > MAX_GRID_STRUCTURES:  # evenly spaced along the ontology order
        idx = np.unique(np.linspace(0, structs.height - 1, MAX_GRID_STRUCTURES).round().astype(int))
        structs = structs[idx.tolist()]
    preds = run_named(
        con, "report_predictions", runs=[run_id], structures=structs["structure_id"].to_list()
    )
    per_exp = (
        preds.group_by("experiment_id", "gene")
        .agg(pl.col("detected").sum().alias("n_pos"))
        .sort(["n_pos", "gene", "experiment_id"])
    )
    if per_exp.is_empty():
        return None
    # Evenly spaced by number of detected structures: a mix of broad and sparse expression.
    idx = np.unique(np.linspace(0, per_exp.height - 1, MAX_GRID_GENES).round().astype(int))
    sample = per_exp[idx.tolist()].sort("gene", "experiment_id")
    genes = [str(g) if g is not None else f"exp {e}" for e, g in
             sample.select("experiment_id", "gene").rows()]
    if len(set(genes)) < len(genes):  # a gene with two experiments: tell them apart
        genes = [f"{g} ({e})" for g, e in zip(genes, sample["experiment_id"], strict=True)]
    exp_pos = {e: i for i, e in enumerate(sample["experiment_id"].to_list())}
    st_pos = {s: j for j, s in enumerate(structs["structure_id"].to_list())}
    truth = np.full((len(exp_pos), len(st_pos)), np.nan)
    score = np.full_like(truth, np.nan)
    for e, s, sc, det in preds.select("experiment_id", "structure_id", "score", "detected").rows():
        if e in exp_pos and s in st_pos:
            truth[exp_pos[e], st_pos[s]] = float(det)
            score[exp_pos[e], st_pos[s]] = sc
    # calibrated probabilities (annotate's, else the run's Platt scaling) where the run has them
    prob, _, calibrated = prediction_probabilities(con, run_id, list(exp_pos),
                                                   structure_ids=list(st_pos))
    if calibrated and prob:
        for (e, s), p in prob.items():
            score[exp_pos[e], st_pos[s]] = p
    score, label = _to_unit(score, calibrated=calibrated and bool(prob))
    return {
        "genes": genes, "structures": structs["acronym"].to_list(), "truth": truth,
        "score": score, "score_label": label, "stage": stage, "run_id": run_id,
        "feature_set": fs,
    }


def gather(
    db_path: str | os.PathLike, runs: list[int] | None = None, level: int | None = None
) -> ReportData:
    """Fetch everything the report shows (read-only connection)."""
    if runs is not None and not runs:
        raise InvalidInput("runs is empty: give run ids like 1,2", param="runs")
    with connect(db_path, read_only=True) as con:
        all_runs = run_named(con, "report_runs")
        if all_runs.is_empty():
            raise NotFound(
                f"no finished runs in {db_path}", hint="train some with `ishwh fit` first"
            )
        have = all_runs["run_id"].to_list()
        if runs is not None:
            missing = sorted(set(runs) - set(have))
            if missing:
                raise NotFound(
                    f"run(s) {', '.join(map(str, missing))} are not finished runs of {db_path}",
                    hint="finished runs: " + ", ".join(map(str, have)),
                )
        chosen = sorted(set(runs)) if runs is not None else have
        long = run_named(con, "table1", runs=chosen)
        overall = run_named(con, "table1_overall", runs=chosen)
        sauc = run_named(con, "report_structure_auc", runs=chosen)
        level = _choose_level(sauc, level)
        data = ReportData(
            db_path=str(db_path), runs=chosen, level=level,
            runs_df=run_named(con, "report_runs", runs=chosen),
            table1_long=long, table1_overall=overall, table1_wide=table1_wide(long, overall),
            structure_auc=sauc,
            split_balance=run_named(con, "split_balance_summary", runs=chosen),
            skipped_tasks=run_named(con, "skipped_tasks", runs=chosen),
            gene_task_auc=run_named(con, "report_gene_task_auc", runs=chosen),
            versions=_versions(),
            more=more.gather(con, chosen),
        )
        if level is not None:
            best = _best_runs(sauc, level)
            data.roc_panels = _roc_panels(con, sauc, best, level)
            data.grid = _grid(con, sauc, best, level)
    return data
