"""`ishwh ingest dir PATH`: load a manifest folder (all-or-nothing, idempotent)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ishwh import manifest
from ishwh.errors import IshwhError, ManifestError

from .common import DbOption, JsonOption, console, db_default, err_console, print_json
from .progress import RichProgress

_SHOWN = 500  # problems listed on stderr at most


def ingest_dir(
    path: Annotated[
        Path,
        typer.Argument(
            metavar="PATH",
            help="Manifest folder: ontology.json or structures.csv, sections.csv, optional "
            "annotations.csv, gene_labels.csv.",
        ),
    ],
    link: Annotated[
        bool, typer.Option("--link", help="Link the images into the warehouse instead of "
                                          "copying them.")
    ] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Ingest a manifest folder: every row is checked first; any problem ingests nothing."""
    db = db or db_default()
    try:
        # Bars only on a terminal: a log file gets no bar frames (nor a blank line).
        quiet = as_json or not err_console.is_terminal
        result = manifest.ingest_dir(db, path, link=link,
                                     progress=RichProgress(quiet=quiet, transient=True))
    except ManifestError as exc:
        # Every problem on its own line (file:line: reason), then the one-line error. A
        # wholly wrong file can give a problem per row: the first ones show what is wrong.
        for problem in exc.problems[:_SHOWN]:
            typer.echo(f"  {problem}", err=True)
        if len(exc.problems) > _SHOWN:
            typer.echo(f"  ... and {len(exc.problems) - _SHOWN:,} more", err=True)
        raise IshwhError(
            f"{len(exc.problems)} problem(s) in the manifest {path} (listed above); "
            "nothing was ingested",
            hint=exc.hint,
        ) from exc
    if as_json:
        print_json(result)
        return
    if result["nothing_new"]:
        err_console.print(f"nothing new: {path} is already in {db}", soft_wrap=True)
        return
    t = Table("table", "new rows", "rows in manifest", title=f"ingested {path}")
    for name, n in result["new"].items():
        t.add_row(name, f"{n:,}", f"{result['rows'].get(name, 0):,}")
    t.add_row("(image files)", f"{result['images_added']:,}", "")
    console.print(t)


def register(app: typer.Typer) -> None:
    app.command("dir")(ingest_dir)
