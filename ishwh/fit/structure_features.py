"""Fitting structure features: each structure's classifier sees only its own statistics.

An atlas feature set (``atlas.<what>``) holds K numbers per structure (layout in
``feature_set_structures``). The model of structure s is an L2 logistic regression on its
own K columns, optionally joined by the first ``global_pcs`` principal components of a
global feature set (``atlas.stain+<global set>``: the components are fitted on the training
experiments). All tasks are fitted at once with batched Newton steps (numpy ``matmul`` over a
(tasks, rows, K) stack), C chosen per ontology level by inner 3-fold CV like the global
trainer. Structures never seen on a registered section are not scored: they are written to
``run_tasks`` as skipped, with that reason.

Runs, splits, run_tasks and predictions are the same tables as for global features, so every
view (structure_auc, level_auc) and the report read them unchanged.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pyarrow as pa

from ishwh import store, warehouse
from ishwh.errors import InvalidInput, NotFound
from ishwh.fit import runner as rn
from ishwh.fit import tasks as tasks_mod
from ishwh.fit.trainer import auc_columns
from ishwh.progress import Progress, or_silent

FIT_VERSION = 1
CS = (0.01, 0.1, 1.0, 10.0)
GLOBAL_PCS = 16


def newton_logistic(x: np.ndarray, y: np.ndarray, w_rows: np.ndarray, c: float,
                    iters: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Batched L2 logistic regression. ``x`` (T, n, d), ``y`` (n, T) 0/1, ``w_rows`` (n, T)
    row weights (0 = unknown label). Returns ``(coef (T, d), intercept (T,))``; the penalty
    is ||coef||^2 / (2 C), the intercept is not penalised."""
    t, n, d = x.shape
    xa = np.concatenate([x, np.ones((t, n, 1), x.dtype)], axis=2)       # (T, n, d+1)
    beta = np.zeros((t, d + 1))
    yt, wt = y.T.astype(np.float64), w_rows.T.astype(np.float64)       # (T, n)
    reg = np.full(d + 1, 1.0 / c)
    reg[-1] = 1e-8
    for _ in range(iters):
        z = np.einsum("tnd,td->tn", xa, beta)
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))
        g = np.einsum("tnd,tn->td", xa, wt * (p - yt)) + reg * beta
        h = np.matmul(xa.transpose(0, 2, 1) * (wt * p * (1 - p))[:, None, :], xa)
        h += np.eye(d + 1)[None] * reg[None, :, None]
        step = np.linalg.solve(h, g[..., None])[..., 0]
        beta -= step
        if np.abs(step).max() < 1e-8:
            break
    return beta[:, :d], beta[:, d]


def _stack(x: np.ndarray, slots: np.ndarray, k: int, extra: np.ndarray | None) -> np.ndarray:
    """(n, S*K) + slots (T,) -> (T, n, K [+ extra]) of each task's own columns."""
    n = x.shape[0]
    per = x.reshape(n, -1, k)[:, slots, :].transpose(1, 0, 2)           # (T, n, K)
    if extra is not None:
        per = np.concatenate([per, np.broadcast_to(extra, (per.shape[0],) + extra.shape)],
                             axis=2)
    return np.ascontiguousarray(per, dtype=np.float64)


