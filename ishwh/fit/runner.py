"""``fit``: warehouse -> tasks, split, trainer -> runs, run_tasks, predictions.

One run = one feature set x stage x split (x label mode). The flow:

1. runs left ``running`` by a killed fit are deleted (this process holds the warehouse's write
   lock, so any ``running`` row is stale; :mod:`ishwh.fit.run_store`);
2. labels and features of the stage are read; the split ``(stage, method, seed, repeat)`` is
   reused or made and stored (:mod:`ishwh.fit.split_store`) — the same split for every
   feature set, balanced over every structure and gene task of the stage, whatever levels a
   run asks;
3. a ``runs`` row is inserted as ``running`` (``run_store.start_run``); pure steps choose the
   rows (:func:`plan_rows`) and fit all tasks at once: :func:`train_global`
   (:class:`~ishwh.fit.trainer.BatchedLogisticRegression` on the whole vector) or, for
   structure-feature sets ``atlas.*``, :func:`ishwh.fit.structure_features.train_structures`
   (one model per structure on its own columns);
4. out-of-fold scores of the training experiments (cross-fitted by gene) give every task its
   Platt scaling and call threshold; the models are folded into raw-feature weights;
5. :func:`run_rows` makes the rows, and ``run_store.finish_run`` writes ``run_tasks``,
   ``predictions``, ``gene_predictions``, ``models``, ``run_training`` and ``status =
   'finished'`` in ONE transaction, so a killed fit never shows as finished nor leaves half
   its rows (multi-class targets finish their runs the same way).

Training stages may differ from the evaluated stage (``train_stages``; cross-stage transfer),
and ``holdout='none'`` trains production models on every annotated experiment (predictions
are then out of fold). See docs/annotate.md.

An identical fit (same fingerprint: feature set and its contents, stage, split, tasks, levels,
label mode, trainer parameters, code version) reuses the finished run unless ``force``, which
replaces it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

from ishwh import store, warehouse
from ishwh.device import resolve_device
from ishwh.errors import InvalidInput, NotFound
from ishwh.fit import calibration, run_store
from ishwh.fit import models as models_mod
from ishwh.fit import structure_features as sf
from ishwh.fit import tasks as tasks_mod
from ishwh.fit.run_store import FIT_VERSION
from ishwh.fit.split_store import NO_SPLIT, get_or_make_split, side_of
from ishwh.fit.trainer import (
    DEFAULT_CS,
    BatchedLogisticRegression,
    crossfit_scores,
    folded_weights,
)
from ishwh.progress import Progress, or_silent, phase
from ishwh.vocab import STAGES, TASK_KINDS, check_stage

SPLIT_METHODS = ("stratified", "paper")
MIN_TRAIN_POS = 3
MIN_TRAIN_NEG = 3


# --------------------------------------------------------------------------- arguments


def parse_levels(levels: str | int | Sequence[int] | None) -> list[int] | None:
    """``'1-10'``, ``'1,3,5-7'``, ``5`` or ``[1, 2]`` -> sorted level list; None = all."""
    if levels is None:
        return None
    if isinstance(levels, int):
        return [levels]
    if not isinstance(levels, str):
        out = sorted({int(x) for x in levels})
    else:
        out_set: set[int] = set()
        for part in levels.replace(" ", "").split(","):
            if not part:
                continue
            try:
                if "-" in part:
                    lo, hi = (int(x) for x in part.split("-", 1))
                    out_set.update(range(lo, hi + 1))
                else:
                    out_set.add(int(part))
            except ValueError:
                raise InvalidInput(f"cannot read levels {part!r}",
                                   hint="write e.g. 1-10 or 1,3,5-7", param="levels") from None
        out = sorted(out_set)
    if not out or min(out) < 0:
        raise InvalidInput("levels must name at least one level >= 0", hint="e.g. 1-10",
                           param="levels")
    return out


def parse_run_ids(text: str | None) -> list[int] | None:
    """``'3,4'`` -> [3, 4]; None -> None (every run)."""
    if text is None:
        return None
    try:
        out = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise InvalidInput(f"cannot read run ids {text!r}", hint="write e.g. 3,4") from None
    if not out:
        raise InvalidInput("no run ids given", hint="write e.g. 3,4")
    return out


def levels_text(levels: list[int] | None) -> str | None:
    """Compact text of a level list: [1, 2, 3, 5] -> '1-3,5'."""
    if levels is None:
        return None
    parts, start, prev = [], levels[0], levels[0]
    for x in [*levels[1:], None]:
        if x is not None and x == prev + 1:
            prev = x
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if x is not None:
            start = prev = x
    return ",".join(parts)


def _validate(stage: str, tasks: str, split: str, repeats: int) -> None:
    check_stage(stage)
    if tasks not in TASK_KINDS:
        raise InvalidInput(f"tasks must be one of {', '.join(TASK_KINDS)}, not {tasks!r}",
                           param="tasks")
    if split not in SPLIT_METHODS:
        raise InvalidInput(f"split must be one of {', '.join(SPLIT_METHODS)}, not {split!r}",
                           param="split")
    if repeats < 1:
        raise InvalidInput("repeats must be at least 1", param="repeats")


SELECTS = ("group", "task", "all")


def validate_trainer(C: float | None, Cs: Sequence[float], cv: int, select: str) -> None:
    """Refuse trainer parameters that make no sense, before any work (the error's ``param``
    names the parameter: ``C``, ``Cs``, ``cv`` or ``select``)."""
    import math  # noqa: PLC0415

    def bad(x) -> bool:
        return isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x) \
            or x <= 0

    if C is not None and bad(C):
        raise InvalidInput(f"C must be a positive number, got {C!r}",
                           hint="e.g. 0.01; or leave C unset to choose it by inner CV", param="C")
    if C is None:
        grid = list(Cs)
        if not grid:
            raise InvalidInput("the C grid is empty", hint="e.g. 1e-4,1e-3,1e-2", param="Cs")
        wrong = [c for c in grid if bad(c)]
        if wrong:
            raise InvalidInput(f"every C of the grid must be a positive number, got {wrong[0]!r}",
                               param="Cs")
    if isinstance(cv, bool) or not isinstance(cv, int) or cv < 2:
        raise InvalidInput(f"the inner CV needs at least 2 folds, got {cv!r}", param="cv")
    if select not in SELECTS:
        raise InvalidInput(f"select must be one of {', '.join(SELECTS)}, not {select!r}",
                           param="select")


# --------------------------------------------------------------------------- helpers

# The run store and the split store have their own modules; these names stay importable here.
_versions = run_store.versions
_delete_runs = run_store.delete_runs
_json = run_store.json_text
_fingerprint = run_store.fingerprint
clean_unfinished = run_store.clean_unfinished


def _check_stage_ready(con: duckdb.DuckDBPyConnection, fsid: int, features: str, stage: str,
                       set_finished) -> None:
    """A feature set is usable at a stage it finished (``feature_set_stages``), or, where no
    stage is recorded, once the whole set is finished; a skipped stage is named with why."""
    row = con.execute("select status, reason from feature_set_stages where feature_set_id = ? "
                      "and stage = ?", [fsid, stage]).fetchall()
    if row and row[0][0] == "skipped":
        raise InvalidInput(f"feature set {features!r} has no vectors at stage {stage}: "
                           f"featurize skipped that stage: {row[0][1]}")
    if not row and set_finished is None:
        raise InvalidInput(f"feature set {features!r} is not finished yet at stage {stage}",
                           hint="let `ishwh featurize` complete (it resumes) and fit again")


# --------------------------------------------------------------------------- fit


@dataclass
class _StageData:
    """What a run reads of one stage: experiments, task labels and (normalised) vectors."""

    exp_ids: np.ndarray                 # experiments of the stage, sorted
    gene_ids: np.ndarray
    struct: tasks_mod.TaskMatrix
    gene: tasks_mod.TaskMatrix
    feat_ids: np.ndarray                # experiments with a vector, sorted
    X: np.ndarray
    row: np.ndarray                     # task-matrix row of every vector


def _read_stage(con, features: str, stage: str, feature_norm: str) -> _StageData:
    exp_ids, gene_ids = tasks_mod.stage_experiments(con, stage)
    feat_ids, X = models_mod.stage_vectors(con, features, stage, feature_norm)
    return _StageData(exp_ids, gene_ids, tasks_mod.structure_tasks(con, stage, exp_ids),
                      tasks_mod.gene_tasks(con, stage, exp_ids), feat_ids, X,
                      np.searchsorted(exp_ids, feat_ids))


@dataclass
class RunSpec:
    """Everything a run of :func:`fit` needs besides its split: what it reads and how it fits."""

    fsid: int
    stage: str
    data: dict[str, _StageData]
    aligned: dict[str, list[tasks_mod.TaskMatrix]]   # the run's tasks at every stage read
    train_list: list[str]
    holdout: str
    feature_norm: str
    n_folds: int
    tasks: str
    level_list: list[int] | None
    label_mode: str
    seed: int
    split: str
    trainer_params: dict
    device: str
    min_pos: int
    min_neg: int
    layout: sf.Layout | None = None    # structure features: where each structure's columns lie


def parse_stages(stages: str | Sequence[str] | None, default: str) -> list[str]:
    """``'E13.5,E15.5'`` or a list -> the stages in developmental order; None = [default]."""
    if stages is None:
        return [default]
    items = ([x.strip() for x in stages.split(",") if x.strip()] if isinstance(stages, str)
             else [str(x) for x in stages])
    bad = [s for s in items if s not in STAGES]
    if bad or not items:
        raise InvalidInput(f"unknown training stage {bad[0]!r}" if bad
                           else "no training stage given", hint="one of " + ", ".join(STAGES))
    return [s for s in STAGES if s in set(items)]


def _align(tm: tasks_mod.TaskMatrix, names: list[str], groups: np.ndarray
           ) -> tasks_mod.TaskMatrix:
    """``tm`` with the columns ``names`` (a task ``tm`` lacks: no labels)."""
    where = {n: i for i, n in enumerate(tm.names)}
    dst = [j for j, n in enumerate(names) if n in where]
    src = [where[names[j]] for j in dst]
    y = np.zeros((tm.y.shape[0], len(names)), dtype=bool)
    mask = np.zeros_like(y)
    y[:, dst] = tm.y[:, src]
    mask[:, dst] = tm.mask[:, src]
    return tasks_mod.TaskMatrix(tm.kind, names, groups, tm.experiment_ids, y, mask)


def _union_tasks(mats: list[tasks_mod.TaskMatrix], kind: str) -> tuple[list[str], np.ndarray]:
    group_of: dict[str, int] = {}
    for tm in mats:
        group_of.update(zip(tm.names, tm.groups.tolist(), strict=True))
    names = sorted(group_of, key=int) if kind == "structure" else sorted(group_of)
    return names, np.array([group_of[n] for n in names], dtype=np.int64)


def _stack(mats: list[tasks_mod.TaskMatrix]) -> tasks_mod.TaskMatrix:
    m0 = mats[0]
    return tasks_mod.TaskMatrix(m0.kind, m0.names, m0.groups,
                                np.concatenate([m.experiment_ids for m in mats]),
                                np.concatenate([m.y for m in mats]),
                                np.concatenate([m.mask for m in mats]))


def fit(
    db_path: str | os.PathLike,
    features: str,
    stage: str,
    levels: str | Sequence[int] | None = None,
    tasks: str = "structures",
    split: str = "stratified",
    repeats: int = 1,
    seed: int = 0,
    shuffle_labels: bool = False,
    force: bool = False,
    progress: Progress | None = None,
    *,
    train_stages: str | Sequence[str] | None = None,
    holdout: str = "split",
    feature_norm: str = "auto",
    n_folds: int = 5,
    C: float | None = None,
    Cs: Sequence[float] = DEFAULT_CS,
    cv: int = 3,
    select: str = "group",
    device: str = "auto",
    min_train_pos: int = MIN_TRAIN_POS,
    min_train_neg: int = MIN_TRAIN_NEG,
    target: str = "detected",
    model: str | None = None,
    scale_floor: float = 0.0,
) -> list[int]:
    """Fit one L2 logistic regression per task on the feature set ``features``; evaluate at
    ``stage``.

    Makes ``repeats`` runs (one per split repeat) and returns their run ids (reused finished
    runs included). ``C=None`` chooses C by inner CV over ``Cs`` (``select``: 'group' = one C
    per ontology level and one for all gene tasks, 'task', 'all'). ``shuffle_labels`` permutes
    the training labels (a no-signal control; test labels stay true; label_mode 'shuffled').
    ``target`` other than 'detected' (pattern, intensity, density) fits one multi-class
    ``model`` per structure instead (:func:`ishwh.fit.targets.fit_target`).

    ``train_stages`` (default: ``stage``) are the stages whose annotated experiments train the
    models; ``stage`` itself contributes the training side of its split. ``holdout='split'``
    predicts the test side of ``stage``'s split; ``'none'`` trains on every annotated
    experiment of the training stages and predicts ``stage`` out of fold (cross-fitted,
    ``n_folds`` folds by gene) when it is a training stage, else with the full models.
    ``scale_floor`` (global features): the trainer divides each feature by at least this
    fraction of the median feature std (0 = plain standardisation; see
    :class:`~ishwh.fit.trainer.BatchedLogisticRegression`).
    ``feature_norm``: 'pooled' (raw vectors), 'stage' (each stage z-scored on its own) or
    'auto' (:func:`ishwh.fit.models.resolve_feature_norm`: 'stage' when the models train on
    other stages than ``stage`` or are production models, else 'pooled').
    Every run stores its models (``models``) with Platt scaling and max-F1 call thresholds
    fitted on out-of-fold scores of the training experiments.
    """
    if scale_floor and (target != "detected" or sf.is_structure_set(features)):
        raise InvalidInput("the scale floor applies to the binary trainer on global features",
                           hint="leave it at 0 for multi-class targets and atlas.* sets",
                           param="scale_floor")
    if target != "detected" or model is not None:
        from ishwh.fit import targets  # noqa: PLC0415 (targets imports this module)

        targets.check_target(target, model)
        if target != "detected":
            if tasks != "structures" or shuffle_labels:
                raise InvalidInput(f"the {target} target has structure tasks only, with true "
                                   "labels", hint="drop the genes/all tasks and label shuffling")
            return targets.fit_target(
                db_path, features, stage, target, model=model, levels=levels, split=split,
                repeats=repeats, seed=seed, force=force, progress=progress, C=C, Cs=Cs,
                cv=cv, select=select, device=device)
    structure_set = sf.is_structure_set(features)   # one model per structure's own columns
    if structure_set and tasks != "structures":
        raise InvalidInput("structure features train structure tasks only", param="tasks")
    _validate(stage, tasks, split, repeats)
    train_list = parse_stages(train_stages, stage)
    if holdout not in models_mod.HOLDOUTS:
        raise InvalidInput(f"holdout must be 'split' or 'none', not {holdout!r}")
    feature_norm = models_mod.resolve_feature_norm(feature_norm, stage, train_list, holdout)
    if n_folds < 2:
        raise InvalidInput("the number of cross-fitting folds must be at least 2")
    if holdout == "none" and repeats != 1:
        raise InvalidInput("holdout 'none' makes one run: there is no split to repeat")
    resolve_device(device)  # refuse a missing GPU before any split or run is written
    level_list = parse_levels(levels)
    validate_trainer(C, Cs, cv, select)
    if isinstance(scale_floor, bool) or not isinstance(scale_floor, int | float) \
            or not 0 <= scale_floor <= 100:
        raise InvalidInput(f"scale floor must be a number from 0 to 100, got {scale_floor!r}",
                           hint="e.g. 1 (the median feature std); 0 = off",
                           param="scale_floor")
    label_mode = "shuffled" if shuffle_labels else "true"
    trainer_params = {"C": C, "Cs": None if C is not None else [float(c) for c in Cs],
                      "cv": cv, "select": select, "standardize": True, "tol": 1e-10,
                      "max_iter": 100}
    if scale_floor:   # recorded (and fingerprinted) only when used: older runs stay identical
        trainer_params["scale_floor"] = float(scale_floor)
    run_ids: list[int] = []
    bar = or_silent(progress)
    with warehouse.connect(db_path) as con, phase(bar, f"fit {stage}", repeats,
                                                   "runs") as advance:
        clean_unfinished(con)
        t0 = time.perf_counter()
        bar.describe(f"fit {stage}: reading labels and features")
        lay = sf.layout(con, features) if structure_set else None
        fsid = store.feature_set_id(con, features)
        fs_row = con.execute(
            "select dim, created_at, finished_at from feature_sets where feature_set_id = ?",
            [fsid]).fetchall()[0]
        components = {}    # the sets whose vectors the run reads
        for name in (features.split("+") if structure_set else [features]):
            cid = store.feature_set_id(con, name)
            components[name] = con.execute(
                "select feature_set_id, created_at, finished_at from feature_sets "
                "where feature_set_id = ?", [cid]).fetchall()[0]
            for s in dict.fromkeys([stage, *train_list]):
                _check_stage_ready(con, cid, name, s, components[name][2])
        data = {s: _read_stage(con, features, s, feature_norm)
                for s in dict.fromkeys([stage, *train_list])}
        ev = data[stage]
        if ev.exp_ids.size == 0:
            raise NotFound(f"no experiments at stage {stage}", hint="check `ishwh status`")
        for s, d in data.items():
            if d.feat_ids.size == 0:
                raise NotFound(f"feature set {features!r} has no vectors at stage {s}",
                               hint=f"run `ishwh featurize` for {s}")
        n_stage_tasks = ((ev.struct.n_tasks if tasks in ("structures", "all") else 0)
                         + (ev.gene.n_tasks if tasks in ("genes", "all") else 0))
        if holdout == "split" and n_stage_tasks == 0:
            raise NotFound(f"stage {stage} has no labels to evaluate a split on",
                           hint="fit with holdout 'none' to train models for an "
                                "unannotated stage")
        # The run's tasks: every task labelled at a training stage (at the chosen levels).
        aligned: dict[str, list[tasks_mod.TaskMatrix]] = {s: [] for s in data}
        for kind, attr, wanted in (("structure", "struct", ("structures", "all")),
                                   ("gene", "gene", ("genes", "all"))):
            if tasks not in wanted:
                continue
            names, groups = _union_tasks([getattr(data[s], attr) for s in train_list], kind)
            if kind == "structure" and level_list is not None:
                keep = np.isin(groups, level_list)
                names, groups = [n for n, k in zip(names, keep, strict=True) if k], groups[keep]
            for s, d in data.items():
                aligned[s].append(_align(getattr(d, attr), names, groups))
        if sum(tm.n_tasks for tm in aligned[stage]) == 0:
            raise NotFound(
                f"no {tasks} tasks with labels at stage(s) {', '.join(train_list)}"
                + (f" and levels {levels_text(level_list)}" if level_list else ""),
                hint="ingest annotations (structures) or gene_labels (genes) first")
        read_s = time.perf_counter() - t0
        feature_digest = {"feature_set_id": fsid, "created_at": fs_row[1],
                          "finished_at": fs_row[2],
                          "n_vectors": {s: int(d.feat_ids.size) for s, d in data.items()},
                          "dim": int(fs_row[0])}
        if structure_set:
            feature_digest["components"] = {k: list(v) for k, v in components.items()}
            trainer_params = lay.trainer()

        spec = RunSpec(fsid=fsid, stage=stage, data=data, aligned=aligned,
                       train_list=train_list, holdout=holdout, feature_norm=feature_norm,
                       n_folds=n_folds, tasks=tasks, level_list=level_list,
                       label_mode=label_mode, seed=seed, split=split,
                       trainer_params=trainer_params, device=device, min_pos=min_train_pos,
                       min_neg=min_train_neg, layout=lay)
        for r in range(repeats):
            timings = {"read_s": round(read_s, 4)}
            t1 = time.perf_counter()
            if holdout == "split":
                bar.describe(f"fit {stage}: split {split} seed {seed} repeat {r}")
                split_id, subset = get_or_make_split(
                    con, stage, split, seed, r, ev.exp_ids, ev.gene_ids, [ev.struct, ev.gene])
            else:
                split_id, subset = NO_SPLIT, None
            timings["split_s"] = round(time.perf_counter() - t1, 4)
            fp_src = {"fit_version": FIT_VERSION, "features": feature_digest, "stage": stage,
                      "split_id": split_id, "tasks": tasks, "levels": level_list,
                      "label_mode": label_mode, "seed": seed, "trainer": trainer_params,
                      "min_train_pos": min_train_pos, "min_train_neg": min_train_neg,
                      "train_stages": train_list, "holdout": holdout,
                      "feature_norm": feature_norm, "n_folds": n_folds}
            fp = run_store.fingerprint(fp_src)
            old = run_store.finished_runs(con, fp)
            if old and not force:
                run_ids.append(int(old[-1]))
                advance(1)
                continue
            run_id = _one_run(con, bar, spec, split_id=split_id, subset=subset, repeat=r,
                              fp=fp, timings=timings, replace=old)
            run_ids.append(run_id)
            advance(1)
    return run_ids


# --------------------------------------------------------------------------- pure steps


@dataclass
class RowPlan:
    """Which rows of each stage train a run, and which rows of the evaluated stage it predicts."""

    parts: list[tuple[str, np.ndarray]]   # (training stage, rows of its vectors)
    ev_rows: np.ndarray                   # rows of the evaluated stage's vectors to predict
    oof_eval: bool                        # the predictions are out-of-fold training scores
    n_unsplit: int = 0                    # vectors of the stage without a side in the split
    n_no_vector: int = 0                  # split experiments without a vector

    @property
    def n_train(self) -> int:
        return int(sum(rows.size for _, rows in self.parts))

    def oof_slice(self, stage: str) -> slice:
        """Where the evaluated stage's rows sit among the stacked training rows."""
        start = 0
        for s, rows in self.parts:
            if s == stage:
                return slice(start, start + rows.size)
            start += rows.size
        raise ValueError(f"{stage} is not a training stage")


