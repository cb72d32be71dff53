"""``fit``: warehouse -> tasks, split, trainer -> runs, run_tasks, predictions.

One run = one feature set x stage x split (x label mode). The flow:

1. runs left ``running`` by a killed fit are deleted (this process holds the warehouse's write
   lock, so any ``running`` row is stale);
2. labels and features of the stage are read; the split ``(stage, method, seed, repeat)`` is
   reused or made and stored (``split_defs``, ``splits``) — the same split for every feature
   set, balanced over every structure and gene task of the stage, whatever levels a run asks;
3. a ``runs`` row is inserted as ``running``; all tasks are fitted at once by
   :class:`~ishwh.fit.trainer.BatchedLogisticRegression`;
4. ``run_tasks``, ``predictions``, ``gene_predictions`` and ``status = 'finished'`` are written
   in ONE transaction, so a killed fit never shows as finished nor leaves half its rows.

An identical fit (same fingerprint: feature set and its contents, stage, split, tasks, levels,
label mode, trainer parameters, code version) reuses the finished run unless ``force``, which
replaces it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Sequence
from importlib import metadata

import duckdb
import numpy as np
import pyarrow as pa

from ishwh import store, warehouse
from ishwh.device import resolve_device
from ishwh.errors import InvalidInput, NotFound
from ishwh.fit import splits as splits_mod
from ishwh.fit import tasks as tasks_mod
from ishwh.fit.trainer import DEFAULT_CS, BatchedLogisticRegression
from ishwh.progress import Progress, or_silent, phase
from ishwh.vocab import TASK_KINDS, check_stage

FIT_VERSION = 1          # bump when a change alters what an identical fit would produce
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


# --------------------------------------------------------------------------- helpers


def _versions(device: str) -> dict:
    out = {"fit_version": FIT_VERSION, "python": platform.python_version(), "device": device}
    for pkg in ("ishwh", "numpy", "torch", "scikit-learn", "duckdb"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _delete_runs(con: duckdb.DuckDBPyConnection, run_ids: list[int]) -> None:
    if not run_ids:
        return
    for table in ("predictions", "gene_predictions", "run_tasks", "runs"):
        con.execute(f"delete from {table} where list_contains($ids, run_id)",
                    {"ids": run_ids}).fetchall()


def clean_unfinished(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Delete runs a killed fit left ``running`` (call only while holding the write lock)."""
    ids = [r[0] for r in con.execute(
        "select run_id from runs where status = 'running'").fetchall()]
    if ids:
        with warehouse.transaction(con):
            _delete_runs(con, ids)
    return ids


def get_or_make_split(
    con: duckdb.DuckDBPyConnection,
    stage: str,
    method: str,
    seed: int,
    repeat_index: int,
    experiment_ids: np.ndarray,
    gene_ids: np.ndarray,
    label_sets: list[tasks_mod.TaskMatrix],
) -> tuple[int, dict[int, str]]:
    """The stored split of ``(stage, method, seed, repeat)``, made and stored if new.

    Returns ``(split_id, {experiment_id: 'train' | 'test'})``.
    """
    rows = con.execute(
        "select split_id from split_defs where stage = ? and method = ? and seed = ? "
        "and repeat_index = ?", [stage, method, seed, repeat_index]).fetchall()
    if rows:
        split_id = int(rows[0][0])
    else:
        units, unit_of_row = np.unique(gene_ids, return_inverse=True)
        pos, neg = tasks_mod.unit_counts(label_sets, unit_of_row, len(units))
        res = splits_mod.make_split(method, pos, neg, seed=[seed, repeat_index])
        test_rows = res.test[unit_of_row]
        params = {k: v for k, v in res.params.items() if k != "seed"}
        params.update({"unit": "gene", "n_units": int(len(units)),
                       "n_experiments": int(len(experiment_ids)), "n_tasks": int(pos.shape[1]),
                       "rng_seed": [seed, repeat_index]})
        with warehouse.transaction(con):
            split_id = int(con.execute(
                "insert into split_defs (stage, method, seed, repeat_index, params) "
                "values (?, ?, ?, ?, ?) returning split_id",
                [stage, method, seed, repeat_index, _json(params)]).fetchall()[0][0])
            store.insert_arrow(con, "splits", pa.table({
                "split_id": pa.array(np.full(len(experiment_ids), split_id, dtype=np.int32)),
                "experiment_id": pa.array(experiment_ids),
                "subset": pa.array(np.where(test_rows, "test", "train").tolist()),
            }))
    got = con.execute("select experiment_id, subset from splits where split_id = ?",
                      [split_id]).fetchall()
    return split_id, {int(e): s for e, s in got}


