"""`ishwh demo`: the whole pipeline on the synthetic demo atlas, with Table 1 and a report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from .common import console, err_console
from .progress import RichProgress
from .report import rich_table1


def demo(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the demo warehouse and its report.")
    ] = Path("ishwh-demo"),
    # Deliberately no $ISHWH_DB: the demo must never write synthetic data into the warehouse
    # a user points ISHWH_DB at.
    db: Annotated[
        Path | None, typer.Option("--db", help="Warehouse file (default: OUT/ishwh.duckdb).")
    ] = None,
    device: Annotated[
        str, typer.Option("--device", help="auto, cpu or cuda (CNN features and fitting).")
    ] = "auto",
) -> None:
    """Run everything on the synthetic demo atlas: ingest, featurize, fit, Table 1, report.

    Running it again reuses what exists and finishes in seconds.
    """
    from ishwh.demo import run_demo  # heavy (torch): imported when the command runs

    start = time.perf_counter()

    def on_step(name: str, seconds: float, note: str) -> None:
        err_console.print(f"[green]✓[/] {name:<24} {seconds:7.1f} s  [dim]{note}[/]",
                          soft_wrap=True)

    result = run_demo(out, db, device=device, on_step=on_step, progress=RichProgress())
    console.print(rich_table1(result.table1, title="Table 1 analogue: mean test AUC ± std"))
    err_console.print(f"demo finished in {time.perf_counter() - start:.1f} s")
    typer.echo(str(result.report.html))


def register(app: typer.Typer) -> None:
    app.command()(demo)
