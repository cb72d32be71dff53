"""The report's "Predicted annotations" section: what `annotate` wrote, how far to trust it.

Shown when the report's runs have rows in ``predicted_annotations``: per stage coverage
(experiments the experts annotated vs experiments a run annotated), a reliability diagram
(held-out probabilities against how often the experts called the structure), the transfer
table (the ``transfer_auc`` view, where this ishwh has it), the AUC against the withheld
truth of never-annotated stages (synthetic atlases), and a gene x structure heatmap of an
unannotated stage. ``predicted_annotations`` itself is exported as CSV and Parquet.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import polars as pl

from ishwh.query import query_text
from ishwh.report import plots
from ishwh.report.documents import Section
from ishwh.report.figures import Figure
from ishwh.report.tables import run_named

HEATMAP_GENES = 16
HEATMAP_STRUCTURES = 30


@dataclass
class PredictedData:
    """The numbers of the section, fetched in the report's read-only session."""

    coverage: pl.DataFrame
    reliability: pl.DataFrame
    transfer: pl.DataFrame | None   # None: this warehouse has no transfer_auc view
    truth_auc: pl.DataFrame
    heatmap: pl.DataFrame
    heatmap_run: int | None
    heatmap_stage: str | None
    export: pl.DataFrame


def _has_relation(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return bool(con.execute(
        "select count(*) from information_schema.tables where table_name = ?", [name]
    ).fetchall()[0][0])


def gather_predicted(con: duckdb.DuckDBPyConnection,
                     runs: list[int] | None = None) -> PredictedData | None:
    """The section's data for ``runs`` (None: every finished run that annotated something,
    production runs included, which Table 1 leaves out), or None when they annotated
    nothing."""
    if runs is None:
        runs = [r[0] for r in con.execute(
            "select distinct p.run_id from predicted_annotations p join runs r using (run_id) "
            "where r.status = 'finished' order by 1").fetchall()]
    export = run_named(con, "report_predicted_annotations", runs=runs)
    if export.is_empty():
        return None
    coverage = run_named(con, "report_predicted_coverage", runs=runs)
    transfer = None
    if _has_relation(con, "transfer_auc"):  # the view of cross-stage runs, where it exists
        transfer = pl.from_arrow(con.sql("select * from transfer_auc").to_arrow_table())
    # the heatmap: an unannotated stage if a run annotated one, else the last stage annotated
    done = coverage.filter(pl.col("n_predicted") > 0)
    pick = done.filter(~pl.col("is_annotated_stage"))
    pick = pick if not pick.is_empty() else done
    run = stage = None
    heat = pl.DataFrame()
    if not pick.is_empty():
        row = pick.sort("run_id").row(-1, named=True)
        run, stage = int(row["run_id"]), str(row["stage"])
        heat = pl.from_arrow(con.sql(query_text("report_predicted_heatmap"), params={
            "run": run, "stage": stage, "n_genes": HEATMAP_GENES,
            "n_structures": HEATMAP_STRUCTURES}).to_arrow_table())
    return PredictedData(
        coverage=coverage,
        reliability=run_named(con, "report_reliability", runs=runs),
        transfer=transfer,
        truth_auc=run_named(con, "report_truth_auc", runs=runs),
        heatmap=heat, heatmap_run=run, heatmap_stage=stage, export=export,
    )


# --------------------------------------------------------------------------- figures


def reliability_figure(bins: pl.DataFrame):
    """Reliability diagram: per run, mean held-out probability vs observed frequency per bin
    (marker area ~ rows in the bin); the diagonal is perfect calibration."""
    import matplotlib.pyplot as plt  # noqa: PLC0415  (plots set the Agg backend)

    fig, ax = plt.subplots(figsize=(5.2, 4.8), constrained_layout=True)
    ax.plot([0, 1], [0, 1], color="#999", lw=1, ls="--", label="perfect calibration")
    keys = bins.select("run_id", "subset").unique(maintain_order=True).iter_rows()
    for k, (run, subset) in enumerate(keys):
        b = bins.filter((pl.col("run_id") == run) & (pl.col("subset") == subset)).sort("bin")
        n = b["n"].to_numpy().astype(float)
        color = plt.get_cmap("tab10")(k % 10)
        ax.plot(b["mean_probability"], b["observed_rate"], color=color, lw=1.2,
                label=f"run {run} ({b['stage'][0]}, {b['feature_set'][0]}, {subset}), "
                      f"ECE {b['ece'][0]:.3f}")
        ax.scatter(b["mean_probability"], b["observed_rate"], s=12 + 120 * n / n.max(),
                   color=color, edgecolors="black", linewidths=0.4, zorder=3)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted probability (held-out, bin mean)")
    ax.set_ylabel("observed frequency of expert 'detected'")
    ax.legend(fontsize=7, loc="upper left")
    return fig


def heatmap_figure(heat: pl.DataFrame, run: int, stage: str):
    """Genes (rows) x structures (columns, ontology order): predicted probability, calls
    outlined with a dot."""
    import matplotlib.pyplot as plt  # noqa: PLC0415

    genes = heat.sort("gene_rank")["gene"].unique(maintain_order=True).to_list()
    cols = (heat.select("structure", "graph_order", "level").unique()
            .sort("graph_order"))
    structures = cols["structure"].to_list()
    gi = {g: i for i, g in enumerate(genes)}
    si = {s: j for j, s in enumerate(structures)}
    prob = np.full((len(genes), len(structures)), np.nan)
    called = np.zeros_like(prob, dtype=bool)
    for r in heat.iter_rows(named=True):
        prob[gi[r["gene"]], si[r["structure"]]] = r["probability"]
        called[gi[r["gene"]], si[r["structure"]]] = bool(r["called"])
    fig, ax = plt.subplots(figsize=(min(18.0, 2.5 + 0.32 * len(structures)),
                                    1.6 + 0.3 * len(genes)), constrained_layout=True)
    im = ax.imshow(prob, cmap=plt.get_cmap("magma_r"), vmin=0, vmax=1, aspect="auto",
                   interpolation="nearest")
    yy, xx = np.nonzero(called)
    ax.scatter(xx, yy, s=10, c="#2ecc71", edgecolors="black", linewidths=0.4,
               label="called")
    ax.set_xticks(range(len(structures)))
    ax.set_xticklabels([f"{s} (L{lv})" for s, lv in zip(structures, cols["level"],
                                                          strict=True)],
                       rotation=90, fontsize=7)
    ax.set_yticks(range(len(genes)))
    ax.set_yticklabels(genes, fontsize=8)
    ax.set_title(f"Predicted annotation of {stage} (run {run}): P(detected), dots = called",
                 fontsize=9)
    fig.colorbar(im, ax=ax, label="probability", shrink=0.8)
    return fig


def predicted_figures(pd_: PredictedData) -> list[Figure]:
    """The section's figures (reliability diagram, heatmap), where there is data."""
    figs = []
    if not pd_.reliability.is_empty():
        figs.append(Figure(
            "reliability", "Reliability diagram (held-out probabilities)",
            "Per run with stored models: held-out probabilities ('test': the test side of a "
            "split or a stage the run did not train on; 'oof': out-of-fold scores of a "
            "production run, the rows its calibration was fitted on) in ten bins against the "
            "share the experts called detected; ECE = the row-weighted mean gap (the "
            "reliability and calibration_error views).",
            plots.to_png(reliability_figure(pd_.reliability)),
        ))
    if not pd_.heatmap.is_empty():
        figs.append(Figure(
            "predicted_heatmap", f"Predicted annotation of {pd_.heatmap_stage}",
            f"Genes with the most called structures (rows) x the structures most often called "
            f"among them (columns, ontology order) at {pd_.heatmap_stage}, run "
            f"{pd_.heatmap_run}: calibrated probability, dots where the structure is called.",
            plots.to_png(heatmap_figure(pd_.heatmap, pd_.heatmap_run, pd_.heatmap_stage)),
        ))
    return figs


def predicted_section(pd_: PredictedData, figs: list[Figure]) -> Section:
    """The "Predicted annotations" section of the report."""
    tables: list[tuple[pl.DataFrame, str | None]] = [(pd_.coverage, None)]
    intro = (
        "What `ishwh annotate` wrote: per stage, the experiments the experts annotated "
        "(n_annotated) and those each run annotated (n_predicted, with the share of "
        "structure calls that are 'detected'). All predicted annotations are in "
        "tables/predicted_annotations.csv and .parquet."
    )
    if not pd_.truth_auc.is_empty():
        tables.append((pd_.truth_auc, None))
        intro += (" Second table: the annotations of stages the experts never annotated, "
                  "scored against the truth the synthetic atlas withheld from fit and "
                  "annotate (annotation_truth_auc view; level empty = all structures).")
    if pd_.transfer is not None and not pd_.transfer.is_empty():
        tables.append((pd_.transfer, None))
        intro += (" Last table: cross-stage (transfer) AUC beside within-stage AUC "
                  "(transfer_auc view).")
    return Section("predicted", "Predicted annotations", intro, tables=tables, figures=figs)


def predicted_tables(pd_: PredictedData) -> dict[str, pl.DataFrame]:
    """The section's tables by file stem (written as CSV and Parquet)."""
    out = {"predicted_annotations": pd_.export, "predicted_coverage": pd_.coverage,
           "reliability": pd_.reliability}
    if not pd_.truth_auc.is_empty():
        out["annotation_truth_auc"] = pd_.truth_auc
    if pd_.transfer is not None:
        out["transfer_auc"] = pd_.transfer
    return out
