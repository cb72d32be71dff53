"""Write a report: self-contained HTML, the same content as Markdown, tables as CSV/Parquet.

The HTML embeds every figure as a base64 PNG and carries its own CSS, so it opens from disk
with no network and no external script or style sheet. The warehouse is opened read-only.
Output folder layout::

    DIR/report.html   DIR/report.md   DIR/figures/*.png   DIR/tables/*.csv, *.parquet
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ishwh.export import atomic_target, check_target, os_error
from ishwh.report.documents import (
    flat,
    render_html,
    render_markdown,
    report_sections,
    table_frames,
)
from ishwh.report.figures import make_figures
from ishwh.report.gather import gather
from ishwh.warehouse import connect


@dataclass
class ReportResult:
    """Paths of what :func:`build_report` wrote."""

    html: Path
    markdown: Path
    figures: list[Path]
    tables: list[Path]
    runs: list[int]
    level: int | None


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
        put(csv, lambda t, df=df: flat(df).write_csv(t))
        put(pq, lambda t, df=df: df.write_parquet(t))
        table_paths += [csv, pq]
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    sections = report_sections(data, figs)
    if pred is not None:  # before the closing "Runs" section
        sections.insert(len(sections) - 1, predicted.predicted_section(pred, pred_figs))
    html_path, md_path = out / "report.html", out / "report.md"
    put(html_path, lambda t: t.write_text(render_html(data, sections, generated),
                                          encoding="utf-8"))
    put(md_path, lambda t: t.write_text(render_markdown(data, sections, generated),
                                        encoding="utf-8"))
    return ReportResult(html_path, md_path, fig_paths, table_paths, data.runs, data.level)
