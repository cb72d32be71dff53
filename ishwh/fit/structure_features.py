"""Fitting structure features: each structure's classifier sees only its own statistics.

An atlas feature set (``atlas.<what>``) holds K numbers per structure (layout in
``feature_set_structures``). The model of structure s is an L2 logistic regression on its
own K columns, optionally joined by the first ``global_pcs`` principal components of a
global feature set (``atlas.stain+<global set>``: the components are fitted on the training
experiments). All tasks are fitted at once with batched Newton steps (numpy ``matmul`` over a
(tasks, rows, K) stack), C chosen per ontology level by inner 3-fold CV like the global
trainer. Structures never seen on a registered section are not scored: they are written to
``run_tasks`` as skipped, with that reason.

The runner (:mod:`ishwh.fit.runner`) does everything else exactly as for global features:
splits, training stages, ``holdout='none'``, per-stage normalisation, out-of-fold scores,
calibration and the run's tables. Only the model differs (:class:`StructureModels`), and it
is stored the same way: weights on the raw vector with the standardisation (and the global
set's components) folded in, reading the structure's own K columns (``models.local_start``,
``local_width``, migration 0010) and the global vector, so ``ishwh annotate`` scores these
runs too. Any set named ``atlas.<what>`` with a ``feature_set_structures`` layout works.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np

from ishwh import store, warehouse
from ishwh.errors import InvalidInput
from ishwh.fit import calibration
from ishwh.fit import models as models_mod
from ishwh.fit.trainer import auc_columns

FIT_VERSION = 2          # 2: models stored, fitted through the runner
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


def choose_c(x_tr: np.ndarray, y_tr: np.ndarray, m_tr: np.ndarray, groups: np.ndarray,
             seed: int = 0, cs=CS, cv: int = 3) -> np.ndarray:
    """C per task (T,): per group, the grid value with the best mean inner-CV AUC.

    ``x_tr`` (T, n, d) holds each task's own columns; rows are split into ``cv`` random folds.
    """
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
    return chosen


def fit_tasks(x_tr: np.ndarray, y_tr: np.ndarray, m_tr: np.ndarray, chosen: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fit every task with its C on its standardised columns: ``(coef (T, d), intercept (T,),
    mean (T, d), sd (T, d))``, so ``score = coef . (x - mean) / sd + intercept``."""
    mu = x_tr.mean(axis=1)
    sd = x_tr.std(axis=1)
    sd[sd < 1e-8] = 1.0
    xa = (x_tr - mu[:, None, :]) / sd[:, None, :]
    coef = np.zeros((x_tr.shape[0], x_tr.shape[2]))
    icpt = np.zeros(x_tr.shape[0])
    for c in np.unique(chosen):
        cols = np.flatnonzero(chosen == c)
        coef[cols], icpt[cols] = newton_logistic(xa[cols], y_tr[:, cols], m_tr[:, cols],
                                                 float(c))
    return coef, icpt, mu, sd


@dataclass
class Components:
    """The global set's principal components, fitted on the training rows (label-free):
    ``pcs = (xg - mean) / sd @ v``."""

    mean: np.ndarray
    sd: np.ndarray
    v: np.ndarray               # (global dim, pcs)

    @classmethod
    def fit(cls, xg: np.ndarray, k: int) -> Components:
        xg = np.asarray(xg, dtype=np.float64)
        mean = xg.mean(0)
        sd = xg.std(0)
        sd[sd < 1e-8] = 1.0
        _, _, vt = np.linalg.svd((xg - mean) / sd, full_matrices=False)
        return cls(mean, sd, vt[:k].T)

    def project(self, xg: np.ndarray) -> np.ndarray:
        return ((np.asarray(xg, dtype=np.float64) - self.mean) / self.sd) @ self.v


# --------------------------------------------------------------------------- layout


