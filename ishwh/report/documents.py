"""The report's documents: its tables as frames (CSV / Parquet), and the HTML and Markdown
pages built from the same sections (tables, figures, preformatted text)."""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass, field
from datetime import datetime

import polars as pl

from ishwh import __version__
from ishwh.report import more
from ishwh.report.figures import Figure
from ishwh.report.gather import ReportData
from ishwh.report.tables import gene_tasks_wide

MAX_HTML_ROWS = 200        # longer tables are summarised in the page, complete in tables/


def flat(df: pl.DataFrame) -> pl.DataFrame:
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
class Section:
    """One section of the report: its tables, figures and preformatted blocks."""

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


def report_sections(data: ReportData, figs: list[Figure]) -> list[Section]:
    by_name = {f.name: f for f in figs}
    level = data.level
    secs = [
        Section(
            "table1", "Table 1: mean AUC per stage, ontology level and feature set",
            "Mean test-set AUC ± standard deviation across the structures of each level "
            "(structures whose test set lacks a class are excluded). The best feature set of "
            "each row is emphasised. The last row is the all-stages number (the paper's "
            "'0.894 ± 0.014' form): mean ± std across stages of each stage's mean AUC over "
            "all its structures. Numbers come from the level_auc and stage_auc views (named "
            "queries table1 and table1_overall).",
            tables=[(data.table1_wide, "best"), (data.table1_overall, None)],
        ),
        Section(
            "levels", "AUC per ontology level",
            "How each feature set fares from coarse (level 1) to fine levels.",
            figures=[by_name[n] for n in ("level_comparison", "stage_comparison") if n in by_name],
        ),
        Section(
            "roc", f"ROC curves (level {level})",
            "Structures with the highest, median and lowest test AUC at the chosen level.",
            figures=[by_name["roc"]] if "roc" in by_name else [],
        ),
        Section(
            "annotation", f"Manual vs predicted annotation (level {level})",
            "Where the classifier agrees with the annotators, and where it does not.",
            figures=[by_name["manual_vs_predicted"]] if "manual_vs_predicted" in by_name else [],
        ),
        *([Section(
            "atlas", "Registration and structure-level predictions",
            "Sections registered to the stage's reference atlas, and predictions of "
            "structure features painted on a section.",
            figures=[by_name[n] for n in ("registration_qc", "expression_on_section")
                     if n in by_name],
        )] if {"registration_qc", "expression_on_section"} & set(by_name) else []),
        Section(
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
        Section(
            "skipped", "Skipped tasks",
            "Tasks fit did not train, with the reason it recorded."
            if not data.skipped_tasks.is_empty() else "No task was skipped in these runs.",
            tables=[(data.skipped_tasks, None)] if not data.skipped_tasks.is_empty() else [],
        ),
    ]
    if not data.gene_task_auc.is_empty():
        secs.append(Section(
            "genes", "Gene-level task AUCs",
            "Test-set AUC of the gene-level (GO-like) tasks (the gene_task_auc view), one "
            "column per feature set, the best of each row emphasised; counts of positives "
            "and negatives per run are in tables/gene_task_auc.csv.",
            tables=[(gene_tasks_wide(data.gene_task_auc), "best")],
        ))
    secs += [Section(anchor, title, intro, tables=tables,
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
    secs.append(Section(
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


def render_html(data: ReportData, sections: list[Section], generated: str) -> str:
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


def render_markdown(data: ReportData, sections: list[Section], generated: str) -> str:
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