def _json(obj) -> str:
    """JSON text; numpy scalars and arrays become plain numbers and lists."""
    def default(o):
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        return str(o)
    return json.dumps(obj, default=default)


def _fingerprint(d: dict) -> str:
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:32]


# --------------------------------------------------------------------------- fit


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
    C: float | None = None,
    Cs: Sequence[float] = DEFAULT_CS,
    cv: int = 3,
    select: str = "group",
    device: str = "auto",
    min_train_pos: int = MIN_TRAIN_POS,
    min_train_neg: int = MIN_TRAIN_NEG,
) -> list[int]:
    """Fit one L2 logistic regression per task of ``stage`` on the feature set ``features``.

    Makes ``repeats`` runs (one per split repeat) and returns their run ids (reused finished
    runs included). ``C=None`` chooses C by inner CV over ``Cs`` (``select``: 'group' = one C
    per ontology level and one for all gene tasks, 'task', 'all'). ``shuffle_labels`` permutes
    the training labels (a no-signal control; test labels stay true; label_mode 'shuffled').
    """
    if features.startswith("atlas."):  # structure features: one model per structure's columns
        from ishwh.fit.structure_features import fit_structure_features  # noqa: PLC0415

        return fit_structure_features(db_path, features, stage, levels, split, repeats, seed,
                                      force, shuffle_labels, tasks=tasks)
    _validate(stage, tasks, split, repeats)
    resolve_device(device)  # refuse a missing GPU before any split or run is written
    level_list = parse_levels(levels)
    if select not in ("group", "task", "all"):
        raise InvalidInput(f"select must be 'group', 'task' or 'all', not {select!r}")
    label_mode = "shuffled" if shuffle_labels else "true"
    trainer_params = {"C": C, "Cs": None if C is not None else [float(c) for c in Cs],
                      "cv": cv, "select": select, "standardize": True, "tol": 1e-10,
                      "max_iter": 100}
    run_ids: list[int] = []
    bar = or_silent(progress)
    with warehouse.connect(db_path) as con, phase(bar, f"fit {stage}", repeats,
                                                   "runs") as advance:
        clean_unfinished(con)
        t0 = time.perf_counter()
        bar.describe(f"fit {stage}: reading labels and features")
        fsid = store.feature_set_id(con, features)
        fs_row = con.execute(
            "select dim, created_at, finished_at from feature_sets where feature_set_id = ?",
            [fsid]).fetchall()[0]
        if fs_row[2] is None:
            raise InvalidInput(f"feature set {features!r} is not finished yet",
                               hint="let `ishwh featurize` complete (it resumes) and fit again")
        exp_ids, gene_ids = tasks_mod.stage_experiments(con, stage)
        if exp_ids.size == 0:
            raise NotFound(f"no experiments at stage {stage}", hint="check `ishwh status`")
        all_struct = tasks_mod.structure_tasks(con, stage, exp_ids)
        all_gene = tasks_mod.gene_tasks(con, stage, exp_ids)
        feat_ids, X = store.read_experiment_features(con, features, stage)
        if feat_ids.size == 0:
            raise NotFound(f"feature set {features!r} has no vectors at stage {stage}",
                           hint=f"run `ishwh featurize` for {stage}")
        # Which task matrices this run trains.
        struct = all_struct
        if level_list is not None:
            struct = all_struct.take_tasks(np.flatnonzero(np.isin(all_struct.groups,
                                                                  level_list)))
        chosen = []
        if tasks in ("structures", "all"):
            chosen.append(struct)
        if tasks in ("genes", "all"):
            chosen.append(all_gene)
        if sum(tm.n_tasks for tm in chosen) == 0:
            raise NotFound(
                f"no {tasks} tasks with labels at stage {stage}"
                + (f" and levels {levels_text(level_list)}" if level_list else ""),
                hint="ingest annotations (structures) or gene_labels (genes) first")
        read_s = time.perf_counter() - t0
        feature_digest = {"feature_set_id": fsid, "created_at": fs_row[1],
                          "finished_at": fs_row[2], "n_vectors": int(feat_ids.size),
                          "dim": int(fs_row[0])}

        for r in range(repeats):
            timings = {"read_s": round(read_s, 4)}
            t1 = time.perf_counter()
            bar.describe(f"fit {stage}: split {split} seed {seed} repeat {r}")
            split_id, subset = get_or_make_split(
                con, stage, split, seed, r, exp_ids, gene_ids, [all_struct, all_gene])
            timings["split_s"] = round(time.perf_counter() - t1, 4)
            fp_src = {"fit_version": FIT_VERSION, "features": feature_digest, "stage": stage,
                      "split_id": split_id, "tasks": tasks, "levels": level_list,
                      "label_mode": label_mode, "seed": seed, "trainer": trainer_params,
                      "min_train_pos": min_train_pos, "min_train_neg": min_train_neg}
            fp = _fingerprint(fp_src)
            old = [x[0] for x in con.execute(
                "select run_id from runs where fingerprint = ? and status = 'finished' "
                "order by run_id", [fp]).fetchall()]
            if old and not force:
                run_ids.append(int(old[-1]))
                advance(1)
                continue
            run_id = _one_run(
                con, bar, fsid=fsid, stage=stage, split_id=split_id, subset=subset,
                feat_ids=feat_ids, X=X, exp_ids=exp_ids, chosen=chosen, tasks=tasks,
                level_list=level_list, label_mode=label_mode, seed=seed, repeat=r,
                split=split, fp=fp, fp_src=fp_src, trainer_params=trainer_params,
                device=device, min_pos=min_train_pos, min_neg=min_train_neg,
                timings=timings, replace=old)
            run_ids.append(run_id)
            advance(1)
    return run_ids


