"""`ishwh report`: the paper's Table 1 and figures as HTML, Markdown, CSV and Parquet."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.table import Table

from .common import DbOption, db_default, err_console


def _parse_runs(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        runs = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not a comma-separated list of run ids (e.g. 1,2)", param_hint="--runs"
        ) from None
    if not runs:
        raise typer.BadParameter("give at least one run id (e.g. 1,2)", param_hint="--runs")
    return runs


def rich_table1(wide: pl.DataFrame, title: str = "Table 1") -> Table:
    """Table 1 (wide form) for the terminal, the best feature set of each row in bold green.

    AUC cells never wrap; long feature-set names fold in the header instead, so the table
    stays readable in an 80-column terminal.
    """
    cols = [c for c in wide.columns if c != "best"]
    t = Table(title=title, header_style="bold")
    for c in cols:
        if c in ("stage", "level", "n_structures"):
            t.add_column("n" if c == "n_structures" else c, no_wrap=True,
                         justify="left" if c == "stage" else "right")
        else:
            t.add_column(c, justify="right", overflow="fold", min_width=13)
    for row in wide.iter_rows(named=True):
        if row["stage"] == "all stages":
            t.add_section()
        cells = []
        for c in cols:
            text = "" if row[c] is None else str(row[c])
            cells.append(f"[bold green]{text}[/]" if row["best"] == c else text)
        t.add_row(*cells)
    return t


def report(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder to write report.html, report.md, "
                           "figures/ and tables/ into (created if missing).")
    ],
    runs: Annotated[
        str | None, typer.Option("--runs", help="Comma-separated run ids (default: every "
                                 "finished run).")
    ] = None,
    level: Annotated[
        int | None, typer.Option("--level", help="Ontology level of the ROC and manual-vs-"
                                 "predicted figures (default: the level with most structures).")
    ] = None,
    db: DbOption = None,
) -> None:
    """Write the report of a warehouse (read-only) and print the path of its HTML page."""
    run_ids = _parse_runs(runs)
    from ishwh.report import build_report  # matplotlib: imported when the command runs

    result = build_report(db or db_default(), out, runs=run_ids, level=level)
    err_console.print(
        f"report of run(s) {', '.join(map(str, result.runs))}: {len(result.figures)} figure(s), "
        f"{len(result.tables) // 2} table(s); Markdown at {result.markdown}"
    )
    typer.echo(str(result.html))


def register(app: typer.Typer) -> None:
    app.command()(report)
