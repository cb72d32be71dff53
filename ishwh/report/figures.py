"""The report's figures: :func:`make_figures` draws each one (PNG bytes) from the gathered
:class:`~ishwh.report.gather.ReportData`; the drawing itself is in :mod:`ishwh.report.plots`."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from ishwh.report import more, plots
from ishwh.report.gather import MIN_ROC_POSITIVES, ReportData


@dataclass
class Figure:
    """One figure of the report: file stem, caption and PNG bytes."""

    name: str
    title: str
    caption: str
    png: bytes


def make_figures(data: ReportData) -> list[Figure]:
    """Draw every figure of the report (PNG bytes)."""
    figs = []
    # a structure missing from the ontology has no level: nothing to place on the x axis
    long = data.table1_long.filter(pl.col("mean_auc").is_not_null() & pl.col("level").is_not_null())
    # split methods are never mixed: a non-default method is a line of its own
    other = pl.col("split_method").is_not_null() & (pl.col("split_method") != "stratified")
    long = long.with_columns(pl.when(other).then(pl.col("feature_set") + " [" + pl.col(
        "split_method") + " split]").otherwise(pl.col("feature_set")).alias("feature_set"))
    if not long.is_empty():
        figs.append(Figure(
            "level_comparison", "Feature sets compared per level",
            "Mean test AUC per ontology level (band: ± 1 std across the level's structures), "
            "one panel per stage, one line per feature set; the analogue of the paper's "
            "figures 5 and 8.",
            plots.to_png(plots.level_comparison(long)),
        ))
        top = data.table1_overall.filter(pl.col("label_mode") == "true")
        if not top.is_empty() and long["stage"].n_unique() > 1:
            fs = top["feature_set"][0]
            figs.append(Figure(
                "stage_comparison", f"Stages compared ({fs})",
                f"Mean test AUC per level of the best feature set overall ({fs}), one line "
                "per developmental stage.",
                plots.to_png(plots.stage_comparison(long, fs)),
            ))
    if data.roc_panels:
        figs.append(Figure(
            "roc", f"ROC curves at level {data.level}",
            f"Per stage, the run with the best mean AUC at level {data.level}: ROC curves of "
            "its highest-, median- and lowest-AUC structure among those with at least "
            f"{MIN_ROC_POSITIVES} test positives (all structures where none has), from the "
            "test-set predictions; each legend gives the test positives and negatives "
            "(the paper's figure 7).",
            plots.to_png(plots.roc_curves(data.roc_panels, data.level, MIN_ROC_POSITIVES)),
        ))
    if data.grid:
        g = data.grid
        title = (f"Manual vs predicted annotation, level {data.level}: {g['stage']}, "
                 f"{g['feature_set']} (run {g['run_id']}), test-set genes")
        figs.append(Figure(
            "manual_vs_predicted", f"Manual vs predicted annotation at level {data.level}",
            "Sample test-set genes (rows) x structures of the level (columns, ontology "
            "order): the manual annotation (detected, undetected, not annotated) beside the "
            + ("calibrated probability of detection (annotate's where it annotated the "
               "experiment, else the run's Platt scaling of the score)"
               if g["score_label"].startswith("P(detected)")
               else "classifier's score, shown as logistic(score): a 0..1 scale, not a "
                    "calibrated probability")
            + " (the paper's figure 6, drawn as a grid).",
            plots.to_png(plots.annotation_grid(
                g["genes"], g["structures"], g["truth"], g["score"], title, g["score_label"]
            )),
        ))
    figs += [Figure(*f) for f in more.figures(data.more)]
    from ishwh.atlas.figures import report_figures  # noqa: PLC0415 - atlas figures

    for name, title, caption, png in report_figures(data.db_path, data.runs, data.level):
        figs.append(Figure(name, title, caption, png))
    return figs