def plan_rows(data: dict[str, _StageData], aligned: dict[str, list[tasks_mod.TaskMatrix]],
              stage: str, train_list: list[str], holdout: str, subset: dict | None) -> RowPlan:
    """Training rows per training stage (the training side of ``stage``'s split, or every
    experiment with a vector and a label among the run's tasks) and the rows to predict."""
    ev = data[stage]
    plan = RowPlan([], np.zeros(0, dtype=np.int64), holdout == "none" and stage in train_list)
    if holdout == "split":
        side = side_of(subset, ev.feat_ids)
        plan.n_unsplit = int((side == "").sum())
        plan.n_no_vector = int(len(subset) - (side != "").sum())
    for s in train_list:
        d = data[s]
        if s == stage and holdout == "split":
            rows = np.flatnonzero(side == "train")
        else:  # every experiment with a vector and a label among the run's tasks
            labelled = np.zeros(d.feat_ids.size, dtype=bool)
            for tm in aligned[s]:
                labelled |= tm.mask[d.row].any(1)
            rows = np.flatnonzero(labelled)
        plan.parts.append((s, rows))
    if holdout == "split":
        plan.ev_rows = np.flatnonzero(side == "test")
    elif plan.oof_eval:
        plan.ev_rows = dict(plan.parts)[stage]
    else:
        plan.ev_rows = np.arange(ev.feat_ids.size)
    return plan


