"""`ishwh ingest reference --stage S FILE`: a stage's reference annotation volume."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ishwh.atlas.reference import ingest_reference as _ingest

from .common import DbOption, JsonOption, console, db_default, print_json


def ingest_reference(
    path: Annotated[Path, typer.Argument(metavar="FILE", help="reference .npz (array "
                                         "'annotation', optional 'spacing_um') or .mhd + .raw")],
    stage: Annotated[str, typer.Option("--stage", help="Stage the volume belongs to, e.g. "
                                       "E11.5.")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Store a stage's reference atlas (axes anterior->posterior, superior->inferior,
    lateral->medial; ids must be in the ontology). Re-ingesting the same volume is a no-op."""
    result = _ingest(db or db_default(), stage, path)
    if as_json:
        print_json(result)
        return
    what = "stored" if result["written"] else "already stored (unchanged)"
    console.print(f"reference {result['stage']}: {' x '.join(map(str, result['shape']))} "
                  f"voxels, {result['n_labels']} structure ids, {what}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("reference")(ingest_reference)
