"""Options shared by every command, defined once, and the rich consoles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from ishwh.warehouse import default_db_path

console = Console()                  # results: stdout
err_console = Console(stderr=True, soft_wrap=True)  # messages: stderr, piped stdout stays clean

DbOption = Annotated[
    Path,
    typer.Option(
        "--db",
        envvar="ISHWH_DB",
        help="Warehouse file (DuckDB). Default ./ishwh.duckdb or $ISHWH_DB.",
        show_default=False,
    ),
]

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the result as JSON (equals the library's result).")
]


def db_default() -> Path:
    return default_db_path()


def print_json(obj: Any) -> None:
    """Print a library result as JSON on stdout."""
    typer.echo(json.dumps(obj, indent=2, default=str))
