"""The paper's remaining figures (matplotlib), drawn from plain frames; no DuckDB here.

Figure 4 (class distribution per level and stage), Figure 5 (AUC against CNN layer), max vs
mean pooling, and confusion-matrix heatmaps of the multi-class targets. Each takes the frame
that the report also exports as CSV, so a figure can be redrawn from its table.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
from matplotlib.figure import Figure

from ishwh.report.plots import _COLORS, _grid, plt

_CLASS_COLORS = ("#d9d9d9", "#9ecae1", "#4292c6", "#08519c")   # undetected, then by grade


def class_distribution(dist: pl.DataFrame) -> Figure:
    """Share of each class per ontology level, one panel per stage x target (Figure 4)."""
    panels = dist.select("stage", "target").unique(maintain_order=True).rows()
    fig, axes = _grid(len(panels), ncols_max=3, size=(4.2, 2.8))
    for ax, (stage, target) in zip(axes, panels, strict=True):
        part = dist.filter((pl.col("stage") == stage) & (pl.col("target") == target))
        levels = sorted(part["level"].unique().to_list())
        classes = part.select("class", "grade").unique().sort("grade").rows()
        bottom = np.zeros(len(levels))
        for cls, grade in classes:
            share = {r["level"]: r["share"] for r in part.filter(pl.col("class") == cls)
                     .iter_rows(named=True)}
            y = np.array([share.get(lv, 0.0) for lv in levels])
            ax.bar(levels, y, bottom=bottom, color=_CLASS_COLORS[grade % 4], label=cls,
                   width=0.8)
            bottom += y
        ax.set_title(f"{stage}: {target}", fontsize=9)
        ax.set_xlabel("ontology level")
        ax.set_ylabel("share of calls")
        ax.set_xticks(levels)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=6, frameon=False, loc="lower right")
    fig.suptitle("Annotated classes per ontology level (the paper's figure 4)")
    fig.tight_layout()
    return fig


def split_cnn_name(name: str) -> tuple[str, str, str] | None:
    """``'efficientnet_lite0.blocks.3.max'`` -> (backbone, layer, pool); None if not CNN."""
    parts = name.split(".")
    if len(parts) < 3 or parts[-1] not in ("max", "mean") or name.startswith(("bow", "grid")):
        return None
    return parts[0], ".".join(parts[1:-1]), parts[-1]


def _layer_key(layer: str) -> tuple:
    """Natural order of module names: blocks.2 < blocks.10 < conv_head."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in layer.split("."))


def layer_curves(stage_auc: pl.DataFrame) -> Figure | None:
    """Mean AUC against CNN layer, one line per stage, per backbone x pooling (Figure 5).

    None unless some backbone and pooling come with two or more layers.
    """
    rows = []
    for r in stage_auc.filter(pl.col("label_mode") == "true").iter_rows(named=True):
        parsed = split_cnn_name(r["feature_set"])
        if parsed is not None and r["mean_auc"] is not None:
            rows.append((*parsed, r["stage"], r["mean_auc"]))
    groups: dict[tuple[str, str], list] = {}
    for bb, layer, pool, stage, auc in rows:
        groups.setdefault((bb, pool), []).append((layer, stage, auc))
    groups = {k: v for k, v in groups.items() if len({x[0] for x in v}) >= 2}
    if not groups:
        return None
    fig, axes = _grid(len(groups), ncols_max=2, size=(5.0, 3.4))
    for ax, ((bb, pool), vals) in zip(axes, sorted(groups.items()), strict=True):
        layers = sorted({x[0] for x in vals}, key=_layer_key)
        stages = list(dict.fromkeys(x[1] for x in vals))
        for i, stage in enumerate(stages):
            y = {layer: auc for layer, st, auc in vals if st == stage}
            xs = [j for j, layer in enumerate(layers) if layer in y]
            ax.plot(xs, [y[layers[j]] for j in xs], "o-", color=_COLORS[i % 10], label=stage)
        ax.set_xticks(range(len(layers)))
        ax.set_xticklabels(layers, rotation=30, fontsize=8)
        ax.set_xlabel("CNN layer")
        ax.set_ylabel("mean AUC (all structures)")
        ax.set_title(f"{bb}, {pool} pooling", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, frameon=False)
    fig.suptitle("AUC against CNN layer (the paper's figure 5)")
    fig.tight_layout()
    return fig