@dataclass
class Layout:
    """Where each structure's numbers lie in a structure-feature run's vectors.

    The run's vector is the atlas set's vector (K numbers per structure, slot by slot; joined
    atlas sets give each structure their numbers one after the other), then, for a combined
    set ``atlas.<what>+<global>``, the global set's whole vector.
    """

    name: str                    # the run's feature set (combined or not)
    atlas_set: str
    global_set: str | None
    k: int
    atlas_dim: int
    slot_of: dict[int, int]
    seen_of: dict[int, int]
    global_pcs: int

    def skip(self, names: list[str], kept: np.ndarray, reasons: dict[int, str]) -> np.ndarray:
        """``kept`` less the structures (ids as text) this layout cannot score; adds why to
        ``reasons`` (never seen on a registered section overrides a training-count reason)."""
        for j, name in enumerate(names):
            sid = int(name)
            if sid not in self.slot_of:
                reasons.setdefault(j, "not in the structure feature layout")
            elif self.seen_of.get(sid, 0) == 0:
                reasons[j] = "never seen on a registered section (not scored)"
        return np.array([j for j in kept.tolist() if j not in reasons], dtype=np.int64)

    def trainer(self) -> dict:
        return {"Cs": list(CS), "cv": 3, "select": "group", "standardize": True,
                "model": "newton per structure on its own columns",
                "global_pcs": self.global_pcs if self.global_set else 0,
                "fit_version": FIT_VERSION}


def is_structure_set(features: str) -> bool:
    """Structure-feature sets are named ``atlas.<what>`` (optionally ``+atlas.<other>``...
    and ``+<global set>``); a name joining two global sets is refused here, before any work."""
    if not features.startswith("atlas."):
        return False
    _parts(features)
    return True


def _parts(features: str) -> tuple[list[str], str]:
    """``atlas.a+atlas.b+<global>`` -> ``(["atlas.a", "atlas.b"], "<global>" or "")``."""
    parts = features.split("+")
    atlas = [p for p in parts if p.startswith("atlas.")]
    glob = [p for p in parts if not p.startswith("atlas.")]
    if len(glob) > 1:
        raise InvalidInput(f"structure features join at most one global set, got "
                           f"{', '.join(glob)}", param="features")
    return atlas, glob[0] if glob else ""


def layout(con, features: str) -> Layout:
    """The layout of ``atlas.<what>`` or of atlas sets joined per structure
    (``atlas.stain+atlas.cnn``), optionally ``+<global set>`` (the combined set's
    ``feature_sets`` row is made on first use); refuses unfinished sets. Joined atlas sets
    must lay out the same structures; a structure counts as seen when any of them saw it."""
    atlas_names, global_name = _parts(features)
    k = adim = 0
    slot_of: dict[int, int] | None = None
    seen_of: dict[int, int] = {}
    for atlas_name in atlas_names:
        afsid = store.feature_set_id(con, atlas_name)
        dim, finished = con.execute("select dim, finished_at from feature_sets "
                                    "where feature_set_id = ?", [afsid]).fetchall()[0]
        if finished is None:
            raise InvalidInput(f"feature set {atlas_name!r} is not finished yet",
                               hint="let `ishwh featurize --extractor atlas` complete")
        lay = con.execute("select structure_id, slot, n_sections_seen from "
                          "feature_set_structures where feature_set_id = ? order by slot",
                          [afsid]).fetchall()
        if not lay or int(dim) % len(lay):
            raise InvalidInput(f"feature set {atlas_name!r} has no structure layout "
                               "(feature_set_structures)", hint="featurize it again")
        slots = {int(s_): int(i) for s_, i, _ in lay}
        if slot_of is not None and slots != slot_of:
            raise InvalidInput(f"feature set {atlas_name!r} lays out other structures than "
                               f"{atlas_names[0]!r}", hint="featurize both on the same ontology")
        slot_of = slots
        for s_, _, n in lay:
            seen_of[int(s_)] = max(seen_of.get(int(s_), 0), int(n))
        k += int(dim) // len(lay)
        adim += int(dim)
    if len(atlas_names) > 1 or global_name:
        _combined_set(con, features, atlas_names, global_name, adim)
    return Layout(features, "+".join(atlas_names), global_name or None, k, adim,
                  slot_of or {}, seen_of, GLOBAL_PCS)