def _one_run(con, bar: Progress, *, fsid, stage, split_id, subset, feat_ids, X, exp_ids, chosen,
             tasks,
             level_list, label_mode, seed, repeat, split, fp, fp_src, trainer_params, device,
             min_pos, min_neg, timings, replace) -> int:
    t_start = time.perf_counter()
    # Rows: experiments with a vector and a side in the split.
    side = np.array([subset.get(int(e), "") for e in feat_ids])
    tr_rows_x = np.flatnonzero(side == "train")
    te_rows_x = np.flatnonzero(side == "test")
    stage_row = np.searchsorted(exp_ids, feat_ids)
    n_unsplit = int((side == "").sum())
    n_no_vector = int(len(subset) - (side != "").sum())
    if tr_rows_x.size == 0 or te_rows_x.size == 0:
        raise InvalidInput(f"split {split_id} leaves no training or no test experiments "
                           f"with vectors of this feature set at {stage}")
    mats_tr = [tm.take_rows(stage_row[tr_rows_x]) for tm in chosen]
    mats_te = [tm.take_rows(stage_row[te_rows_x]) for tm in chosen]
    if label_mode == "shuffled":
        # Each task's training labels (with their known/unknown mask) are permuted over the
        # training experiments independently: no link to the features is left, and tasks do
        # not share one permutation (which would correlate their AUCs). Test labels stay true.
        rng = np.random.default_rng([seed, repeat, 7919])
        shuffled = []
        for m in mats_tr:
            order = np.argsort(rng.random(m.y.shape), axis=0)
            shuffled.append(tasks_mod.TaskMatrix(
                m.kind, m.names, m.groups, m.experiment_ids,
                np.take_along_axis(m.y, order, 0), np.take_along_axis(m.mask, order, 0)))
        mats_tr = shuffled

    kept, skipped, n_pos, n_neg = [], [], [], []
    for m in mats_tr:
        k, reasons, p, n = tasks_mod.trainable(m, np.arange(m.y.shape[0]), min_pos, min_neg)
        kept.append(k)
        skipped.append(reasons)
        n_pos.append(p)
        n_neg.append(n)
    n_fit = sum(k.size for k in kept)

    versions = _versions(device)
    params = {"split_method": split, "seed": seed, "repeat_index": repeat,
              "levels": level_list, "trainer": trainer_params, "min_train_pos": min_pos,
              "min_train_neg": min_neg, "n_train": int(tr_rows_x.size),
              "n_test": int(te_rows_x.size), "n_unsplit_experiments": n_unsplit,
              "n_split_experiments_without_vector": n_no_vector,
              "n_tasks_fitted": int(n_fit),
              "n_tasks_skipped": int(sum(len(s) for s in skipped))}
    run_id = int(con.execute(
        "insert into runs (feature_set_id, stage, split_id, tasks, levels, label_mode, params, "
        "fingerprint, status, versions) values (?, ?, ?, ?, ?, ?, ?, ?, 'running', ?) "
        "returning run_id",
        [fsid, stage, split_id, tasks, levels_text(level_list), label_mode, _json(params),
         fp, _json(versions)]).fetchall()[0][0])

    scores = None
    c_chosen = None
    if n_fit:
        bar.describe(f"fit {stage}: fitting {n_fit} tasks on {tr_rows_x.size} experiments "
                 f"(run {run_id})")
        y_tr = np.concatenate([m.y[:, k] for m, k in zip(mats_tr, kept, strict=True)], axis=1)
        m_tr = np.concatenate([m.mask[:, k] for m, k in zip(mats_tr, kept, strict=True)], axis=1)
        groups = np.concatenate([m.groups[k] if m.kind == "structure" else np.full(k.size, -1)
                                 for m, k in zip(mats_tr, kept, strict=True)])
        est = BatchedLogisticRegression(
            C=trainer_params["C"], Cs=trainer_params["Cs"] or DEFAULT_CS,
            cv=trainer_params["cv"], select=trainer_params["select"], device=device,
            random_state=seed)
        t2 = time.perf_counter()
        est.fit(X[tr_rows_x], y_tr, m_tr, groups)
        timings["train_s"] = round(time.perf_counter() - t2, 4)
        t3 = time.perf_counter()
        scores = est.decision_function(X[te_rows_x])
        timings["predict_s"] = round(time.perf_counter() - t3, 4)
        c_chosen = est.C_
        versions["device"] = str(est.device_)

    bar.describe(f"fit {stage}: writing run {run_id}")
    t4 = time.perf_counter()
    task_rows: dict[str, list] = {k: [] for k in (
        "run_id", "task_kind", "task", "status", "reason", "c", "n_train_pos", "n_train_neg")}
    pred_tables, gene_tables = [], []
    col0 = 0
    for m_tr_i, m_te_i, k, reasons, p, n in zip(mats_tr, mats_te, kept, skipped, n_pos, n_neg,
                                               strict=True):
        c_of = {}
        for pos_in_k, j in enumerate(k.tolist()):
            c_of[j] = float(c_chosen[col0 + pos_in_k])
        for j, name in enumerate(m_tr_i.names):
            task_rows["run_id"].append(run_id)
            task_rows["task_kind"].append(m_tr_i.kind)
            task_rows["task"].append(name)
            task_rows["status"].append("skipped" if j in reasons else "fitted")
            task_rows["reason"].append(reasons.get(j))
            task_rows["c"].append(c_of.get(j))
            task_rows["n_train_pos"].append(int(p[j]))
            task_rows["n_train_neg"].append(int(n[j]))
        if k.size:
            sc = scores[:, col0:col0 + k.size]
            lab = m_te_i.mask[:, k]
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
                    "detected": pa.array(truth)}))
            else:
                gene_tables.append(pa.table({
                    **common, "task": pa.array(names.astype(str).tolist()),
                    "score": pa.array(sc[r_i, c_i].astype(np.float64)),
                    "label": pa.array(truth)}))
        col0 += k.size
    task_tbl = pa.table({
        "run_id": pa.array(task_rows["run_id"], pa.int32()),
        "task_kind": pa.array(task_rows["task_kind"], pa.string()),
        "task": pa.array(task_rows["task"], pa.string()),
        "status": pa.array(task_rows["status"], pa.string()),
        "reason": pa.array(task_rows["reason"], pa.string()),
        "c": pa.array(task_rows["c"], pa.float64()),
        "n_train_pos": pa.array(task_rows["n_train_pos"], pa.int32()),
        "n_train_neg": pa.array(task_rows["n_train_neg"], pa.int32()),
    })
    with warehouse.transaction(con):
        _delete_runs(con, [int(x) for x in replace])   # --force: the new run replaces the old
        store.insert_arrow(con, "run_tasks", task_tbl)
        for t in pred_tables:
            store.insert_arrow(con, "predictions", t)
        for t in gene_tables:
            store.insert_arrow(con, "gene_predictions", t)
        timings["write_s"] = round(time.perf_counter() - t4, 4)
        timings["total_s"] = round(time.perf_counter() - t_start + timings["read_s"]
                                   + timings["split_s"], 4)
        con.execute(
            "update runs set status = 'finished', finished_at = current_timestamp, "
            "timings = ?, versions = ? where run_id = ?",
            [_json(timings), _json(versions), run_id]).fetchall()
    return run_id


def summary(db_path: str | os.PathLike, run_ids: Sequence[int]) -> list[dict]:
    """The level rollup (``level_auc``) of ``run_ids``: one dict per run x level."""
    from ishwh.query import query_text

    with warehouse.connect(db_path, read_only=True) as con:
        tbl = con.sql(query_text("fit_summary"),
                      params={"run_ids": [int(r) for r in run_ids]}).to_arrow_table()
    return tbl.to_pylist()
