"""Write a report: self-contained HTML, the same content as Markdown, tables as CSV/Parquet.

The HTML embeds every figure as a base64 PNG and carries its own CSS, so it opens from disk
with no network and no external script or style sheet. The warehouse is opened read-only.
Output folder layout::

    DIR/report.html   DIR/report.md   DIR/figures/*.png   DIR/tables/*.csv, *.parquet
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np
import polars as pl

from ishwh import __version__
from ishwh.annotate import prediction_probabilities
from ishwh.errors import InvalidInput, NotFound
from ishwh.export import atomic_target, check_target, os_error
from ishwh.report import more, plots
from ishwh.report.tables import gene_tasks_wide, run_named, table1_wide
from ishwh.vocab import stage_key
from ishwh.warehouse import connect

MAX_GRID_STRUCTURES = 30   # figure-6 columns; more would be unreadable
MAX_GRID_GENES = 12        # figure-6 rows
MIN_ROC_POSITIVES = 5      # ROC picks: structures with at least this many test positives
MAX_HTML_ROWS = 200        # longer tables are summarised in the page, complete in tables/


@dataclass
class Figure:
    """One figure of the report: file stem, caption and PNG bytes."""

    name: str
    title: str
    caption: str
    png: bytes


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


@dataclass
class ReportResult:
    """Paths of what :func:`build_report` wrote."""

    html: Path
    markdown: Path
    figures: list[Path]
    tables: list[Path]
    runs: list[int]
    level: int | None


# --------------------------------------------------------------------------- gathering


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


# --------------------------------------------------------------------------- figures


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
            "classifier's score, shown as logistic(score): a 0..1 scale, not a calibrated "
            "probability (the paper's figure 6, drawn as a grid).",
            plots.to_png(plots.annotation_grid(
                g["genes"], g["structures"], g["truth"], g["score"], title, g["score_label"]
            )),
        ))
    figs += [Figure(*f) for f in more.figures(data.more)]
    from ishwh.atlas.figures import report_figures  # noqa: PLC0415 - atlas figures

    for name, title, caption, png in report_figures(data.db_path, data.runs, data.level):
        figs.append(Figure(name, title, caption, png))
    return figs


# --------------------------------------------------------------------------- tables


def _flat(df: pl.DataFrame) -> pl.DataFrame:
    """List columns as comma-joined text (CSV cannot hold lists)."""
    return df.with_columns(
        pl.col(c).cast(pl.List(pl.Utf8)).list.join(",")
        for c, t in df.schema.items() if isinstance(t, pl.List)
    )


def table_frames(data: ReportData) -> dict[str, pl.DataFrame]:
    """The report's tables, by file stem."""
    out = {
        "table1": data.table1_long,
        "table1_wide": data.table1_wide,
        "table1_overall": data.table1_overall,
        "structure_auc": data.structure_auc,
        "split_balance": data.split_balance,
        "skipped_tasks": data.skipped_tasks,
        "runs": data.runs_df,
    }
    if not data.gene_task_auc.is_empty():
        out["gene_task_auc"] = data.gene_task_auc
    out.update(data.more)
    return out