def _standardize(tr: np.ndarray, te: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = tr.mean(axis=1, keepdims=True)
    sd = tr.std(axis=1, keepdims=True)
    sd[sd < 1e-8] = 1.0
    return (tr - mu) / sd, (te - mu) / sd


def fit_predict(x_tr: np.ndarray, y_tr: np.ndarray, m_tr: np.ndarray, x_te: np.ndarray,
                groups: np.ndarray, seed: int = 0, cs=CS, cv: int = 3
                ) -> tuple[np.ndarray, np.ndarray]:
    """Choose C per group by inner CV, refit on all training rows, score the test rows.

    ``x_tr`` (T, n, d), ``x_te`` (T, m, d). Returns ``(scores (m, T), C per task (T,))``."""
    rng = np.random.default_rng(seed)
    n = x_tr.shape[1]
    fold = rng.permutation(n) % cv
    auc = np.full((len(cs), x_tr.shape[0]), np.nan)
    for ci, c in enumerate(cs):
        fold_auc = []
        for f in range(cv):
            a, b = fold != f, fold == f
            xa, xb = _standardize(x_tr[:, a], x_tr[:, b])
            coef, icpt = newton_logistic(xa, y_tr[a], m_tr[a], c)
            s = np.einsum("tnd,td->nt", xb, coef) + icpt
            fold_auc.append(auc_columns(s, y_tr[b], m_tr[b]))
        with np.errstate(all="ignore"):
            auc[ci] = np.nanmean(np.stack(fold_auc), axis=0)
    chosen = np.empty(x_tr.shape[0])
    for g in np.unique(groups):
        cols = groups == g
        with np.errstate(all="ignore"):
            mean = np.nanmean(np.where(np.isnan(auc[:, cols]), 0.5, auc[:, cols]), axis=1)
        chosen[cols] = cs[int(np.argmax(mean))]
    xa, xb = _standardize(x_tr, x_te)
    scores = np.zeros((x_te.shape[1], x_tr.shape[0]))
    for c in np.unique(chosen):
        cols = np.flatnonzero(chosen == c)
        coef, icpt = newton_logistic(xa[cols], y_tr[:, cols], m_tr[:, cols], float(c))
        scores[:, cols] = np.einsum("tnd,td->nt", xb[cols], coef) + icpt
    return scores, chosen


def _pcs(x_tr: np.ndarray, x_te: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    mu = x_tr.mean(0)
    sd = x_tr.std(0)
    sd[sd < 1e-8] = 1.0
    a, b = (x_tr - mu) / sd, (x_te - mu) / sd
    _, _, vt = np.linalg.svd(a, full_matrices=False)
    v = vt[:k].T
    return a @ v, b @ v


def _combined_set(con, name: str, parts: list[str], global_name: str, atlas_dim: int) -> int:
    gdim = 0
    if global_name:
        gid = store.feature_set_id(con, global_name)
        gdim = min(GLOBAL_PCS, int(con.execute(
            "select dim from feature_sets where feature_set_id = ?", [gid]).fetchall()[0][0]))
    rows = con.execute("select feature_set_id from feature_sets where name = ?",
                       [name]).fetchall()
    if rows:
        return int(rows[0][0])
    params = {"combine": [*parts, *([global_name] if global_name else [])],
              "global_pcs": GLOBAL_PCS if global_name else 0,
              "note": "no vectors of its own: fit joins the sets"}
    with warehouse.transaction(con):
        con.execute("insert into feature_sets (name, extractor, dim, params, finished_at) "
                    "values (?, 'atlas', ?, ?, now())", [name, atlas_dim + gdim,
                                                         json.dumps(params)])
    return store.feature_set_id(con, name)


def _atlas_sets(con, parts: list[str], stage: str):
    """Finished atlas sets joined per structure: ``(experiment ids, x (n, S*K), K, slot_of,
    seen_of, dim, stamps)``; a structure counts as seen when any set saw it."""
    feat_ids, blocks, seen_of, stamps, slot_of, dim = None, [], {}, [], None, 0
    for name in parts:
        fsid = store.feature_set_id(con, name)
        d, finished = con.execute("select dim, finished_at from feature_sets "
                                  "where feature_set_id = ?", [fsid]).fetchall()[0]
        if finished is None:
            raise InvalidInput(f"feature set {name!r} is not finished yet",
                               hint="let `ishwh featurize --extractor atlas` complete")
        lay = con.execute("select structure_id, slot, n_sections_seen from "
                          "feature_set_structures where feature_set_id = ? order by slot",
                          [fsid]).fetchall()
        slots = {int(s_): int(i) for s_, i, _ in lay}
        if slot_of is not None and slots != slot_of:
            raise InvalidInput(f"feature set {name!r} lays out other structures than "
                               f"{parts[0]!r}", hint="featurize both on the same ontology")
        slot_of = slots
        for s_, _, n in lay:
            seen_of[int(s_)] = max(seen_of.get(int(s_), 0), int(n))
        ids, x = store.read_experiment_features(con, name, stage)
        if ids.size == 0:
            raise NotFound(f"feature set {name!r} has no vectors at stage {stage}",
                           hint=f"run `ishwh featurize --extractor atlas --stage {stage}`")
        if feat_ids is not None:
            common = np.intersect1d(feat_ids, ids)
            blocks = [b[np.searchsorted(feat_ids, common)] for b in blocks]
            x, ids = x[np.searchsorted(ids, common)], common
        feat_ids = ids
        blocks.append(x.reshape(x.shape[0], len(lay), -1))
        dim += int(d)
        stamps.append(str(finished))
    x = np.concatenate(blocks, axis=2)
    return feat_ids, x.reshape(x.shape[0], -1), x.shape[2], slot_of, seen_of, dim, stamps


def fit_structure_features(
    db_path: str | os.PathLike, features: str, stage: str, levels=None, split: str = "stratified",
    repeats: int = 1, seed: int = 0, force: bool = False, shuffle_labels: bool = False,
    progress: Progress | None = None, tasks: str = "structures",
) -> list[int]:
    """``fit`` for ``atlas.<what>`` or ``atlas.<what>+<global set>``; returns run ids."""
    progress = or_silent(progress)
    rn._validate(stage, tasks, split, repeats)
    if tasks != "structures":
        raise InvalidInput("structure features train structure tasks only (--tasks structures)")
    level_list = rn.parse_levels(levels)
    parts = features.split("+")
    atlas_parts = [p for p in parts if p.startswith("atlas.")]
    global_parts = [p for p in parts if not p.startswith("atlas.")]
    if len(global_parts) > 1:
        raise InvalidInput(f"structure features join at most one global set, got "
                           f"{', '.join(global_parts)}", param="features")
    global_name = global_parts[0] if global_parts else ""
    run_ids = []
    with warehouse.connect(db_path) as con:
        rn.clean_unfinished(con)
        exp_ids, gene_ids = tasks_mod.stage_experiments(con, stage)
        if exp_ids.size == 0:
            raise NotFound(f"no experiments at stage {stage}", hint="check `ishwh status`")
        feat_ids, x, k, slot_of, seen_of, atlas_dim, stamps = _atlas_sets(con, atlas_parts,
                                                                           stage)
        fsid = (store.feature_set_id(con, features) if features == atlas_parts[0] else
                _combined_set(con, features, atlas_parts, global_name, atlas_dim))
        all_struct = tasks_mod.structure_tasks(con, stage, exp_ids)
        struct = all_struct if level_list is None else all_struct.take_tasks(
            np.flatnonzero(np.isin(all_struct.groups, level_list)))
        if struct.n_tasks == 0:
            raise NotFound(f"no structure tasks with labels at stage {stage}")
        xg = None
        if global_name:
            gids, xg_all = store.read_experiment_features(con, global_name, stage)
            common = np.intersect1d(feat_ids, gids)
            x = x[np.searchsorted(feat_ids, common)]
            xg = xg_all[np.searchsorted(gids, common)]
            feat_ids = common
        for r in range(repeats):
            split_id, subset = rn.get_or_make_split(con, stage, split, seed, r, exp_ids,
                                                    gene_ids, [all_struct])
            trainer = {"Cs": list(CS), "cv": 3, "select": "group", "standardize": True,
                       "model": "newton per structure on its own columns",
                       "global_pcs": GLOBAL_PCS if global_name else 0}
            fp_src = {"fit_version": FIT_VERSION, "kind": "structure_features",
                      "features": [*atlas_parts, global_name, *stamps, int(feat_ids.size)],
                      "stage": stage, "split_id": split_id, "levels": level_list,
                      "shuffled": shuffle_labels, "seed": seed, "trainer": trainer}
            fp = rn._fingerprint(fp_src)
            old = [x_[0] for x_ in con.execute(
                "select run_id from runs where fingerprint = ? and status = 'finished' "
                "order by run_id", [fp]).fetchall()]
            if old and not force:
                run_ids.append(int(old[-1]))
                continue
            run_ids.append(_one_run(con, progress, fsid, stage, split_id, subset, feat_ids, x,
                                    xg, k, exp_ids, struct, slot_of, seen_of, level_list,
                                    shuffle_labels, seed, r, split, fp, trainer, old))
    return run_ids


def _one_run(con, progress, fsid, stage, split_id, subset, feat_ids, x, xg, k, exp_ids,
             struct, slot_of, seen_of, level_list, shuffled, seed, repeat, split, fp, trainer,
             replace) -> int:
    t0 = time.perf_counter()
    side = np.array([subset.get(int(e), "") for e in feat_ids])
    tr, te = np.flatnonzero(side == "train"), np.flatnonzero(side == "test")
    if tr.size == 0 or te.size == 0:
        raise InvalidInput(f"split {split_id} leaves no training or no test experiments")
    rows = np.searchsorted(exp_ids, feat_ids)
    m_tr, m_te = struct.take_rows(rows[tr]), struct.take_rows(rows[te])
    if shuffled:
        rng = np.random.default_rng([seed, repeat, 7919])
        order = np.argsort(rng.random(m_tr.y.shape), axis=0)
        m_tr = tasks_mod.TaskMatrix(m_tr.kind, m_tr.names, m_tr.groups, m_tr.experiment_ids,
                                    np.take_along_axis(m_tr.y, order, 0),
                                    np.take_along_axis(m_tr.mask, order, 0))
    kept, reasons, n_pos, n_neg = tasks_mod.trainable(m_tr, np.arange(tr.size),
                                                      rn.MIN_TRAIN_POS, rn.MIN_TRAIN_NEG)
    for j, name in enumerate(struct.names):
        sid = int(name)
        if sid not in slot_of:
            reasons.setdefault(j, "not in the structure feature layout")
        elif seen_of.get(sid, 0) == 0:
            reasons[j] = "never seen on a registered section (not scored)"
    kept = np.array([j for j in kept.tolist() if j not in reasons], dtype=np.int64)
    params = {"split_method": split, "seed": seed, "repeat_index": repeat,
              "levels": level_list, "trainer": trainer, "n_train": int(tr.size),
              "n_test": int(te.size), "n_tasks_fitted": int(kept.size),
              "n_tasks_skipped": len(reasons)}
    run_id = int(con.execute(
        "insert into runs (feature_set_id, stage, split_id, tasks, levels, label_mode, params, "
        "fingerprint, status, versions) values (?, ?, ?, 'structures', ?, ?, ?, ?, 'running', ?) "
        "returning run_id",
        [fsid, stage, split_id, rn.levels_text(level_list), "shuffled" if shuffled else "true",
         rn._json(params), fp, rn._json(rn._versions("cpu"))]).fetchall()[0][0])
    progress.start(f"{stage}: fitting {kept.size} structures (run {run_id})", 0)
    c_of: dict[int, float] = {}
    preds = None
    if kept.size:
        slots = np.array([slot_of[int(struct.names[j])] for j in kept])
        g_tr = g_te = None
        if xg is not None:
            g_tr, g_te = _pcs(xg[tr], xg[te], GLOBAL_PCS)
        xs_tr = _stack(x[tr], slots, k, g_tr)
        xs_te = _stack(x[te], slots, k, g_te)
        scores, chosen = fit_predict(xs_tr, m_tr.y[:, kept], m_tr.mask[:, kept], xs_te,
                                     struct.groups[kept], seed=seed)
        c_of = {int(j): float(c) for j, c in zip(kept, chosen, strict=True)}
        lab = m_te.mask[:, kept]
        r_i, c_i = np.nonzero(lab)
        preds = pa.table({
            "run_id": pa.array(np.full(r_i.size, run_id, dtype=np.int32)),
            "experiment_id": pa.array(m_te.experiment_ids[r_i].astype(np.int64)),
            "structure_id": pa.array(np.array([int(struct.names[j]) for j in kept])[c_i]),
            "score": pa.array(scores[r_i, c_i].astype(np.float64)),
            "detected": pa.array(m_te.y[:, kept][r_i, c_i])})
    tasks_tbl = pa.table({
        "run_id": pa.array(np.full(struct.n_tasks, run_id, dtype=np.int32)),
        "task_kind": pa.array(["structure"] * struct.n_tasks),
        "task": pa.array(list(struct.names)),
        "status": pa.array(["skipped" if j in reasons else "fitted"
                            for j in range(struct.n_tasks)]),
        "reason": pa.array([reasons.get(j) for j in range(struct.n_tasks)], pa.string()),
        "c": pa.array([c_of.get(j) for j in range(struct.n_tasks)], pa.float64()),
        "n_train_pos": pa.array(n_pos.astype(np.int32)),
        "n_train_neg": pa.array(n_neg.astype(np.int32))})
    with warehouse.transaction(con):
        rn._delete_runs(con, [int(r) for r in replace])
        store.insert_arrow(con, "run_tasks", tasks_tbl)
        if preds is not None:
            store.insert_arrow(con, "predictions", preds)
        con.execute("update runs set status = 'finished', finished_at = current_timestamp, "
                    "timings = ? where run_id = ?",
                    [rn._json({"total_s": round(time.perf_counter() - t0, 3)}), run_id])
    progress.done()
    return run_id
