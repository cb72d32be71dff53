"""`ishwh fit`: one L2 logistic regression per structure (and gene task) of a stage."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from .common import DbOption, JsonOption, console, db_default, print_json
from .progress import bar


def fit(
    features: Annotated[
        str, typer.Option("--features", help="Feature set name (see `ishwh status`).")
    ],
    stage: Annotated[str, typer.Option("--stage", help="Developmental stage, e.g. E11.5.")],
    levels: Annotated[
        str | None,
        typer.Option("--levels", help="Ontology levels, e.g. 1-10 or 1,3,5-7 (default: all)."),
    ] = None,
    tasks: Annotated[
        str, typer.Option("--tasks", help="structures, genes (gene_labels tasks) or all.")
    ] = "structures",
    split: Annotated[
        str,
        typer.Option("--split", help="stratified (iterative stratification) or paper "
                                     "(the paper's rejection sampling)."),
    ] = "stratified",
    repeats: Annotated[int, typer.Option("--repeats", help="Number of splits (one run each).")] = 1,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the split and inner folds.")] = 0,
    shuffle_labels: Annotated[
        bool,
        typer.Option("--shuffle-labels", help="Shuffle training labels (no-signal control)."),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Refit even if an identical finished run exists.")
    ] = False,
    device: Annotated[
        str, typer.Option("--device", help="auto (GPU if present), cpu or cuda.")
    ] = "auto",
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Fit a classifier per structure of a stage; test-set scores go to `predictions`."""
    from ishwh.fit import runner  # heavy (torch): imported when the command runs

    db = db or db_default()
    run_ids = runner.fit(db, features, stage, levels=levels, tasks=tasks, split=split,
                         repeats=repeats, seed=seed, shuffle_labels=shuffle_labels,
                         force=force, progress=bar(not as_json), device=device)
    rows = runner.summary(db, run_ids)
    if as_json:
        print_json({"run_ids": run_ids, "levels": rows})
        return
    t = Table("run", "stage", "level", "structures", "excluded", "mean AUC", "std",
              title=f"fit {features} {stage}")
    for r in rows:
        std = "" if r["std_auc"] is None else f"{r['std_auc']:.3f}"
        mean = "" if r["mean_auc"] is None else f"{r['mean_auc']:.3f}"
        t.add_row(str(r["run_id"]), r["stage"], str(r["level"]), str(r["n_structures"]),
                  str(r["n_excluded"]), mean, std)
    console.print(t)


def register(app: typer.Typer) -> None:
    app.command("fit")(fit)