def shuffle_labels_of(mats: list[tasks_mod.TaskMatrix], seed: int, repeat: int
                      ) -> list[tasks_mod.TaskMatrix]:
    """Each task's training labels (with their known/unknown mask) permuted over the training
    experiments independently: no link to the features is left, and tasks do not share one
    permutation (which would correlate their AUCs). Test labels stay true."""
    rng = np.random.default_rng([seed, repeat, 7919])
    out = []
    for m in mats:
        order = np.argsort(rng.random(m.y.shape), axis=0)
        out.append(tasks_mod.TaskMatrix(
            m.kind, m.names, m.groups, m.experiment_ids,
            np.take_along_axis(m.y, order, 0), np.take_along_axis(m.mask, order, 0)))
    return out


def train_global(X_tr, y_tr, m_tr, groups, gene_tr, X_ev, *, trainer_params, device, seed,
                 n_folds, oof_rows: slice | None, timings: dict) -> models_mod.Fitted:
    """Fit every kept task on the whole vector, cross-fit out-of-fold scores by gene,
    calibrate on them, fold the standardisation into raw-feature weights, and score the
    predicted rows (out of fold when ``oof_rows`` says where they are among the training
    rows, else with the folded float64 models themselves)."""
    est = BatchedLogisticRegression(
        C=trainer_params["C"], Cs=trainer_params["Cs"] or DEFAULT_CS,
        cv=trainer_params["cv"], select=trainer_params["select"], device=device,
        random_state=seed, scale_floor=trainer_params.get("scale_floor", 0.0))
    t2 = time.perf_counter()
    est.fit(X_tr, y_tr, m_tr, groups)
    timings["train_s"] = round(time.perf_counter() - t2, 4)
    t3 = time.perf_counter()
    folds = models_mod.gene_folds(gene_tr, y_tr, m_tr, n_folds, seed)
    oof = crossfit_scores(est, y_tr, m_tr, folds)
    platt_a, platt_b, threshold = calibration.calibrate(oof, y_tr, m_tr)
    weights, intercept = folded_weights(est)
    timings["crossfit_s"] = round(time.perf_counter() - t3, 4)
    t3 = time.perf_counter()
    if oof_rows is not None:
        scores = oof[oof_rows]
    else:  # the stored models themselves (float64; the trainer's kernel is float32)
        scores = models_mod.StoredModels.dot(X_ev, weights, intercept)
    timings["predict_s"] = round(time.perf_counter() - t3, 4)
    return models_mod.Fitted(est.C_, weights, intercept, platt_a, platt_b, threshold, scores,
                  str(est.device_))