def read_vectors(con, features: str, stage: str) -> tuple[np.ndarray, np.ndarray]:
    """``(experiment_ids, X)`` of a structure-feature set at a stage (experiments that have
    every joined set): the atlas sets' numbers joined structure by structure (structure s
    holds set 1's K1 numbers, then set 2's K2, ...: each structure's columns stay one
    contiguous slice), then the global set's whole vector for a combined set."""
    atlas_names, global_name = _parts(features)
    ids, blocks = None, []
    for name in [*atlas_names, *([global_name] if global_name else [])]:
        i, x = store.read_experiment_features(con, name, stage)
        if ids is not None:
            common = np.intersect1d(ids, i)
            blocks = [b[np.searchsorted(ids, common)] for b in blocks]
            i, x = common, x[np.searchsorted(i, common)]
        ids = i
        blocks.append(x)
    if len(atlas_names) > 1:
        n_struct = con.execute("select count(*) from feature_set_structures where "
                               "feature_set_id = ?",
                               [store.feature_set_id(con, atlas_names[0])]).fetchall()[0][0]
        per = [b.reshape(b.shape[0], n_struct, -1) for b in blocks[:len(atlas_names)]]
        blocks = [np.concatenate(per, axis=2).reshape(ids.size, -1),
                  *blocks[len(atlas_names):]]
    return ids, blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=1)


# --------------------------------------------------------------------------- training


