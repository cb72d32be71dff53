"""`ishwh demo`: the whole pipeline on the synthetic demo atlas, in one call.

init -> synthetic demo atlas -> CNN features (default layers) + bag-of-words -> one fit per
feature set and annotated stage -> Table 1 -> the report. Every step is idempotent (the
warehouse reuses finished feature sets and runs), so running the demo twice redoes nothing
and the second run takes seconds.
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
from ishwh.vocab import sort_stages

DEFAULT_OUT = "ishwh-demo"
DB_NAME = "ishwh.duckdb"

StepCallback = Callable[[str, float, str], None]  # (step, seconds, what it did)

# The demo's one departure from featurize's defaults: a single k-means restart per
# bag-of-words codebook. The restarts (MiniBatchKMeans, 500 words, 3 SIFT scales x 2 stages)
# were ~2/3 of the demo's wall time on 2 cores and barely change the codebook.
DEMO_FEATURIZE: dict[str, dict[str, Any]] = {"bow": {"bow": {"n_init": 1}}}


@dataclass
class DemoResult:
    """What the demo made: the warehouse, Table 1, the report and each step's wall time."""

    db_path: Path
    feature_sets: list[str]
    run_ids: list[int]
    table1: pl.DataFrame
    report: ReportResult
    timings: dict[str, float] = field(default_factory=dict)


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
        check); the demo preset otherwise.
    featurize_options:
        Extra keyword arguments of :func:`ishwh.features.featurize` per extractor, e.g.
        ``{"bow": {"bow": {"n_words": 32}}}`` (tests); :data:`DEMO_FEATURIZE` otherwise.
    """
    # Imported here: the pipeline packages load torch & co., which `ishwh report` never needs.
    from ishwh.features import featurize
    from ishwh.fit import fit
    from ishwh.synth import ingest_synthetic

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

    with _step("synthetic atlas", timings, on_step, note):
        ingest_synthetic(db, preset="demo", seed=seed, progress=progress,
                         **(synth_overrides or {}))
        counts = status.summary(db)["counts"]
        said(f"{counts['experiments']} experiments, {counts['sections']} sections, "
             f"{counts['structures']} structures")

    with _step("features: CNN", timings, on_step, note):
        cnn = featurize(db, extractor="cnn", device=device, progress=progress,
                        **options.get("cnn", {}))
        said(", ".join(cnn))

    with _step("features: bag of words", timings, on_step, note):
        bow = featurize(db, extractor="bow", device=device, progress=progress,
                        **options.get("bow", {}))
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
        said(f"{len(run_ids)} run(s): {len(feature_sets)} feature set(s) x "
             f"{len(stages)} stage(s) ({', '.join(stages)})")

    with _step("table 1", timings, on_step, note):
        wide, _, _ = table1(db, runs=run_ids)
        said(f"{wide.height} row(s)")

    with _step("report", timings, on_step, note):
        report = build_report(db, out / "report", runs=run_ids)
        said(str(report.html))

    return DemoResult(db, feature_sets, run_ids, wide, report, timings)
