"""The report's figures (matplotlib, Agg backend), drawn from plain frames and arrays.

No DuckDB here: :mod:`ishwh.report.gather` fetches the numbers and hands them over, so each
figure can be redrawn in a notebook from the CSV/Parquet tables of a report.
"""

from __future__ import annotations

import io
import math
import textwrap
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # never a display: reports are written on headless machines

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from ishwh.report.tables import column_label  # noqa: E402

_COLORS = plt.get_cmap("tab10").colors


def to_png(fig: Figure, dpi: int = 110) -> bytes:
    """The figure as PNG bytes (no software/URL metadata, so the report holds no links)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _grid(n: int, ncols_max: int = 4, size: tuple[float, float] = (3.6, 3.0)):
    ncols = max(1, min(n, ncols_max))
    nrows = max(1, math.ceil(n / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False
    )
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _ylim(values: list[float]) -> tuple[float, float]:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    low = min(finite, default=0.5)
    return (min(0.45, math.floor((low - 0.05) * 20) / 20), 1.02)


def level_comparison(long: pl.DataFrame) -> Figure:
    """Mean AUC per ontology level, one panel per stage, one line per feature set.

    The shaded band is ± one standard deviation across the level's structures; shuffled-label
    control runs are drawn dashed in grey (they should sit at 0.5). Figures 5 and 8 of the
    paper compare feature sets like this.
    """
    stages = long["stage"].unique(maintain_order=True).to_list()
    fig, axes = _grid(len(stages))
    series = long.select("feature_set", "label_mode").unique().sort(
        pl.col("label_mode") != "true", "feature_set"
    )
    true_sets = [fs for fs, mode in series.rows() if mode == "true"]
    handles: dict[str, object] = {}
    for ax, stage in zip(axes, stages, strict=True):
        part = long.filter(pl.col("stage") == stage)
        for fs, mode in series.rows():
            rows = part.filter((pl.col("feature_set") == fs) & (pl.col("label_mode") == mode))
            rows = rows.filter(pl.col("mean_auc").is_not_null()).sort("level")
            if rows.is_empty():
                continue
            x = rows["level"].to_numpy()
            y = rows["mean_auc"].to_numpy()
            sd = rows["std_auc"].fill_null(0.0).to_numpy()
            label = column_label(fs, mode)
            if mode == "true":
                color = _COLORS[true_sets.index(fs) % len(_COLORS)]
                (line,) = ax.plot(x, y, "o-", color=color, lw=1.6, ms=4, label=label)
                ax.fill_between(x, y - sd, np.minimum(y + sd, 1.0), color=color, alpha=0.07)
            else:
                (line,) = ax.plot(x, y, "s--", color="0.55", lw=1.0, ms=3, label=label)
            handles.setdefault(label, line)
        ax.axhline(0.5, color="0.8", lw=0.8, zorder=0)
        ax.set_title(stage)
        ax.set_xlabel("ontology level")
        ax.set_ylabel("mean AUC")
        ax.set_ylim(*_ylim(part["mean_auc"].to_list()))
        levels = part["level"].unique().sort().to_list()
        if levels:
            ax.set_xticks(levels)
        ax.grid(alpha=0.3)
    if handles:
        fig.legend(
            list(handles.values()), list(handles.keys()), loc="lower center",
            ncol=min(len(handles), 3), frameon=False, bbox_to_anchor=(0.5, -0.02),
        )
    fig.suptitle("Mean AUC per ontology level: feature sets compared, per stage")
    fig.tight_layout(rect=(0, 0.06 + 0.03 * math.ceil(len(handles) / 3), 1, 1))
    return fig


def stage_comparison(long: pl.DataFrame, feature_set: str) -> Figure:
    """Mean AUC per ontology level of one feature set, one line per stage."""
    part = long.filter(
        (pl.col("feature_set") == feature_set) & (pl.col("label_mode") == "true")
        & pl.col("mean_auc").is_not_null()
    )
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    cmap = plt.get_cmap("viridis")
    stages = part["stage"].unique(maintain_order=True).to_list()
    for i, stage in enumerate(stages):
        rows = part.filter(pl.col("stage") == stage).sort("level")
        color = cmap(i / max(1, len(stages) - 1) * 0.9)
        ax.plot(rows["level"], rows["mean_auc"], "o-", color=color, lw=1.6, ms=4, label=stage)
    ax.axhline(0.5, color="0.8", lw=0.8, zorder=0)
    levels = part["level"].unique().sort().to_list()
    if levels:
        ax.set_xticks(levels)
    ax.set_ylim(*_ylim(part["mean_auc"].to_list()))
    ax.set_xlabel("ontology level")
    ax.set_ylabel("mean AUC")
    ax.grid(alpha=0.3)
    ax.legend(title="stage", fontsize=8, frameon=False)
    ax.set_title(f"{feature_set}: mean AUC per level, stages compared")
    fig.tight_layout()
    return fig


@dataclass
class RocCurve:
    """Test-set scores of one structure (one curve of a ROC panel)."""

    label: str
    auc: float
    truth: np.ndarray
    score: np.ndarray


@dataclass
class RocPanel:
    title: str
    curves: list[RocCurve]


def roc_curves(panels: list[RocPanel], level: int, min_pos: int | None = None) -> Figure:
    """ROC curves of the highest-, median- and lowest-AUC structures (the paper's figure 7).

    Each panel's legend sits below its axes (never on the curves) and names each curve's
    structure, AUC and test positives / negatives; ``min_pos``: the minimum number of test
    positives the picked structures were required to have (said in the title).
    """
    fig, axes = _grid(len(panels), ncols_max=3, size=(3.6, 4.6))
    styles = ["-", "--", ":"]
    colors = [_COLORS[2], _COLORS[0], _COLORS[3]]
    for ax, panel in zip(axes, panels, strict=True):
        for i, c in enumerate(panel.curves):
            fpr, tpr, _ = roc_curve(c.truth.astype(int), c.score)
            ax.plot(fpr, tpr, styles[i % 3], color=colors[i % 3], lw=1.8,
                    label=f"{c.label}, AUC {c.auc:.3f}")
        ax.plot([0, 1], [0, 1], color="0.75", lw=0.8)
        ax.set_xlim(-0.01, 1.01)
        ax.set_ylim(-0.01, 1.01)
        ax.set_aspect("equal")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title("\n".join(textwrap.wrap(panel.title, 40)), fontsize=9)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False,
                  handlelength=2.4)
    title = f"ROC curves at level {level}: highest, median and lowest AUC structure"
    if min_pos:
        title += f"\n(structures with at least {min_pos} test positives where there are any)"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# Manual annotation colours: every state named in the legend, none looks like another.
TRUTH_COLORS = {"detected": "#c0392b", "undetected": "#9ecae1", "not annotated": "#ffffff"}
NO_PREDICTION = "#d9d9d9"


def annotation_grid(
    genes: list[str],
    structures: list[str],
    truth: np.ndarray,
    score: np.ndarray,
    title: str,
    score_label: str = "score (uncalibrated)",
) -> Figure:
    """Manual vs predicted annotation of sample genes (rows) x structures (columns).

    ``truth`` holds 1 / 0 / NaN (no annotation), ``score`` the prediction in [0, 1] (NaN: no
    prediction). Left: the manual annotation in three named colours (detected, undetected,
    not annotated: white, hatched); right: the score, with the manual positives repeated as
    dots, so agreement reads at a glance (the paper's figure 6 shows the same on a section
    image). ``score_label`` names the colour bar: ``score (uncalibrated)`` for
    logistic(decision score), a probability only where one was calibrated.
    """
    from matplotlib.patches import Patch  # noqa: PLC0415

    n_g, n_s = len(genes), len(structures)
    # each panel at least 4.2 in wide, so that its title never runs into the other's
    panel_w = max(4.2, min(18.0, 1.2 + 0.28 * n_s))
    fig, (ax_t, ax_p) = plt.subplots(
        1, 2, figsize=(2 * panel_w + 1.0, 2.4 + 0.3 * n_g), sharey=True,
        constrained_layout=True,
    )
    truth_cmap = matplotlib.colors.ListedColormap(
        [TRUTH_COLORS["undetected"], TRUTH_COLORS["detected"]]
    ).with_extremes(bad=TRUTH_COLORS["not annotated"])
    ax_t.imshow(np.ma.masked_invalid(truth), cmap=truth_cmap, vmin=0, vmax=1, aspect="auto",
                interpolation="nearest")
    gi, si = np.nonzero(np.isnan(truth))
    for g, j in zip(gi, si, strict=True):  # not annotated: white, hatched grey
        ax_t.add_patch(matplotlib.patches.Rectangle(
            (j - 0.5, g - 0.5), 1, 1, fill=False, hatch="///", edgecolor="0.6", lw=0))
    ax_t.set_title("manual annotation", fontsize=9)
    fig.legend(
        handles=[Patch(facecolor=TRUTH_COLORS["detected"], label="manual: detected"),
                 Patch(facecolor=TRUTH_COLORS["undetected"], label="manual: undetected"),
                 Patch(facecolor="white", edgecolor="0.6", hatch="///",
                       label="manual: not annotated"),
                 Patch(facecolor=NO_PREDICTION, label="no prediction")],
        loc="outside lower center", ncol=4, fontsize=8, frameon=False,
    )
    score_cmap = plt.get_cmap("magma_r").with_extremes(bad=NO_PREDICTION)
    im = ax_p.imshow(np.ma.masked_invalid(score), cmap=score_cmap, vmin=0, vmax=1,
                     aspect="auto", interpolation="nearest")
    gi, si = np.nonzero(truth == 1)
    ax_p.scatter(si, gi, s=16, c="#2ecc71", edgecolors="black", linewidths=0.5,
                 label="manual: detected")
    ax_p.set_title("predicted (dots: manual detected)", fontsize=9)
    for ax in (ax_t, ax_p):
        ax.set_xticks(range(n_s))
        ax.set_xticklabels(structures, rotation=90, fontsize=7)
        ax.set_yticks(range(n_g))
        ax.set_yticklabels(genes, fontsize=8)
        ax.set_xticks(np.arange(-0.5, n_s, 1), minor=True)
        ax.set_yticks(np.arange(-0.5, n_g, 1), minor=True)
        ax.grid(which="minor", color="white", lw=0.6)
        ax.tick_params(which="minor", length=0)
    fig.colorbar(im, ax=ax_p, label=score_label, shrink=0.8)
    fig.suptitle("\n".join(textwrap.wrap(title, int(11 * (2 * panel_w + 1)))), fontsize=10)
    return fig
