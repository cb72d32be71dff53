"""``annotate``: a run's stored models applied to every experiment of a stage.

Every experiment of the target stage that has a vector of the run's feature set is scored by
every structure model of the run (annotated or not: P4, P14 and P28 included; global and
structure-feature runs alike) into ``predicted_annotations``:

* ``score`` = vec . weights + intercept (vec z-scored within its stage first when the run's
  ``feature_norm`` is 'stage');
* ``probability`` = Platt scaling of the score (fitted on out-of-fold scores of the training
  experiments);
* ``called`` = score >= the structure's threshold (max F1 on the same out-of-fold scores).

With ``consistent`` the probabilities and calls obey the ontology: a structure is at least as
probable as any of its (modelled) descendants and called whenever one of them is called
(``raw_probability`` / ``raw_called`` keep the values before). A run x stage is replaced in one
transaction, so re-running is idempotent and a killed run leaves the previous result.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from ishwh import store, warehouse
from ishwh.errors import InvalidInput, NotFound
from ishwh.fit import models as models_mod
from ishwh.fit.calibration import apply_platt
from ishwh.progress import Progress, or_silent
from ishwh.vocab import STAGES

BLOCK = 256   # experiments scored per step


def modelled_parents(con: duckdb.DuckDBPyConnection, structure_ids: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """For each structure of ``structure_ids``: the column of its nearest ancestor that is in
    ``structure_ids`` (-1 if none), and its depth in the ontology (root = 0)."""
    rows = con.execute("select structure_id, parent_id from structures").fetchall()
    parent = {int(s): (None if p is None else int(p)) for s, p in rows}
    col = {int(s): j for j, s in enumerate(structure_ids.tolist())}
    up = np.full(structure_ids.size, -1, dtype=np.int64)
    depth = np.zeros(structure_ids.size, dtype=np.int64)
    for j, s in enumerate(structure_ids.tolist()):
        seen, p, d = {s}, parent.get(s), 0
        while p is not None and p not in seen:
            seen.add(p)
            d += 1
            if up[j] < 0 and p in col:
                up[j] = col[p]
            p = parent.get(p)
        depth[j] = d
    return up, depth


def make_consistent(prob: np.ndarray, called: np.ndarray, up: np.ndarray, depth: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and calls with every structure >= each of its modelled descendants.

    Bottom-up: deepest structures first, each passes its (already raised) probability and
    call to its nearest modelled ancestor, so a parent ends at max(itself, all descendants) —
    the smallest change that makes the hierarchy hold (expression in a part is expression in
    the whole).
    """
    p, c = prob.copy(), called.copy()
    for j in np.argsort(-depth, kind="stable"):
        if up[j] >= 0:
            np.maximum(p[:, up[j]], p[:, j], out=p[:, up[j]])
            np.logical_or(c[:, up[j]], c[:, j], out=c[:, up[j]])
    return p, c


@dataclass
class Scored:
    """Predictions of experiments (rows) x a run's structure models (columns)."""

    score: np.ndarray              # (n, T) float64: vec . weights + intercept
    probability: np.ndarray        # calibrated (hierarchy-consistent when asked)
    called: np.ndarray             # bool
    raw_probability: np.ndarray    # before the hierarchy
    raw_called: np.ndarray


def score(X: np.ndarray, models: models_mod.StoredModels,
          hierarchy: tuple[np.ndarray, np.ndarray] | None = None,
          progress: Progress | None = None) -> Scored:
    """The scoring core, pure (no warehouse): vectors ``X`` (n, d; normalised as the run's
    ``feature_norm`` says, see :func:`ishwh.fit.models.stage_vectors`) and a run's stored
    models -> scores, Platt probabilities, calls at the stored thresholds; with
    ``hierarchy`` (:func:`modelled_parents`) made consistent over the ontology.
    ``progress`` (optional) advances by experiments. Engines that score in parallel
    (e.g. Ray) call this on their blocks of rows."""
    scores = np.empty((X.shape[0], len(models.tasks)))
    for i in range(0, X.shape[0], BLOCK):
        scores[i:i + BLOCK] = models.scores(X[i:i + BLOCK])
        if progress is not None:
            progress.advance(min(BLOCK, X.shape[0] - i))
    raw_prob = apply_platt(scores, models.platt_a, models.platt_b)
    raw_called = scores >= models.threshold
    prob, called = raw_prob, raw_called
    if hierarchy is not None:
        prob, called = make_consistent(raw_prob, raw_called, *hierarchy)
    return Scored(scores, prob, called, raw_prob, raw_called)


def prediction_probabilities(
    con: duckdb.DuckDBPyConnection, run_id: int, experiment_ids, *, structure_ids=None,
    level: int | None = None,
) -> tuple[dict[tuple[int, int], float], dict[tuple[int, int], bool], bool]:
    """Calibrated probabilities of a run's predictions, for figures that paint them (the
    report's figure 6 and the atlas figure 6): ``({(experiment, structure): probability},
    {(experiment, structure): detected}, calibrated)``.

    The probability is annotate's (``predicted_annotations``) where a row exists, else the
    run's stored Platt scaling of the score; ``calibrated`` is False when some prediction
    has neither (a run without stored models: logistic of the raw score). Named query
    ``prediction_probabilities``.
    """
    from ishwh.query import query_text  # noqa: PLC0415

    rows = con.execute(query_text("prediction_probabilities"), {
        "run": int(run_id), "experiments": [int(e) for e in experiment_ids],
        "structures": None if structure_ids is None else [int(x) for x in structure_ids],
        "level": None if level is None else int(level)}).fetchall()
    prob = {(int(e), int(sid)): float(p) for e, sid, _, p, _, _ in rows}
    truth = {(int(e), int(sid)): bool(d) for e, sid, _, _, _, d in rows}
    return prob, truth, all(src != "score" for *_, src, _ in rows)


