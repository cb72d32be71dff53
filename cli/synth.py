"""`ishwh synth write DIR`: write the synthetic atlas as a manifest folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ishwh.synth import PRESETS, write_manifest
from ishwh.synth.params import parse_knobs

from .common import JsonOption, err_console, print_json
from .progress import bar

synth_app = typer.Typer(
    help="The embedded synthetic ISH atlas (known truth): write it as a manifest folder.",
    no_args_is_help=True,
)

PresetOption = Annotated[
    str, typer.Option("--preset", help=f"Atlas size: {' | '.join(PRESETS)}.")
]
SeedOption = Annotated[int, typer.Option("--seed", help="Random seed (same seed, same bytes).")]
GenesOption = Annotated[
    int | None, typer.Option("--genes", min=1, help="Genes per stage (default: the preset's).")
]
StagesOption = Annotated[
    str | None,
    typer.Option("--stages", help="Comma-separated stages, e.g. E13.5,E18.5 (default: preset's)."),
]
OntologyOption = Annotated[
    Path | None,
    typer.Option("--ontology", help="Use a real Allen structure-graph JSON (ventricles excluded)."),
]
WorkersOption = Annotated[
    int | None, typer.Option("--workers", min=1, help="Rendering processes (default 2).")
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", metavar="KEY=VALUE",
                 help="Turn a knob of the preset, e.g. --set grid_noise=1.8 (repeatable; the "
                      "knobs are listed in docs/synthetic.md)."),
]


def parse_stages(stages: str | None) -> tuple[str, ...] | None:
    """``"E13.5, E18.5"`` -> ``("E13.5", "E18.5")``; ``None`` keeps the preset's."""
    if stages is None:
        return None
    return tuple(s.strip() for s in stages.split(",") if s.strip())


def parse_size(size: str | None) -> tuple[int, int] | None:
    """``"320x200"`` -> ``(320, 200)``."""
    if size is None:
        return None
    try:
        w, h = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise typer.BadParameter("expected WIDTHxHEIGHT, e.g. 320x200") from None
    return w, h


def write(
    out_dir: Annotated[Path, typer.Argument(metavar="DIR", help="Folder to create.")],
    preset: PresetOption = "demo",
    seed: SeedOption = 0,
    genes: GenesOption = None,
    stages: StagesOption = None,
    image_size: Annotated[
        str | None, typer.Option("--image-size", help="Section image size WIDTHxHEIGHT.")
    ] = None,
    ontology: OntologyOption = None,
    workers: WorkersOption = None,
    knobs: SetOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write the synthetic atlas as a manifest folder (ontology.json, sections.csv,
    annotations.csv, gene_labels.csv, images/) for `ishwh ingest dir`."""
    result = write_manifest(
        out_dir, preset, seed=seed, progress=bar(not as_json), genes=genes,
        stages=parse_stages(stages), image_size=parse_size(image_size), ontology=ontology,
        workers=workers, **parse_knobs(knobs),
    )
    if as_json:
        print_json(result)
        return
    err_console.print(
        f"wrote {result['experiments']:,} experiments, {result['sections']:,} sections, "
        f"{result['annotations']:,} annotations to {result['path']} "
        f"in {result['seconds']} s", soft_wrap=True)


def register(app: typer.Typer) -> None:
    synth_app.command("write")(write)
    app.add_typer(synth_app, name="synth")