def pooling_pairs(stage_auc: pl.DataFrame) -> pl.DataFrame:
    """Stage AUC of max and mean pooling side by side, for layers that have both."""
    rows = {}
    for r in stage_auc.filter(pl.col("label_mode") == "true").iter_rows(named=True):
        parsed = split_cnn_name(r["feature_set"])
        if parsed is None:
            continue
        bb, layer, pool = parsed
        rows.setdefault((r["stage"], f"{bb}.{layer}", r["split_method"]), {})[pool] = r["mean_auc"]
    out = [{"stage": s, "layer": lay, "split_method": m, "max": v["max"], "mean": v["mean"]}
           for (s, lay, m), v in rows.items() if "max" in v and "mean" in v]
    schema = {"stage": pl.Utf8, "layer": pl.Utf8, "split_method": pl.Utf8, "max": pl.Float64,
              "mean": pl.Float64}
    return pl.DataFrame(out, schema=schema, orient="row")


def pooling(pairs: pl.DataFrame) -> Figure:
    """Max vs mean pooling over sections: stage AUC per layer, bars side by side."""
    labels = [f"{r['stage']}\n{r['layer']}" for r in pairs.iter_rows(named=True)]
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(max(4.5, 1.1 * len(labels) + 1.5), 3.4))
    ax.bar(x - 0.2, pairs["max"].to_numpy(), 0.4, label="max", color=_COLORS[0])
    ax.bar(x + 0.2, pairs["mean"].to_numpy(), 0.4, label="mean", color=_COLORS[1])
    ax.set_xticks(x)
    ax.set_xticklabels(labels, fontsize=7)
    low = float(np.nanmin(pairs.select("max", "mean").to_numpy()))
    ax.set_ylim(max(0.0, math.floor((low - 0.05) * 20) / 20), 1.0)
    ax.set_ylabel("mean AUC (all structures)")
    ax.legend(frameon=False, fontsize=8)
    ax.set_title("Pooling over an experiment's sections: max vs mean")
    fig.tight_layout()
    return fig


def confusion_heatmaps(conf: pl.DataFrame, max_panels: int = 8) -> Figure:
    """Row-normalised confusion matrices (truth x predicted), one panel per multi-class run."""
    runs = conf.select("run_id", "stage", "target", "model", "feature_set").unique(
        maintain_order=True).rows()[:max_panels]
    fig, axes = _grid(len(runs), ncols_max=4, size=(3.3, 3.1))
    for ax, (run_id, stage, target, model, fs) in zip(axes, runs, strict=True):
        part = conf.filter(pl.col("run_id") == run_id)
        classes = sorted(set(part.select("truth", "truth_grade").rows())
                         | set(part.select("predicted", "predicted_grade").rows()),
                         key=lambda c: c[1])
        names = [c[0] for c in classes]
        m = np.zeros((len(names), len(names)))
        for r in part.iter_rows(named=True):
            m[names.index(r["truth"]), names.index(r["predicted"])] += r["n"]
        share = m / np.maximum(m.sum(1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for i in range(len(names)):
            for j in range(len(names)):
                ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=7,
                        color="white" if share[i, j] > 0.6 else "black")
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=45, fontsize=7)
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels(names, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("annotated")
        ax.set_title(f"run {run_id}: {stage} {target}\n{model}, {fs}", fontsize=8)
    fig.suptitle("Confusion matrices of the multi-class targets (counts; colour: row share)")
    fig.tight_layout()
    return fig