@dataclass
class RunRows:
    """What a run writes: run_tasks, predictions, gene predictions and the models' keys."""

    tasks: pa.Table
    predictions: list[pa.Table]
    gene_predictions: list[pa.Table]
    model_kind: list[str]
    model_task: list[str]
    model_pos: np.ndarray
    model_neg: np.ndarray


def run_rows(run_id: int, mats_tr, mats_te, kept, skipped, n_pos, n_neg,
             fitted: models_mod.Fitted | None, subset_name: str) -> RunRows:
    """The rows of a run from its task matrices, kept tasks and fitted models (pure)."""
    kinds, names_all, reasons_all, c_all, pos_all, neg_all = [], [], [], [], [], []
    model_kind, model_task, model_pos, model_neg = [], [], [], []
    pred_tables, gene_tables = [], []
    col0 = 0
    for m_tr_i, m_te_i, k, reasons, p, n in zip(mats_tr, mats_te, kept, skipped, n_pos, n_neg,
                                               strict=True):
        c_of = {}
        for pos_in_k, j in enumerate(k.tolist()):
            c_of[j] = float(fitted.c[col0 + pos_in_k])
            model_kind.append(m_tr_i.kind)
            model_task.append(m_tr_i.names[j])
            model_pos.append(int(p[j]))
            model_neg.append(int(n[j]))
        for j, name in enumerate(m_tr_i.names):
            kinds.append(m_tr_i.kind)
            names_all.append(name)
            reasons_all.append(reasons.get(j))
            c_all.append(c_of.get(j))
            pos_all.append(int(p[j]))
            neg_all.append(int(n[j]))
        if k.size:
            sc = fitted.scores[:, col0:col0 + k.size]
            lab = m_te_i.mask[:, k] & np.isfinite(sc)
            r_i, c_i = np.nonzero(lab)
            exp = m_te_i.experiment_ids[r_i]
            truth = m_te_i.y[:, k][r_i, c_i]
            names = np.asarray(m_te_i.names, dtype=object)[k][c_i]
            common = {"run_id": pa.array(np.full(r_i.size, run_id, dtype=np.int32)),
                      "experiment_id": pa.array(exp.astype(np.int64))}
            if m_tr_i.kind == "structure":
                pred_tables.append(pa.table({
                    **common, "structure_id": pa.array(names.astype(np.int64)),
                    "score": pa.array(sc[r_i, c_i].astype(np.float64)),
                    "detected": pa.array(truth),
                    "subset": pa.array([subset_name] * r_i.size, pa.string())}))
            else:
                gene_tables.append(pa.table({
                    **common, "task": pa.array(names.astype(str).tolist()),
                    "score": pa.array(sc[r_i, c_i].astype(np.float64)),
                    "label": pa.array(truth)}))
        col0 += k.size
    return RunRows(
        run_store.task_table(run_id, kinds, names_all, reasons_all, c_all, pos_all, neg_all),
        pred_tables, gene_tables, model_kind, model_task, np.asarray(model_pos),
        np.asarray(model_neg))


