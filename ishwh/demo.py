"""`ishwh demo`: the whole pipeline on the synthetic demo atlas, in one call.

init -> synthetic demo atlas (E13.5 and E18.5 annotated, P4 generated with its annotations
withheld) -> CNN features (default layers) + bag-of-words (annotated stages) -> one fit per
feature set and annotated stage (and, on the CNN features, the ordinal intensity target) ->
paired comparisons of the feature sets (Wilcoxon over structures) -> production CNN models on
the annotated stages, which annotate P4, scored against the withheld truth -> Table 1 -> the
report. Every step is idempotent (the warehouse reuses finished feature sets and runs), so
running the demo twice redoes nothing and the second run takes seconds.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from ishwh import status, warehouse
from ishwh.progress import Progress
from ishwh.report import ReportResult, build_report, table1
from ishwh.vocab import UNANNOTATED_STAGES, sort_stages

DEFAULT_OUT = "ishwh-demo"
DB_NAME = "ishwh.duckdb"

StepCallback = Callable[[str, float, str], None]  # (step, seconds, what it did)

# The demo's one departure from featurize's defaults: a single k-means restart per
# bag-of-words codebook. The restarts (MiniBatchKMeans, 500 words, 3 SIFT scales x 2 stages)
# were ~2/3 of the demo's wall time on 2 cores and barely change the codebook.
DEMO_FEATURIZE: dict[str, dict[str, Any]] = {"bow": {"bow": {"n_init": 1}}}
# The stage the demo annotates: generated with the demo preset's genes, its expert calls
# withheld from `annotations` (the synthetic atlas's Allen-like rule).
DEMO_TARGET = "P4"


@dataclass
class DemoResult:
    """What the demo made: the warehouse, Table 1, the report and each step's wall time."""

    db_path: Path
    feature_sets: list[str]
    run_ids: list[int]
    table1: pl.DataFrame
    report: ReportResult
    timings: dict[str, float] = field(default_factory=dict)
    # the unannotated stage annotated (None: the atlas had none): run, stage, experiments,
    # AUC against the withheld truth over all structures with one, accuracy of the calls
    annotation: dict[str, Any] | None = None


@contextmanager
def _step(name: str, timings: dict[str, float], on_step: StepCallback | None,
          note: list[str]) -> Iterator[None]:
    start = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - start
    if on_step is not None:
        on_step(name, timings[name], note[0] if note else "")


def annotated_stages(db_path: str | os.PathLike) -> list[str]:
    """Stages of the warehouse with annotated experiments, in developmental order."""
    return sort_stages(s["stage"] for s in status.summary(db_path)["stages"]
                       if s["n_annotated"] > 0)