def _cell(value, digits: int = 3) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.{digits}f}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def _html_table(df: pl.DataFrame, best: str | None = None, cls: str = "") -> str:
    """``df`` as an HTML table; with ``best``, the cell named by that column is emphasised."""
    cols = [c for c in df.columns if c != best]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = []
    for row in df.head(MAX_HTML_ROWS).iter_rows(named=True):
        cells = []
        for c in cols:
            text = html.escape(_cell(row[c]))
            num = isinstance(row[c], int | float) and not isinstance(row[c], bool)
            classes = " ".join(k for k, on in (("num", num),
                                              ("best", best is not None and row[best] == c)) if on)
            cells.append(f'<td class="{classes}">{text}</td>' if classes else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = ""
    if df.height > MAX_HTML_ROWS:
        more = (f'<p class="note">First {MAX_HTML_ROWS} of {df.height} rows; '
                "all of them are in the CSV/Parquet table.</p>")
    return (f'<div class="scroll"><table class="{cls}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>{more}")


def _md_table(df: pl.DataFrame, best: str | None = None) -> str:
    cols = [c for c in df.columns if c != best]

    def esc(s: str) -> str:
        return s.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(esc(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    for row in df.head(MAX_HTML_ROWS).iter_rows(named=True):
        cells = []
        for c in cols:
            text = esc(_cell(row[c]))
            cells.append(f"**{text}**" if best is not None and row[best] == c and text else text)
        lines.append("| " + " | ".join(cells) + " |")
    if df.height > MAX_HTML_ROWS:
        lines.append(f"\n*First {MAX_HTML_ROWS} of {df.height} rows; all are in the tables/.*")
    return "\n".join(lines)


# --------------------------------------------------------------------------- documents


@dataclass
class _Section:
    anchor: str
    title: str
    intro: str
    tables: list[tuple[pl.DataFrame, str | None]] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    pre: list[tuple[str, str]] = field(default_factory=list)  # (summary, preformatted text)


def _run_columns(df: pl.DataFrame) -> pl.DataFrame:
    keep = [c for c in df.columns if c not in ("params", "feature_params", "versions", "timings")]
    return df.select(keep)


def _pretty_json(text: str | None) -> str:
    if not text:
        return "(none)"
    try:
        return json.dumps(json.loads(text), indent=2, sort_keys=True)
    except ValueError:
        return text


def _sections(data: ReportData, figs: list[Figure]) -> list[_Section]:
    by_name = {f.name: f for f in figs}
    level = data.level
    secs = [
        _Section(
            "table1", "Table 1: mean AUC per stage, ontology level and feature set",
            "Mean test-set AUC ± standard deviation across the structures of each level "
            "(structures whose test set lacks a class are excluded). The best feature set of "
            "each row is emphasised. The last row is the all-stages number (the paper's "
            "'0.894 ± 0.014' form): mean ± std across stages of each stage's mean AUC over "
            "all its structures. Numbers come from the level_auc and stage_auc views (named "
            "queries table1 and table1_overall).",
            tables=[(data.table1_wide, "best"), (data.table1_overall, None)],
        ),
        _Section(
            "levels", "AUC per ontology level",
            "How each feature set fares from coarse (level 1) to fine levels.",
            figures=[by_name[n] for n in ("level_comparison", "stage_comparison") if n in by_name],
        ),
        _Section(
            "roc", f"ROC curves (level {level})",
            "Structures with the highest, median and lowest test AUC at the chosen level.",
            figures=[by_name["roc"]] if "roc" in by_name else [],
        ),
        _Section(
            "annotation", f"Manual vs predicted annotation (level {level})",
            "Where the classifier agrees with the annotators, and where it does not.",
            figures=[by_name["manual_vs_predicted"]] if "manual_vs_predicted" in by_name else [],
        ),
        *([_Section(
            "atlas", "Registration and structure-level predictions",
            "Sections registered to the stage's reference atlas, and predictions of "
            "structure features painted on a section.",
            figures=[by_name[n] for n in ("registration_qc", "expression_on_section")
                     if n in by_name],
        )] if {"registration_qc", "expression_on_section"} & set(by_name) else []),
        _Section(
            "splits", "Split balance",
            "One row per train/test split (the split_balance view, over the structures the "
            "runs trained on). worst_dev_pos / mean_dev_pos: largest and mean deviation of "
            "the share of a structure's positives that fell in the test set from the split's "
            "test fraction (0 = perfectly balanced); min / median_ratio_agreement: the "
            "paper's train-vs-test class-ratio agreement (1 = identical ratios); "
            "worst_share_error: the same deviation, worst over both classes; "
            "n_test_one_class: structures whose test set lacks a class, so they have no AUC.",
            tables=[(data.split_balance, None)],
        ),
        _Section(
            "skipped", "Skipped tasks",
            "Tasks fit did not train, with the reason it recorded."
            if not data.skipped_tasks.is_empty() else "No task was skipped in these runs.",
            tables=[(data.skipped_tasks, None)] if not data.skipped_tasks.is_empty() else [],
        ),
    ]
    if not data.gene_task_auc.is_empty():
        secs.append(_Section(
            "genes", "Gene-level task AUCs",
            "Test-set AUC of the gene-level (GO-like) tasks (the gene_task_auc view), one "
            "column per feature set, the best of each row emphasised; counts of positives "
            "and negatives per run are in tables/gene_task_auc.csv.",
            tables=[(gene_tasks_wide(data.gene_task_auc), "best")],
        ))
    secs += [_Section(anchor, title, intro, tables=tables,
                      figures=[by_name[n] for n in names if n in by_name])
             for anchor, title, intro, tables, names in more.sections(data.more)]
    runs = data.runs_df
    pre = []
    versions = runs["versions"].unique().to_list()
    if len(versions) == 1:
        pre.append(("Software versions recorded by fit (all runs)", _pretty_json(versions[0])))
    for r in runs.iter_rows(named=True):
        body = {"params": r["params"], "feature_params": r["feature_params"],
                "timings": r["timings"]}
        if len(versions) > 1:
            body["versions"] = r["versions"]
        text = "\n".join(f"{k}: {_pretty_json(v)}" for k, v in body.items())
        pre.append((f"Run {r['run_id']}: {r['feature_set']}, {r['stage']}", text))
    pre.append(("This report: software versions", json.dumps(data.versions, indent=2)))
    secs.append(_Section(
        "runs", "Runs: parameters and versions",
        f"The {runs.height} run(s) in this report; parameters, timings and versions below.",
        tables=[(_run_columns(runs), None)], pre=pre,
    ))
    return secs


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;
background:#fafafa}
main{max-width:1180px;margin:0 auto;padding:24px 32px;background:#fff}
h1{font-size:1.6em;margin:0 0 4px}h2{font-size:1.25em;border-bottom:1px solid #ddd;
padding-bottom:4px;margin-top:36px}
.meta{color:#666;font-size:.9em}nav ol{columns:2;font-size:.95em}
table{border-collapse:collapse;font-size:.85em;margin:10px 0}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;white-space:nowrap}
th{background:#f0f3f7;position:sticky;top:0}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.best{font-weight:700;background:#e3f4e8}tbody tr:nth-child(even){background:#fbfbfb}
.scroll{overflow-x:auto}figure{margin:16px 0}figure img{max-width:100%;height:auto;
border:1px solid #eee}figcaption{color:#555;font-size:.9em;margin-top:4px}
details{margin:6px 0}summary{cursor:pointer}pre{background:#f6f8fa;padding:8px;
overflow-x:auto;font-size:.8em}.note{color:#666;font-size:.85em}
@media (max-width:600px){main{padding:12px 10px}nav ol{columns:1}h1{font-size:1.3em}}
"""


def render_html(data: ReportData, sections: list[_Section], generated: str) -> str:
    """The self-contained HTML page (figures inline as base64 PNG, CSS inline, no scripts)."""
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>ishwh report</title>", f"<style>{_CSS}</style></head><body><main>",
        "<h1>ishwh report</h1>",
        f'<p class="meta">Warehouse <code>{html.escape(data.db_path)}</code> · runs '
        f"{html.escape(_cell(data.runs))} · generated {html.escape(generated)} · ishwh "
        f"{html.escape(__version__)}</p>",
        "<nav><ol>" + "".join(
            f'<li><a href="#{s.anchor}">{html.escape(s.title)}</a></li>' for s in sections
        ) + "</ol></nav>",
    ]
    for s in sections:
        parts.append(f'<section id="{s.anchor}"><h2>{html.escape(s.title)}</h2>')
        parts.append(f"<p>{html.escape(s.intro)}</p>")
        if not s.figures and s.anchor in ("roc", "annotation", "levels"):
            parts.append('<p class="note">No structure AUCs to draw in these runs.</p>')
        for df, best in s.tables:
            parts.append(_html_table(df, best))
        for f in s.figures:
            b64 = base64.b64encode(f.png).decode("ascii")
            parts.append(
                f'<figure><img src="data:image/png;base64,{b64}" alt="{html.escape(f.title)}">'
                f"<figcaption>{html.escape(f.caption)}</figcaption></figure>"
            )
        for summary, text in s.pre:
            parts.append(f"<details><summary>{html.escape(summary)}</summary>"
                         f"<pre>{html.escape(text)}</pre></details>")
        parts.append("</section>")
    parts.append("</main></body></html>")
    return "\n".join(parts)


def render_markdown(data: ReportData, sections: list[_Section], generated: str) -> str:
    """The same content as Markdown; figures are the PNG files in ``figures/``."""
    out = [
        "# ishwh report", "",
        f"Warehouse `{data.db_path}` · runs {_cell(data.runs)} · generated {generated} · "
        f"ishwh {__version__}", "",
    ]
    for s in sections:
        out += [f"## {s.title}", "", s.intro, ""]
        for df, best in s.tables:
            out += [_md_table(df, best), ""]
        for f in s.figures:
            out += [f"![{f.title}](figures/{f.name}.png)", "", f"*{f.caption}*", ""]
        for summary, text in s.pre:
            out += [f"**{summary}**", "", "```", text, "```", ""]
    return "\n".join(out)


def build_report(
    db_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    runs: list[int] | None = None,
    level: int | None = None,
    annotation_runs: list[int] | None = None,
) -> ReportResult:
    """Write the report of ``runs`` (default: every finished run) into ``out_dir``.

    ``level`` picks the ontology level of the ROC and manual-vs-predicted figures (default:
    the level with the most structures that have an AUC). ``annotation_runs``: the runs
    whose predicted annotations the "Predicted annotations" section shows (default:
    ``runs``, or every run that annotated when ``runs`` is None). Returns the written paths.
    """
    from ishwh.report import predicted  # noqa: PLC0415  (it builds on this module)

    out = check_target(out_dir, db_path, folder=True)  # before any work
    data = gather(db_path, runs, level)
    figs = make_figures(data)
    with connect(db_path, read_only=True) as con:
        pred = predicted.gather_predicted(con, annotation_runs if annotation_runs is not None
                                          else runs)
    pred_figs = predicted.predicted_figures(pred) if pred is not None else []
    try:
        (out / "figures").mkdir(parents=True, exist_ok=True)
        (out / "tables").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise os_error(exc, out) from exc

    def put(path: Path, write) -> Path:
        # Each file atomically (temp + rename): a killed report never leaves half a file.
        with atomic_target(path) as tmp:
            write(tmp)
        return path

    fig_paths = [put(out / "figures" / f"{f.name}.png", lambda t, f=f: t.write_bytes(f.png))
                 for f in [*figs, *pred_figs]]
    table_paths = []
    frames = table_frames(data)
    if pred is not None:
        frames.update(predicted.predicted_tables(pred))
    for name, df in frames.items():
        csv, pq = out / "tables" / f"{name}.csv", out / "tables" / f"{name}.parquet"
        put(csv, lambda t, df=df: _flat(df).write_csv(t))
        put(pq, lambda t, df=df: df.write_parquet(t))
        table_paths += [csv, pq]
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    sections = _sections(data, figs)
    if pred is not None:  # before the closing "Runs" section
        sections.insert(len(sections) - 1, predicted.predicted_section(pred, pred_figs))
    html_path, md_path = out / "report.html", out / "report.md"
    put(html_path, lambda t: t.write_text(render_html(data, sections, generated),
                                          encoding="utf-8"))
    put(md_path, lambda t: t.write_text(render_markdown(data, sections, generated),
                                        encoding="utf-8"))
    return ReportResult(html_path, md_path, fig_paths, table_paths, data.runs, data.level)
