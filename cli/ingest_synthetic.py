"""`ishwh ingest synthetic`: generate the synthetic atlas straight into the warehouse."""

from __future__ import annotations

import typer
from rich.table import Table

from ishwh.synth import ingest_synthetic as ingest
from ishwh.synth.params import parse_knobs

from .common import DbOption, JsonOption, console, db_default, print_json
from .progress import bar
from .synth import (
    GenesOption,
    OntologyOption,
    PresetOption,
    SeedOption,
    SetOption,
    StagesOption,
    WorkersOption,
    parse_size,
    parse_stages,
)


def synthetic(
    preset: PresetOption = "demo",
    seed: SeedOption = 0,
    genes: GenesOption = None,
    stages: StagesOption = None,
    image_size: str | None = typer.Option(
        None, "--image-size", help="Section image size WIDTHxHEIGHT."),
    ontology: OntologyOption = None,
    workers: WorkersOption = None,
    knobs: SetOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Generate the synthetic ISH atlas (known truth) into the warehouse (`ishwh init`
    first); re-running adds nothing and resumes an interrupted run."""
    db = db or db_default()
    result = ingest(db, preset, seed=seed, progress=bar(not as_json), genes=genes,
                    stages=parse_stages(stages), image_size=parse_size(image_size),
                    ontology=ontology, workers=workers, **parse_knobs(knobs))
    if as_json:
        print_json(result)
        return
    t = Table("table", "new rows", title=f"synthetic atlas {result['source']} -> {db}")
    for name, n in result["added"].items():
        t.add_row(name, f"{n:,}")
    console.print(t)
    console.print(
        f"{result['experiments_rendered']:,} experiments rendered "
        f"({result['experiments_skipped']:,} already present), "
        f"{result['sections_rendered']:,} sections in {result['seconds']} s "
        f"({result['sections_per_second']} sections/s)")


def register(app: typer.Typer) -> None:
    app.command("synthetic")(synthetic)