class StructureModels:
    """One model per structure on its own columns (+ the global set's components), fitted,
    cross-fitted and folded into raw-feature weights (``models.local_start``/``local_width``)."""

    def __init__(self, lay: Layout, structure_ids: np.ndarray, seed: int):
        self.lay = lay
        self.sids = np.asarray(structure_ids, dtype=np.int64)
        self.slots = np.array([lay.slot_of[int(s)] for s in self.sids], dtype=np.int64)
        self.seed = seed

    def _stack(self, x: np.ndarray, comps: Components | None) -> np.ndarray:
        lay = self.lay
        extra = None if comps is None else comps.project(x[:, lay.atlas_dim:])
        return _stack(x[:, :lay.atlas_dim], self.slots, lay.k, extra)

    def _components(self, x: np.ndarray) -> Components | None:
        if not self.lay.global_set:
            return None
        return Components.fit(x[:, self.lay.atlas_dim:], self.lay.global_pcs)

    def fit(self, x: np.ndarray, y: np.ndarray, m: np.ndarray, groups: np.ndarray) -> None:
        """Choose C per group by inner CV and fit every structure on all rows ``x``."""
        self.comps = self._components(x)
        xs = self._stack(x, self.comps)
        self.C_ = choose_c(xs, y, m, groups, seed=self.seed)
        self.coef_, self.icpt_, self.mu_, self.sd_ = fit_tasks(xs, y, m, self.C_)

    def crossfit(self, x: np.ndarray, y: np.ndarray, m: np.ndarray, folds: np.ndarray
                 ) -> np.ndarray:
        """Out-of-fold scores (n, T): each fold scored by models fitted on the others with
        the chosen C (the components stay those of all rows: they use no labels)."""
        xs = self._stack(x, self.comps)
        out = np.full(y.shape, np.nan)
        for f in np.unique(folds):
            tr, va = folds != f, folds == f
            lab = m[tr] & (y[tr] > 0.5)
            both = lab.any(0) & (m[tr] & ~lab).any(0)
            coef, icpt, mu, sd = fit_tasks(xs[:, tr], y[tr], m[tr], self.C_)
            sc = np.einsum("tnd,td->nt", (xs[:, va] - mu[:, None]) / sd[:, None], coef) + icpt
            sc[:, ~both] = np.nan
            out[va] = sc
        return out

    def folded(self, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(weights (T, K [+ global dim]) float32, intercept (T,), local_start (T,),
        local_width (T,))``: the models on the raw vector (see migration 0010)."""
        lay = self.lay
        a = self.coef_ / self.sd_                                 # (T, K [+ P])
        w_own = a[:, :lay.k].astype(np.float32)
        b = self.icpt_ - (w_own.astype(np.float64) * self.mu_[:, :lay.k]).sum(1)
        parts = [w_own]
        if self.comps is not None:
            a_pc = a[:, lay.k:]
            b -= (a_pc * self.mu_[:, lay.k:]).sum(1)
            w_g = ((self.comps.v @ a_pc.T).T / self.comps.sd).astype(np.float32)
            b -= w_g.astype(np.float64) @ self.comps.mean
            parts.append(w_g)
        weights = np.concatenate(parts, axis=1)
        if weights.shape[1] != lay.k + (dim - lay.atlas_dim):
            raise ValueError("folded weights do not fit the run's vector")
        return weights, b, self.slots * lay.k, np.full(self.slots.size, lay.k)


def train_structures(lay: Layout, names: list[str], x_tr, y_tr, m_tr, groups, gene_tr, x_ev,
                     *, seed: int, n_folds: int, oof_rows: slice | None, timings: dict):
    """The structure-feature counterpart of :func:`ishwh.fit.runner.train_global`."""
    est = StructureModels(lay, np.array([int(n) for n in names]), seed)
    t2 = time.perf_counter()
    est.fit(np.asarray(x_tr, dtype=np.float64), y_tr, m_tr, groups)
    timings["train_s"] = round(time.perf_counter() - t2, 4)
    t3 = time.perf_counter()
    folds = models_mod.gene_folds(gene_tr, y_tr, m_tr, n_folds, seed)
    oof = est.crossfit(np.asarray(x_tr, dtype=np.float64), y_tr, m_tr, folds)
    platt_a, platt_b, threshold = calibration.calibrate(oof, y_tr, m_tr)
    weights, intercept, start, width = est.folded(x_tr.shape[1])
    timings["crossfit_s"] = round(time.perf_counter() - t3, 4)
    t3 = time.perf_counter()
    if oof_rows is not None:
        scores = oof[oof_rows]
    else:  # the stored models themselves
        scores = models_mod.StoredModels.dot(x_ev, weights, intercept, local_start=start,
                                             local_width=width)
    timings["predict_s"] = round(time.perf_counter() - t3, 4)
    return models_mod.Fitted(est.C_, weights, intercept, platt_a, platt_b, threshold, scores, "cpu",
                     local_start=start, local_width=width)


def _combined_set(con, name: str, atlas_names: list[str], global_name: str,
                  atlas_dim: int) -> int:
    gdim = 0
    if global_name:
        gid = store.feature_set_id(con, global_name)
        gdim = min(GLOBAL_PCS, int(con.execute(
            "select dim from feature_sets where feature_set_id = ?", [gid]).fetchall()[0][0]))
    rows = con.execute("select feature_set_id from feature_sets where name = ?",
                       [name]).fetchall()
    if rows:
        return int(rows[0][0])
    params = {"combine": [*atlas_names, *([global_name] if global_name else [])],
              "global_pcs": GLOBAL_PCS if global_name else 0,
              "note": "no vectors of its own: fit joins the sets"}
    with warehouse.transaction(con):
        con.execute("insert into feature_sets (name, extractor, dim, params, finished_at) "
                    "values (?, 'atlas', ?, ?, now())", [name, atlas_dim + gdim,
                                                         json.dumps(params)])
    return store.feature_set_id(con, name)