# --------------------------------------------------------------------------- one run


def _one_run(con, bar: Progress, spec: RunSpec, *, split_id: int, subset: dict | None,
             repeat: int, fp: str, timings: dict, replace: list[int]) -> int:
    t_start = time.perf_counter()
    stage, data, aligned = spec.stage, spec.data, spec.aligned
    ev = data[stage]
    plan = plan_rows(data, aligned, stage, spec.train_list, spec.holdout, subset)
    n_train = plan.n_train
    if n_train == 0 or (spec.holdout == "split" and plan.ev_rows.size == 0):
        raise InvalidInput(f"split {split_id} leaves no training or no test experiments "
                           f"with vectors of this feature set at {stage}")
    parts = plan.parts
    X_tr = np.concatenate([data[s].X[rows] for s, rows in parts])
    gene_tr = np.concatenate([data[s].gene_ids[data[s].row[rows]] for s, rows in parts])
    mats_tr = [_stack([aligned[s][i].take_rows(data[s].row[rows]) for s, rows in parts])
               for i in range(len(aligned[stage]))]
    mats_te = [tm.take_rows(ev.row[plan.ev_rows]) for tm in aligned[stage]]
    if spec.label_mode == "shuffled":
        mats_tr = shuffle_labels_of(mats_tr, spec.seed, repeat)

    kept, skipped, n_pos, n_neg = [], [], [], []
    for m in mats_tr:
        k, reasons, p, n = tasks_mod.trainable(m, np.arange(m.y.shape[0]), spec.min_pos,
                                               spec.min_neg)
        if spec.layout is not None:   # structures the layout cannot score are skipped
            k = spec.layout.skip(m.names, k, reasons)
        kept.append(k)
        skipped.append(reasons)
        n_pos.append(p)
        n_neg.append(n)
    n_fit = sum(k.size for k in kept)

    run_versions = run_store.versions(spec.device)
    params = {"split_method": spec.split if spec.holdout == "split" else None,
              "seed": spec.seed, "repeat_index": repeat, "levels": spec.level_list,
              "trainer": spec.trainer_params, "min_train_pos": spec.min_pos,
              "min_train_neg": spec.min_neg, "train_stages": spec.train_list,
              "holdout": spec.holdout, "feature_norm": spec.feature_norm,
              "n_folds": spec.n_folds, "n_train": n_train, "n_test": int(plan.ev_rows.size),
              "n_unsplit_experiments": plan.n_unsplit,
              "n_split_experiments_without_vector": plan.n_no_vector,
              "n_tasks_fitted": int(n_fit),
              "n_tasks_skipped": int(sum(len(s) for s in skipped))}
    run_id = run_store.start_run(
        con, feature_set_id=spec.fsid, stage=stage, split_id=split_id, tasks=spec.tasks,
        levels=levels_text(spec.level_list), label_mode=spec.label_mode, params=params, fp=fp,
        run_versions=run_versions)

    fitted = None
    if n_fit:
        bar.describe(f"fit {stage}: fitting {n_fit} tasks on {n_train} experiments "
                     f"(run {run_id})")
        y_tr = np.concatenate([m.y[:, k] for m, k in zip(mats_tr, kept, strict=True)], axis=1)
        m_tr = np.concatenate([m.mask[:, k] for m, k in zip(mats_tr, kept, strict=True)], axis=1)
        groups = np.concatenate([m.groups[k] if m.kind == "structure" else np.full(k.size, -1)
                                 for m, k in zip(mats_tr, kept, strict=True)])
        oof_rows = plan.oof_slice(stage) if plan.oof_eval else None
        if spec.layout is None:
            fitted = train_global(
                X_tr, y_tr, m_tr, groups, gene_tr, ev.X[plan.ev_rows],
                trainer_params=spec.trainer_params, device=spec.device, seed=spec.seed,
                n_folds=spec.n_folds, oof_rows=oof_rows, timings=timings)
        else:
            names = [m.names[j] for m, k in zip(mats_tr, kept, strict=True) for j in k]
            fitted = sf.train_structures(
                spec.layout, names, X_tr, y_tr, m_tr, groups, gene_tr, ev.X[plan.ev_rows],
                seed=spec.seed, n_folds=spec.n_folds, oof_rows=oof_rows, timings=timings)
        run_versions["device"] = fitted.device

    bar.describe(f"fit {stage}: writing run {run_id}")
    t4 = time.perf_counter()
    rows = run_rows(run_id, mats_tr, mats_te, kept, skipped, n_pos, n_neg, fitted,
                    "oof" if plan.oof_eval else "test")

    def write_models(con) -> None:
        models_mod.write_run_training(con, run_id, spec.train_list, spec.holdout,
                                      spec.feature_norm, spec.n_folds, n_train)
        if fitted is not None:
            models_mod.write_models(con, run_id, rows.model_kind, rows.model_task, fitted.c,
                                    fitted.weights, fitted.intercept, rows.model_pos,
                                    rows.model_neg, fitted.platt_a, fitted.platt_b,
                                    fitted.threshold, fitted.local_start, fitted.local_width)

    run_store.finish_run(
        con, run_id, replace=replace,
        tables=[("run_tasks", rows.tasks), *[("predictions", t) for t in rows.predictions],
                *[("gene_predictions", t) for t in rows.gene_predictions]],
        extra=write_models, timings=timings, run_versions=run_versions, t_write=t4,
        t_start=t_start, t_before=timings["read_s"] + timings["split_s"])
    return run_id


def summary(db_path: str | os.PathLike, run_ids: Sequence[int],
            target: str = "detected") -> list[dict]:
    """The level rollup of ``run_ids``: one dict per run x level (``level_auc``; for a
    multi-class ``target`` ``target_level_metrics``: macro AUC, kappa, ...)."""
    from ishwh.query import query_text

    query = "fit_summary" if target == "detected" else "fit_target_summary"
    with warehouse.connect(db_path, read_only=True) as con:
        tbl = con.sql(query_text(query),
                      params={"run_ids": [int(r) for r in run_ids]}).to_arrow_table()
    return tbl.to_pylist()