def _engine(engine: str, ray: Any) -> Any:
    """The Ray options of ``engine="ray"`` (checked, Ray importable), ``None`` for local."""
    if engine not in ("local", "ray"):
        raise InvalidInput(f"engine must be local or ray, got {engine!r}", param="engine")
    if engine == "local":
        if ray is not None:
            raise InvalidInput("Ray options apply to the Ray engine only", param="ray")
        return None
    from ishwh.ray import RayOptions, import_ray  # noqa: PLC0415 - Ray is an optional extra

    import_ray()  # says how to install Ray before any work
    opts = ray if isinstance(ray, RayOptions) else RayOptions(**(ray or {}))
    opts.check()
    return opts


def annotate(
    db_path: str | os.PathLike,
    run_id: int,
    stage: str,
    consistent: bool = False,
    progress: Progress | None = None,
    *,
    engine: str = "local",
    ray: Any = None,
) -> dict:
    """Predict every structure of run ``run_id``'s models for every experiment of ``stage``.

    Returns a summary dict (counts and timings). Refuses, writing nothing: an unknown stage or
    run, an unfinished run or one without stored models, a stage without experiments, and a
    stage whose experiments lack the run's feature set. ``engine="ray"`` scores in Ray tasks
    (:mod:`ishwh.ray.annotate`; ``ray``: a :class:`~ishwh.ray.RayOptions` or its dict), with
    the same predictions.
    """
    if stage not in STAGES:
        raise InvalidInput(f"unknown stage {stage!r}", hint="one of " + ", ".join(STAGES))
    ray_opts = _engine(engine, ray)
    prog = or_silent(progress)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    with warehouse.connect(db_path) as con:
        prog.start(f"annotate {stage}: reading run {run_id}'s models", 0)
        models = models_mod.read_models(con, run_id)
        n_stage = con.execute("select count(*) from experiments where stage = ?",
                              [stage]).fetchall()[0][0]
        if n_stage == 0:
            raise NotFound(f"no experiments at stage {stage}", hint="check `ishwh status`")
        ids, X = models_mod.stage_vectors(con, models.feature_set, stage, models.feature_norm)
        if ids.size == 0:
            raise NotFound(f"no experiment at stage {stage} has a vector of feature set "
                           f"{models.feature_set!r} (the features of run {run_id})",
                           hint=f"featurize stage {stage} with that feature set first")
        timings["read_s"] = time.perf_counter() - t0

        if models.feature_norm == "pooled" and stage not in models.train_stages:
            prog.message(f"run {run_id} was fitted on raw (pooled) vectors of "
                         f"{', '.join(models.train_stages)}: scores of {stage} are not "
                         "standardised per stage (a fit with feature normalisation 'stage' "
                         "transfers better; see docs/annotate.md)")
        t1 = time.perf_counter()
        hierarchy = modelled_parents(con, models.structure_ids) if consistent else None
        if ray_opts is None:
            prog.start(f"annotate {stage}: scoring", int(ids.size), unit="experiments")
            out = score(X, models, hierarchy, progress=prog)
            prog.done()
        else:
            from ishwh.ray.annotate import map_rows  # noqa: PLC0415 - Ray is an optional extra

            out = map_rows(score, X, (models, hierarchy), ray_opts, prog)
        scores, prob, called = out.score, out.probability, out.called
        raw_prob, raw_called = out.raw_probability, out.raw_called
        timings["score_s"] = time.perf_counter() - t1

        t2 = time.perf_counter()
        n, t = scores.shape
        tbl = pa.table({
            "run_id": pa.array(np.full(n * t, models.run_id, dtype=np.int32)),
            "experiment_id": pa.array(np.repeat(ids, t)),
            "structure_id": pa.array(np.tile(models.structure_ids, n)),
            "score": pa.array(scores.ravel()),
            "probability": pa.array(prob.ravel()),
            "called": pa.array(called.ravel()),
            "raw_probability": pa.array(raw_prob.ravel()),
            "raw_called": pa.array(raw_called.ravel()),
            "is_consistent": pa.array(np.full(n * t, consistent)),
        })
        prog.start(f"annotate {stage}: writing {n * t:,} predictions", 0)
        with warehouse.transaction(con):
            con.execute("delete from predicted_annotations where run_id = ? and "
                        "experiment_id in (select experiment_id from experiments "
                        "where stage = ?)", [models.run_id, stage]).fetchall()
            store.insert_arrow(con, "predicted_annotations", tbl)
        prog.done()
        timings["write_s"] = time.perf_counter() - t2
    timings["total_s"] = time.perf_counter() - t0
    summary = {
        "run_id": models.run_id, "stage": stage, "feature_set": models.feature_set,
        "train_stages": models.train_stages, "feature_norm": models.feature_norm,
        "consistent": consistent, "n_experiments": int(n),
        "n_experiments_without_vector": int(n_stage - n), "n_structures": int(t),
        "n_predictions": int(n * t), "n_called": int(called.sum()),
        "timings": {k: round(v, 3) for k, v in timings.items()},
    }
    if summary["n_experiments_without_vector"]:
        prog.message(f"{summary['n_experiments_without_vector']} experiment(s) of {stage} have "
                     f"no vector of {models.feature_set} and were not annotated")
    return summary


__all__ = ["Scored", "annotate", "make_consistent", "modelled_parents",
           "prediction_probabilities", "score"]
