"""The report's statistics and multi-class parts: what they show, fetched by named queries.

:func:`gather` runs the named queries on the report's read-only connection, :func:`figures`
draws the paper's remaining figures from those frames (:mod:`ishwh.report.plots_more`), and
:func:`sections` says how the report lays them out. Every frame is also exported as a table
(CSV and Parquet) under the name it has here.
"""

from __future__ import annotations

import polars as pl

from ishwh.report import plots_more
from ishwh.report.plots import to_png
from ishwh.report.tables import run_named

_QUERIES = {
    "class_distribution": "class_distribution",
    "feature_set_stage_auc": "feature_set_stage_auc",
    "target_metrics": "report_target_metrics",
    "class_confusion": "report_class_confusion",
    "run_comparisons": "run_comparisons",
    "run_bootstrap": "report_run_bootstrap",
    "repeat_metrics": "report_repeat_metrics",
}


def gather(con, runs: list[int]) -> dict[str, pl.DataFrame]:
    """Every frame of these sections, for the report's runs (``class_distribution``: all
    annotations of the warehouse, when the runs include a multi-class one)."""
    out = {name: run_named(con, query, runs=runs) for name, query in _QUERIES.items()}
    out["pooling"] = plots_more.pooling_pairs(out["feature_set_stage_auc"])
    if out["class_confusion"].is_empty():
        # figure 4 belongs to the multi-class part: shown when the runs include one
        out["class_distribution"] = out["class_distribution"].clear()
    return {k: v for k, v in out.items() if not v.is_empty()}


def figures(frames: dict[str, pl.DataFrame]) -> list[tuple[str, str, str, bytes]]:
    """``(name, title, caption, png)`` of each figure the frames allow."""
    out = []
    if "class_distribution" in frames:
        out.append(("class_distribution", "Annotated classes per level (figure 4)",
                    "Share of each annotated pattern, intensity and density class per ontology "
                    "level and stage, from the annotations (unknown calls not counted); "
                    "numbers in tables/class_distribution.csv.",
                    to_png(plots_more.class_distribution(frames["class_distribution"]))))
    if "feature_set_stage_auc" in frames:
        fig = plots_more.layer_curves(frames["feature_set_stage_auc"])
        if fig is not None:
            out.append(("layer_auc", "AUC against CNN layer (figure 5)",
                        "Mean test AUC over all structures of a stage for each CNN layer "
                        "featurized (true labels; repeats averaged); numbers in "
                        "tables/feature_set_stage_auc.csv.", to_png(fig)))
    if "pooling" in frames:
        out.append(("pooling", "Max vs mean pooling",
                    "Mean test AUC over all structures of a stage, with the sections of an "
                    "experiment pooled by element-wise max or mean; numbers in "
                    "tables/pooling.csv.", to_png(plots_more.pooling(frames["pooling"]))))
    if "class_confusion" in frames:
        out.append(("confusion", "Confusion matrices of the multi-class targets",
                    "Test-set counts of annotated (rows) against predicted (columns, the most "
                    "probable class) classes, summed over the structures of a run; colour is "
                    "the row share; numbers in tables/class_confusion.csv.",
                    to_png(plots_more.confusion_heatmaps(frames["class_confusion"]))))
    return out


def sections(frames: dict[str, pl.DataFrame]) -> list[tuple[str, str, str, list, list[str]]]:
    """``(anchor, title, intro, [(table, best column)], [figure names])`` per section."""
    out = []
    stats_tables = [(frames[k], None) for k in ("run_comparisons", "run_bootstrap",
                                                "repeat_metrics") if k in frames]
    if stats_tables:
        out.append((
            "statistics", "Uncertainty and paired comparisons",
            "Paired comparisons (`ishwh compare`): two runs on the same split (same test "
            "genes) differing in feature set or model; per structure the difference of the "
            "macro AUC (the AUC for detected), its mean with a 95 % bootstrap interval over "
            "structures, and the two-sided Wilcoxon signed-rank p-value over structures, as "
            "the paper tested its methods. Then each run's stage mean with its 95 % bootstrap "
            "interval over structures, and (with `fit --repeats`) the mean over repeated "
            "splits ± the 95 % t interval across repeats.",
            stats_tables, []))
    if "target_metrics" in frames:
        out.append((
            "targets", "Pattern, intensity and density",
            "Per stage, level and target: macro AUC (one-vs-rest, mean over the classes "
            "present in the test set), quadratic-weighted Cohen's kappa on the grades (ordinal "
            "targets; empty for pattern), balanced accuracy, accuracy and mean absolute error "
            "in grades, means over the level's structures (the target_metrics view). These "
            "use the most probable class, which a strongly regularised model makes "
            "'undetected' almost everywhere (kappa near 0); kappa_prior and "
            "balanced_accuracy_prior use the prior-corrected call (probability divided by the "
            "class's training share).",
            [(frames["target_metrics"], None)],
            [n for n in ("confusion",) if "class_confusion" in frames]))
    figs = [n for n, k in (("class_distribution", "class_distribution"),
                           ("layer_auc", "feature_set_stage_auc"), ("pooling", "pooling"))
            if k in frames]
    if figs:
        out.append(("paper_figures", "Class distribution, layers and pooling",
                    "The paper's figures 4 and 5 and the pooling comparison, where the "
                    "warehouse has what they need.", [], figs))
    return out
