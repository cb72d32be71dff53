"""`ishwh annotate`: a run's stored models applied to every experiment of a stage."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import DbOption, JsonOption, console, db_default, print_json
from .engine import AddressOption, EngineOption, ray_options
from .progress import RichProgress


def annotate(
    run: Annotated[int, typer.Option("--run", help="Run whose stored models annotate.")],
    stage: Annotated[str, typer.Option("--stage", help="Stage to annotate, e.g. P4.")],
    consistent: Annotated[
        bool,
        typer.Option("--consistent",
                     help="Make probabilities and calls obey the ontology (a parent is at "
                          "least as likely as any child)."),
    ] = False,
    engine: EngineOption = "local",
    address: AddressOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Score every experiment of a stage with a run's models into `predicted_annotations`."""
    from ishwh.annotate import annotate as run_annotate  # heavy: imported when it runs

    out = run_annotate(db or db_default(), run, stage, consistent=consistent,
                       progress=RichProgress(quiet=as_json), engine=engine,
                       ray=ray_options(engine, address=address))
    if as_json:
        print_json(out)
        return
    console.print(
        f"run {out['run_id']} annotated {out['n_experiments']:,} experiment(s) of "
        f"{out['stage']} x {out['n_structures']:,} structure(s): {out['n_called']:,} called"
        + (" (hierarchy-consistent)" if out["consistent"] else "")
        + f" in {out['timings']['total_s']:.1f} s")


def register(app: typer.Typer) -> None:
    app.command("annotate")(annotate)