def run_demo(
    out_dir: str | os.PathLike = DEFAULT_OUT,
    db_path: str | os.PathLike | None = None,
    *,
    seed: int = 0,
    device: str = "auto",
    progress: Progress | None = None,
    on_step: StepCallback | None = None,
    synth_overrides: dict[str, Any] | None = None,
    featurize_options: dict[str, dict[str, Any]] | None = None,
) -> DemoResult:
    """Run the whole pipeline on the synthetic demo atlas into ``out_dir``.

    Parameters
    ----------
    out_dir:
        Folder for the warehouse (``<out_dir>/ishwh.duckdb`` unless ``db_path`` is given)
        and the report (``<out_dir>/report/``).
    db_path:
        Warehouse file to use instead of ``<out_dir>/ishwh.duckdb``.
    progress:
        Where the long steps report (:class:`ishwh.progress.Progress`); None: nowhere.
    on_step:
        Called after each step with its name, wall seconds and a short note.
    synth_overrides:
        Parameters of the synthetic atlas to change (e.g. ``{"n_genes": 30}`` for a quick
        check); the demo preset otherwise, with :data:`DEMO_TARGET` added to its stages.
    featurize_options:
        Extra keyword arguments of :func:`ishwh.features.featurize` per extractor, e.g.
        ``{"bow": {"bow": {"n_words": 32}}}`` (tests); :data:`DEMO_FEATURIZE` otherwise.
    """
    # Imported here: the pipeline packages load torch & co., which `ishwh report` never needs.
    from ishwh.annotate import annotate
    from ishwh.device import resolve_device
    from ishwh.features import featurize
    from ishwh.fit import fit
    from ishwh.synth import PRESETS, ingest_synthetic

    resolve_device(device)  # refuse a missing GPU before any folder or warehouse is made
    out = Path(out_dir)
    db = Path(db_path) if db_path is not None else out / DB_NAME
    timings: dict[str, float] = {}
    note: list[str] = []
    options = DEMO_FEATURIZE if featurize_options is None else featurize_options

    def said(text: str) -> None:
        note[:] = [text]

    with _step("init", timings, on_step, note):
        out.mkdir(parents=True, exist_ok=True)
        done = warehouse.init(db)
        said(f"{db} ({len(done)} migration(s) applied)" if done else f"{db} (up to date)")

    overrides = dict(synth_overrides or {})
    overrides.setdefault("stages", (*PRESETS["demo"].stages, DEMO_TARGET))
    with _step("synthetic atlas", timings, on_step, note):
        ingest_synthetic(db, preset="demo", seed=seed, progress=progress, **overrides)
        counts = status.summary(db)["counts"]
        said(f"{counts['experiments']} experiments, {counts['sections']} sections, "
             f"{counts['structures']} structures")

    with _step("features: CNN", timings, on_step, note):
        cnn = featurize(db, extractor="cnn", device=device, progress=progress,
                        **options.get("cnn", {})).names
        said(", ".join(cnn))

    with _step("features: bag of words", timings, on_step, note):
        bow = featurize(db, extractor="bow", device=device, progress=progress,
                        **options.get("bow", {})).names
        said(", ".join(bow))

    feature_sets = [*cnn, *bow]
    stages = annotated_stages(db)
    run_ids: list[int] = []
    with _step("fit", timings, on_step, note):
        for name in feature_sets:
            for stage in stages:
                # tasks="all": the gene-level (GO-like) tasks of the atlas are fitted as well
                run_ids += fit(db, name, stage, tasks="all", seed=seed, progress=progress,
                               device=device)
        for name in cnn:       # a multi-class target: intensity grades, ordinal model
            for stage in stages:
                run_ids += fit(db, name, stage, target="intensity", seed=seed,
                               progress=progress, device=device)
        said(f"{len(run_ids)} run(s): {len(feature_sets)} feature set(s) x "
             f"{len(stages)} stage(s) ({', '.join(stages)}), intensity on the CNN features")

    with _step("statistics", timings, on_step, note):
        from ishwh.fit.compare import compare

        pairs = compare(db, run_ids, seed=seed)
        said(f"{len(pairs)} paired comparison(s) of feature sets on the same split")

    targets = [st for st in overrides["stages"] if st in UNANNOTATED_STAGES]
    annotation = None
    if targets and stages and cnn:
        target = targets[0]
        with _step(f"annotate {target}", timings, on_step, note):
            # production models (every annotated experiment, out-of-fold scores for
            # calibration) on all annotated stages, each stage's vectors z-scored on its own
            (prod,) = fit(db, cnn[0], stages[-1], train_stages=stages, holdout="none",
                          feature_norm="stage", seed=seed, progress=progress, device=device)
            done = annotate(db, prod, target)
            annotation = {"run_id": prod, "stage": target, **_truth(db, prod, target),
                          "summary": done}
            auc = annotation["auc"]
            said(f"run {prod} ({cnn[0]}, trained on {'+'.join(stages)}) annotated "
                 f"{annotation['n_experiments']} experiments of {target}: AUC "
                 + (f"{auc:.3f}" if auc is not None else "n/a")
                 + " against the withheld truth")

    with _step("table 1", timings, on_step, note):
        wide, _, _ = table1(db, runs=run_ids)
        said(f"{wide.height} row(s)")

    with _step("report", timings, on_step, note):
        report = build_report(db, out / "report", runs=run_ids, annotation_runs=(
            [annotation["run_id"]] if annotation else None))
        said(str(report.html))

    return DemoResult(db, feature_sets, run_ids, wide, report, timings, annotation)


def _truth(db_path: Path, run_id: int, stage: str) -> dict[str, Any]:
    """How run ``run_id`` annotated ``stage``, against the withheld truth (all structures)."""
    with warehouse.connect(db_path, read_only=True) as con:
        n_exp = con.execute(
            "select count(distinct experiment_id) from predicted_annotations "
            "join experiments using (experiment_id) where run_id = ? and stage = ?",
            [run_id, stage]).fetchall()[0][0]
        auc, acc, n_auc = con.execute(
            "select avg(auc), sum(accuracy * n_calls) / sum(n_calls), count(auc) "
            "from truth_structure_auc where run_id = ? and stage = ?",
            [run_id, stage]).fetchall()[0]
    return {"n_experiments": int(n_exp), "auc": auc, "accuracy": acc,
            "n_structures": int(n_auc)}
