"""`ishwh fit`: one L2 logistic regression per structure (and gene task) of a stage."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from .common import DbOption, JsonOption, console, db_default, print_json
from .progress import bar


def _trainer_knobs(c: float | None, cs: str | None, cv: int, select: str) -> dict:
    """The trainer options (--C, --Cs, --cv, --select) as runner.fit keywords, checked
    before any work."""
    from ishwh.errors import InvalidInput  # noqa: PLC0415
    from ishwh.fit.runner import validate_trainer  # noqa: PLC0415
    from ishwh.fit.trainer import DEFAULT_CS  # noqa: PLC0415

    if c is not None and cs is not None:
        raise InvalidInput("give either --C (one fixed C) or --Cs (a grid to choose C from)")
    grid: list[float] = list(DEFAULT_CS)
    if cs is not None:
        try:
            grid = [float(x) for x in cs.split(",") if x.strip()]
        except ValueError:
            raise InvalidInput(f"--Cs: cannot read {cs!r} as numbers",
                               hint="e.g. --Cs 1e-4,1e-3,1e-2") from None
    validate_trainer(c, grid, cv, select)  # its errors name their flag (cli.app)
    return {"C": c, "Cs": grid, "cv": cv, "select": select}


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
    train_stages: Annotated[
        str | None,
        typer.Option("--train-stages",
                     help="Stages whose annotated experiments train the models, e.g. "
                          "E13.5,E15.5,E18.5 (default: --stage; leave it out for "
                          "leave-one-stage-out transfer)."),
    ] = None,
    holdout: Annotated[
        str,
        typer.Option("--holdout",
                     help="split (predict the test side of --stage's split) or none "
                          "(production models on every annotated experiment; out-of-fold "
                          "predictions)."),
    ] = "split",
    feature_norm: Annotated[
        str,
        typer.Option("--feature-norm",
                     help="auto (stage when training on other stages or with --holdout "
                          "none, else pooled), pooled (raw vectors) or stage (z-score each "
                          "stage's vectors on their own; for models that score other "
                          "stages)."),
    ] = "auto",
    folds: Annotated[
        int, typer.Option("--folds", help="Cross-fitting folds (calibration, thresholds).")
    ] = 5,
    device: Annotated[
        str, typer.Option("--device", help="auto (GPU if present), cpu or cuda.")
    ] = "auto",
    target: Annotated[
        str,
        typer.Option("--target", help="What to predict per structure: detected (binary, the "
                                      "paper's), pattern, intensity or density (multi-class)."),
    ] = "detected",
    model: Annotated[
        str | None,
        typer.Option("--model", help="Multi-class model: multinomial or ordinal (cumulative "
                                     "logit). Default: multinomial for pattern, ordinal for "
                                     "intensity and density."),
    ] = None,
    # -- the trainer's knobs (recorded in runs.params.trainer)
    c: Annotated[float | None, typer.Option(
        "--C", help="Fixed inverse L2 strength for every classifier (> 0; standardised "
        "features). Default: chosen by inner CV over --Cs.")] = None,
    cs: Annotated[str | None, typer.Option(
        "--Cs", help="C grid for the inner CV, comma-separated (default 1e-6,1e-5,...,1).")
    ] = None,
    cv: Annotated[int, typer.Option("--cv", help="Inner cross-validation folds (>= 2).")] = 3,
    select: Annotated[str, typer.Option(
        "--select", help="How C is chosen: group (one per ontology level, one for gene "
        "tasks), task (one per classifier) or all (one for the run).")] = "group",
    scale_floor: Annotated[float, typer.Option(
        "--scale-floor", help="Divide each feature by at least this fraction of the median "
        "feature std (0 = plain standardisation, the paper's; 1 calibrates and ranks better "
        "on sparse features such as grid, see docs/annotate.md).")] = 0.0,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Fit a classifier per structure of a stage; test-set scores go to `predictions`, the
    models to `models` (for `ishwh annotate`)."""
    from ishwh.fit import runner  # heavy (torch): imported when the command runs

    db = db or db_default()
    knobs = _trainer_knobs(c, cs, cv, select)
    run_ids = runner.fit(db, features, stage, levels=levels, tasks=tasks, split=split,
                         repeats=repeats, seed=seed, shuffle_labels=shuffle_labels,
                         force=force, progress=bar(not as_json), device=device, target=target,
                         model=model, train_stages=train_stages, holdout=holdout,
                         feature_norm=feature_norm, n_folds=folds, scale_floor=scale_floor,
                         **knobs)
    rows = runner.summary(db, run_ids, target)
    if as_json:
        print_json({"run_ids": run_ids, "levels": rows})
        return
    if target != "detected":
        _print_target(rows, f"fit {features} {stage} --target {target}")
        return
    t = Table("run", "stage", "level", "structures", "excluded", "mean AUC", "std",
              title=f"fit {features} {stage}")
    for r in rows:
        std = "" if r["std_auc"] is None else f"{r['std_auc']:.3f}"
        mean = "" if r["mean_auc"] is None else f"{r['mean_auc']:.3f}"
        t.add_row(str(r["run_id"]), r["stage"], str(r["level"]), str(r["n_structures"]),
                  str(r["n_excluded"]), mean, std)
    console.print(t)


def _print_target(rows: list[dict], title: str) -> None:
    t = Table("run", "stage", "level", "structures", "excluded", "macro AUC", "kappa",
              "kappa (prior-corrected)", "bal. acc.", title=title)

    def num(v) -> str:
        return "" if v is None else f"{v:.3f}"

    for r in rows:
        t.add_row(str(r["run_id"]), r["stage"], str(r["level"]), str(r["n_structures"]),
                  str(r["n_excluded"]), num(r["mean_macro_auc"]), num(r["mean_kappa"]),
                  num(r["mean_kappa_prior"]), num(r["mean_balanced_accuracy"]))
    console.print(t)


def compare(
    runs: Annotated[
        str | None,
        typer.Option("--runs", help="Run ids, e.g. 3,4 (default: every finished run). Pairs "
                                    "runs on the same stage, split and target."),
    ] = None,
    n_boot: Annotated[int, typer.Option("--boot", help="Bootstrap resamples.")] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap.")] = 0,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Paired comparison of feature sets on the same split (Wilcoxon signed-rank over
    structures, bootstrap intervals); stored in run_comparisons and run_bootstrap."""
    from ishwh.fit import compare as compare_mod  # heavy (scipy): imported when run
    from ishwh.fit.runner import parse_run_ids

    rows = compare_mod.compare(db or db_default(), parse_run_ids(runs), n_boot=n_boot,
                               seed=seed)
    if as_json:
        print_json(rows)
        return
    t = Table("run a", "run b", "structures", "mean a", "mean b", "mean diff (95 % CI)",
              "a better", "Wilcoxon p", title="paired comparisons (macro AUC per structure)")
    for r in rows:
        ci = "" if r["boot_lo"] is None else f" ({r['boot_lo']:+.3f}, {r['boot_hi']:+.3f})"
        p = "" if r["p_value"] is None else f"{r['p_value']:.2g}"
        t.add_row(str(r["run_a"]), str(r["run_b"]), str(r["n_structures"]),
                  f"{r['mean_a']:.3f}", f"{r['mean_b']:.3f}", f"{r['mean_diff']:+.3f}{ci}",
                  str(r["n_a_better"]), p)
    console.print(t)


def register(app: typer.Typer) -> None:
    app.command("fit")(fit)
    app.command("compare")(compare)
