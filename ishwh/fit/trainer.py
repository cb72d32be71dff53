"""L2-regularised logistic regression for many binary tasks at once (no DuckDB here).

:class:`BatchedLogisticRegression` fits, for every task ``t`` (a column of ``Y``), exactly the
model of scikit-learn's ``LogisticRegression(C=C_t)`` (l2 penalty, unpenalised intercept)::

    min_{w, b}  C_t * sum_i log(1 + exp(-y_i (x_i . w + b)))  +  ||w||^2 / 2

on the standardised features, summing only over the rows where task ``t`` has a label.

Why it is fast. The optimal ``w`` is a combination of the training rows (the gradient of the
loss is ``X^T r``), so with the thin SVD ``X = U S V^T`` (from the eigendecomposition of the
n x n Gram matrix ``X X^T``) we may write ``w = V a`` with ``||w|| = ||a||``: every task
becomes an r <= n dimensional problem on ``Z = U S``. The Gram matrix is one pass over the
(possibly 150,000-wide) features; all tasks then share one batched, preconditioned truncated
Newton solver whose work is a few (n x r) @ (r x T) matrix products per step (torch; on the
GPU when one is present). New rows are scored through the same kernel:
``x . w = k(x, X) U S^-1 a``.

Choosing C. With ``C=None`` the strength is chosen by inner cross-validation on the training
set: ``cv`` folds made by iterative stratification over all tasks, the grid ``Cs`` (default
``DEFAULT_CS`` = 10^-6 ... 10^0, one per decade; C is the absolute sklearn C for standardised
features), scored by validation AUC. ``select='group'`` picks one C per group of tasks
(the runner passes the ontology level), ``'task'`` one per task, ``'all'`` one for everything.
The C path is solved from small to large C with warm starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager

import numpy as np
import torch

from ishwh.device import resolve_device, torch_threads
from ishwh.fit.splits import iterative_stratification

DEFAULT_CS: tuple[float, ...] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
_SELECT = ("group", "task", "all")
CV_TOL = 1e-6


@contextmanager
def _cpu_threads(device: torch.device, work: float):
    """One torch thread for small CPU problems.

    Measured here: on a busy 2-core machine, torch's thread pool turns a 0.2 s fit of a few
    hundred experiments into 10 s (threads spin on tiny matrix products); for big products
    the pool pays off, so it is only switched off below ~1e9 multiply-adds (n^2 T).
    """
    with torch_threads(1 if device.type == "cpu" and work < 1e9 else None):
        yield


def kernel(
    a: np.ndarray,
    b: np.ndarray,
    mean: np.ndarray,
    scale: np.ndarray,
    device: torch.device,
    chunk: int = 8192,
) -> torch.Tensor:
    """``std(a) @ std(b).T`` in float64, streaming over feature chunks (memory ~ chunk)."""
    out = torch.zeros((a.shape[0], b.shape[0]), dtype=torch.float64, device=device)
    for j in range(0, a.shape[1], chunk):
        sl = slice(j, j + chunk)
        m = torch.as_tensor(mean[sl], device=device)
        s = torch.as_tensor(scale[sl], device=device)
        ta = (torch.as_tensor(np.ascontiguousarray(a[:, sl]), device=device) - m) / s
        tb = ta if b is a else (torch.as_tensor(np.ascontiguousarray(b[:, sl]),
                                                device=device) - m) / s
        # float32 products per chunk (fast on every device), float64 accumulation across chunks
        out += (ta @ tb.T).double()
    return out


def auc_columns(scores: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC (ties half) of every column over its masked rows; NaN if a class lacks."""
    from scipy.stats import rankdata

    s = np.where(mask, scores, np.inf)   # unlabeled rows rank above every labeled row
    ranks = rankdata(s, axis=0, method="average")
    pos = mask & (y > 0.5)
    n_pos = pos.sum(0).astype(np.float64)
    n_neg = (mask & (y <= 0.5)).sum(0).astype(np.float64)
    rsum = np.where(pos, ranks, 0.0).sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = (rsum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def _fold_parts(k: torch.Tensor, y: np.ndarray, mask: np.ndarray, fold: np.ndarray):
    """Per fold of ``fold``: validation rows, the basis of the other rows, the validation
    rows' coordinates in it, the other rows' labels and mask, and which tasks keep both
    classes there (a task lacking one has no optimum: its mask is cleared)."""
    for f in np.unique(fold):
        tr, va = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        if tr.size == 0 or va.size == 0:
            continue
        ytr, mtr = y[tr], mask[tr].copy()
        both = ((ytr > 0.5) & mtr).any(0) & ((ytr <= 0.5) & mtr).any(0)
        mtr[:, ~both] = False
        basis = _Basis(k[tr][:, tr])
        yield va, basis, basis.project(k[va][:, tr]), ytr, mtr, both


class _Basis:
    """Thin-SVD basis of one training matrix, from its Gram matrix ``K``."""

    def __init__(self, k: torch.Tensor, rel_tol: float = 1e-10):
        lam, u = torch.linalg.eigh(k)
        keep = lam > rel_tol * max(float(lam.max()), 1e-300)
        self.s = lam[keep].sqrt()                    # singular values (r,)
        self.u = u[:, keep]                          # (n, r)
        self.z = self.u * self.s                     # Z = U S, the n x r design

    def project(self, k_new: torch.Tensor) -> torch.Tensor:
        """Coordinates of new rows: ``x V = k(x, X) U S^-1``."""
        return (k_new @ self.u) / self.s

    def dual(self, a: torch.Tensor) -> torch.Tensor:
        """``alpha`` with ``w = X^T alpha`` for coefficients ``a`` in this basis."""
        return (self.u / self.s) @ a


def _pcg(za, w, c, pen, diag, g, forcing, cg_max):
    """Jacobi-preconditioned CG on ``H d = -g`` for every column; finished columns drop out.

    ``H_t = c_t za^T diag(w_t) za + diag(pen)``. A column stops when its residual norm is
    below ``forcing``; the remaining work runs on the columns still live only.
    """
    d = torch.zeros_like(g)
    live = torch.arange(g.shape[1], device=g.device)
    res = -g
    zr = res / diag
    pdir = zr.clone()
    rz = (res * zr).sum(0)
    for _ in range(cg_max):
        hp = c * (za.T @ (w * (za @ pdir))) + pen * pdir     # Hessian-vector products
        php = (pdir * hp).sum(0)
        alpha = rz / php.clamp(min=1e-300)
        d[:, live] += alpha * pdir
        res = res - alpha * hp
        done = res.norm(dim=0) <= forcing
        if bool(done.all()):
            break
        if bool(done.any()):
            keep = ~done
            live, res, pdir, rz = live[keep], res[:, keep], pdir[:, keep], rz[keep]
            w, c, diag, forcing = w[:, keep], c[:, keep], diag[:, keep], forcing[keep]
        zr = res / diag
        rz_new = (res * zr).sum(0)
        pdir = zr + (rz_new / rz.clamp(min=1e-300)) * pdir
        rz = rz_new
    return d


def solve_batched(
    z: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor,
    c: torch.Tensor,
    theta0: torch.Tensor | None = None,
    *,
    tol: float = 1e-10,
    max_iter: int = 100,
    cg_max: int = 200,
) -> tuple[torch.Tensor, int]:
    """Batched truncated Newton for ``T`` L2 logistic regressions sharing the design ``z``.

    ``z`` (n, r); ``y``, ``mask`` (n, T) float 0/1; ``c`` (T,). Returns ``theta`` (r + 1, T),
    the last row the intercepts, and the number of Newton steps taken. A task stops when its
    Newton decrement says it is within ``tol * (1 + |f|)`` of its optimum; every step works on
    the tasks not yet converged only.
    """
    n, r = z.shape
    t = y.shape[1]
    dt = z.dtype
    za = torch.cat([z, torch.ones((n, 1), dtype=dt, device=z.device)], dim=1)  # intercept col
    za_sq = za * za
    pen = torch.ones((r + 1, 1), dtype=dt, device=z.device)
    pen[-1] = 0.0                                     # the intercept is not penalised
    c_all = c.reshape(1, t).to(dt)
    if theta0 is None:
        theta = torch.zeros((r + 1, t), dtype=dt, device=z.device)
        n_lab = mask.sum(0).clamp(min=1)
        prior = ((y * mask).sum(0) / n_lab).clamp(1e-6, 1 - 1e-6)
        theta[-1] = torch.log(prior / (1 - prior))
    else:
        theta = theta0.clone()

    active = torch.arange(t, device=z.device)
    n_steps = 0
    for n_steps in range(1, max_iter + 1):  # noqa: B007 (the count is returned)
        yy, mm, cc, th = y[:, active], mask[:, active], c_all[:, active], theta[:, active]

        def objective(x: torch.Tensor, yy=yy, mm=mm, cc=cc) -> torch.Tensor:
            eta = za @ x
            loss = ((torch.nn.functional.softplus(eta) - yy * eta) * mm).sum(0)
            return cc[0] * loss + 0.5 * (pen * x * x).sum(0)

        p = torch.sigmoid(za @ th)
        g = cc * (za.T @ ((p - yy) * mm)) + pen * th
        w = p * (1 - p) * mm                          # Hessian weights
        diag = cc * (za_sq.T @ w) + pen + 1e-12       # exact Hessian diagonal: Jacobi PCG
        gnorm = g.norm(dim=0)
        d = _pcg(za, w, cc, pen, diag, g, torch.clamp(gnorm.sqrt(), max=0.1) * gnorm, cg_max)

        f0 = objective(th)
        gtd = (g * d).sum(0)
        # Newton decrement: f - f* ~ -g.d / 2. Converged tasks stop moving.
        moving = (-gtd / 2) > tol * (1 + f0.abs())
        # Armijo backtracking, per task.
        step = moving.to(dt)
        todo = moving.clone()
        for _ in range(40):
            if not bool(todo.any()):
                break
            f1 = objective(th + step * d)
            todo &= ~(f1 <= f0 + 1e-4 * step * gtd)
            step = torch.where(todo, step * 0.5, step)
        step = torch.where(todo, torch.zeros_like(step), step)  # no descent: stop that task
        theta[:, active] = th + step * d
        active = active[moving & ~todo]
        if active.numel() == 0:
            break
    return theta, n_steps


def _inputs(X, Y, y_dtype) -> tuple[np.ndarray, np.ndarray]:
    """``X`` as float32/64 (n, d) and ``Y`` as (n, T) of ``y_dtype``; refuses a row mismatch."""
    X = np.asarray(X)
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float32)
    Y = np.asarray(Y, dtype=y_dtype)
    if Y.ndim == 1:
        Y = Y[:, None]
    if X.ndim != 2 or X.shape[0] != Y.shape[0]:
        raise ValueError("X must be (n, d) with as many rows as Y")
    return X, Y


class BatchedLogisticRegression:
    """Many L2 logistic regressions on one feature matrix (scikit-learn estimator style).

    Parameters
    ----------
    C : float, sequence of floats (one per task) or None
        Inverse regularisation strength as in scikit-learn; None = chosen by inner CV.
    Cs : grid for the inner CV (absolute C on standardised features).
    cv : number of inner folds.
    select : 'group' (one C per task group, e.g. ontology level), 'task' or 'all'.
    standardize : z-score the features with the training mean / std (as StandardScaler).
    scale_floor : with ``standardize``, divide by ``max(std, scale_floor x the median std of
        the non-constant features)`` instead of the std: a feature almost constant on the
        training rows (e.g. a grid cell inside the brain of one training experiment) is not
        blown up on new rows that have it. 0 = StandardScaler (the paper's). See
        docs/annotate.md (calibration).
    tol, max_iter : Newton stopping rule (relative Newton decrement) and step limit.
    device : 'auto' (CUDA if present), 'cpu' or 'cuda'.
    random_state : seed of the inner folds.
    """

    def __init__(
        self,
        C: float | Sequence[float] | None = None,
        Cs: Sequence[float] = DEFAULT_CS,
        cv: int = 3,
        select: str = "group",
        standardize: bool = True,
        scale_floor: float = 0.0,
        tol: float = 1e-10,
        max_iter: int = 100,
        device: str = "auto",
        random_state: int = 0,
    ):
        self.C = C
        self.Cs = Cs
        self.cv = cv
        self.select = select
        self.standardize = standardize
        self.scale_floor = scale_floor
        self.tol = tol
        self.max_iter = max_iter
        self.device = device
        self.random_state = random_state

    # ------------------------------------------------------------------ helpers

    def _validate_selection(self) -> None:
        """The C selection's parameters (shared with the multi-class trainer)."""
        if self.select not in _SELECT:
            raise ValueError(f"select must be one of {_SELECT}, not {self.select!r}")
        if self.C is None:
            if not self.Cs or any(float(c) <= 0 for c in self.Cs):
                raise ValueError("Cs must be a non-empty grid of positive values")
            if int(self.cv) < 2:
                raise ValueError("cv must be at least 2")

    def _select_c(self, groups: np.ndarray, t: int, cv_scores) -> None:
        """``C_`` (T,): chosen from ``cv_scores(keys)`` (validation scores (len(Cs), T) for the
        selection keys) when ``C`` is None, else ``C`` broadcast; ``cv_scores_`` kept."""
        if self.C is None:
            self.cv_scores_ = cv_scores(self._group_keys(groups, t))
            self.C_ = self._choose(self.cv_scores_, groups)
        else:
            self.cv_scores_ = None
            self.C_ = np.broadcast_to(np.asarray(self.C, dtype=np.float64), (t,)).copy()

    def _validate(self, y: np.ndarray, mask: np.ndarray) -> None:
        self._validate_selection()
        if self.C is not None:
            c = np.atleast_1d(np.asarray(self.C, dtype=np.float64))
            if (c <= 0).any() or c.size not in (1, y.shape[1]):
                raise ValueError("C must be positive: one value or one per task")
        if y.shape != mask.shape:
            raise ValueError("Y and mask must have the same shape")

    def _tensor(self, a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a, dtype=np.float64), device=self.device_)

    def _group_keys(self, groups: np.ndarray, t: int) -> np.ndarray:
        if self.select == "task":
            return np.arange(t)
        if self.select == "all":
            return np.zeros(t, dtype=np.int64)
        return np.unique(groups, return_inverse=True)[1]

    def _cv_scores(self, k: torch.Tensor, y: np.ndarray, mask: np.ndarray,
                   keys: np.ndarray) -> np.ndarray:
        """Validation AUC (len(Cs), T): mean over inner folds, NaN where never computed.

        The grid is walked from small to large C (each fold warm-started from its previous
        solution). Large C are the expensive ones, so the walk stops once every selection
        group's CV AUC has stayed below its best for two grid steps in a row.
        """
        rng = np.random.default_rng(self.random_state)
        lab = mask & (y > 0.5)
        counts = np.concatenate([lab, mask & ~lab], axis=1).astype(np.float64)
        fold = iterative_stratification(counts, [1.0] * int(self.cv), rng)
        t = y.shape[1]
        folds = []
        for va, basis, zva, ytr, mtr, both in _fold_parts(k, y, mask, fold):
            folds.append({"basis": basis, "zva": zva, "va": va,
                          "y": self._tensor(ytr), "m": self._tensor(mtr), "both": both,
                          "theta": None})

        def fold_aucs(c: float):
            cvec = torch.full((t,), c, dtype=torch.float64, device=self.device_)
            for fd in folds:
                # Model selection needs validation rankings, not 1e-10 optima: a looser
                # stopping rule (relative Newton decrement 1e-6) saves the costly steps.
                fd["theta"], _ = solve_batched(fd["basis"].z, fd["y"], fd["m"], cvec,
                                               fd["theta"], tol=max(self.tol, CV_TOL),
                                               max_iter=self.max_iter)
                sc = (fd["zva"] @ fd["theta"][:-1] + fd["theta"][-1]).cpu().numpy()
                auc = auc_columns(sc, y[fd["va"]], mask[fd["va"]])
                auc[~fd["both"]] = np.nan
                yield auc

        return self._walk_grid(keys, t, fold_aucs)

    def _walk_grid(self, keys: np.ndarray, t: int, fold_aucs) -> np.ndarray:
        """Mean validation AUC (len(Cs), T) over the folds ``fold_aucs(C)`` yields (each (T,),
        NaN where not computed), C from small to large; the walk stops once every selection
        group's mean has stayed below its best for two grid steps in a row."""
        cs = sorted(float(c) for c in self.Cs)
        total = np.zeros((len(cs), t))
        n_ok = np.zeros((len(cs), t))
        uniq = np.unique(keys)
        best = np.full(uniq.size, -np.inf)
        since_best = np.zeros(uniq.size, dtype=np.int64)
        for i, c in enumerate(cs):
            for auc in fold_aucs(c):
                good = np.isfinite(auc)
                total[i] += np.where(good, auc, 0.0)
                n_ok[i] += good
            with np.errstate(invalid="ignore"):
                row = np.where(n_ok[i] > 0, total[i] / np.maximum(n_ok[i], 1), np.nan)
            for gi, g in enumerate(uniq):
                vals = row[keys == g]
                m = np.nanmean(vals) if np.isfinite(vals).any() else -np.inf
                if m > best[gi]:
                    best[gi], since_best[gi] = m, 0
                else:
                    since_best[gi] += 1
            if (since_best >= 2).all():
                break
        self.n_cs_evaluated_ = i + 1
        with np.errstate(invalid="ignore"):
            return np.where(n_ok > 0, total / np.maximum(n_ok, 1), np.nan)

    def _choose(self, scores: np.ndarray, groups: np.ndarray) -> np.ndarray:
        cs = np.array(sorted(float(c) for c in self.Cs))
        t = scores.shape[1]
        keys = self._group_keys(groups, t)
        out = np.empty(t)
        for g in np.unique(keys):
            cols = keys == g
            with np.errstate(invalid="ignore"):
                mean = np.array([np.nanmean(r) if np.isfinite(r).any() else -np.inf
                                 for r in scores[:, cols]])
            # first maximum on the ascending grid: ties go to the stronger regularisation
            out[cols] = cs[int(np.argmax(mean))] if np.isfinite(mean).any() else cs[len(cs) // 2]
        return out

    # ------------------------------------------------------------------ estimator API

    def fit(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        mask: np.ndarray | None = None,
        groups: np.ndarray | Sequence | None = None,
    ) -> BatchedLogisticRegression:
        """Fit every column of ``Y`` (n, T; 0/1) on ``X`` (n, d).

        ``mask`` (n, T) marks the labeled entries (default all); ``groups`` (T,) groups tasks
        for ``select='group'``. Every task needs both classes among its labeled rows.
        """
        X, Y = _inputs(X, Y, np.float64)
        mask = np.ones(Y.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        self._validate(Y, mask)
        lab = mask & (Y > 0.5)
        if not (lab.any(0) & (mask & ~lab).any(0)).all():
            raise ValueError("every task needs positive and negative labeled rows")
        groups = np.zeros(Y.shape[1]) if groups is None else np.asarray(groups)
        if groups.shape != (Y.shape[1],):
            raise ValueError("groups must have one entry per task")

        self.device_ = resolve_device(self.device)
        self.n_features_in_ = X.shape[1]
        if self.standardize:
            self.mean_ = X.mean(0, dtype=np.float64).astype(np.float32)
            sd = X.std(0, dtype=np.float64)
            if self.scale_floor > 0 and (sd > 0).any():
                sd = np.where(sd > 0, np.maximum(sd, self.scale_floor * np.median(sd[sd > 0])),
                              0.0)
            self.scale_ = np.where(sd > 0, sd, 1.0).astype(np.float32)
        else:
            self.mean_ = np.zeros(X.shape[1], dtype=np.float32)
            self.scale_ = np.ones(X.shape[1], dtype=np.float32)
        self.X_fit_ = X  # kept by reference: new rows are scored through the kernel
        work = float(X.shape[0]) ** 2 * max(Y.shape[1], X.shape[1] / X.shape[0])
        with _cpu_threads(self.device_, work):
            self._fit(X, Y, mask, groups)
        return self

    def _fit(self, X, Y, mask, groups) -> None:
        k = kernel(X, X, self.mean_, self.scale_, self.device_)

        self._select_c(groups, Y.shape[1], lambda keys: self._cv_scores(k, Y, mask, keys))

        basis = _Basis(k)
        theta, self.n_iter_ = solve_batched(
            basis.z, self._tensor(Y), self._tensor(mask), self._tensor(self.C_),
            tol=self.tol, max_iter=self.max_iter)
        self.dual_coef_ = basis.dual(theta[:-1])       # (n, T): w = std(X)^T dual_coef_
        self.intercept_ = theta[-1].cpu().numpy()
        self.rank_ = int(basis.s.numel())

    def _check_fitted(self) -> None:
        if not hasattr(self, "dual_coef_"):
            raise ValueError("this BatchedLogisticRegression is not fitted yet; call fit first")

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Scores ``x . w_t + b_t`` (m, T) for new rows."""
        self._check_fitted()
        X, work = self._new_rows(X)
        with _cpu_threads(self.device_, work):
            k = kernel(X, self.X_fit_, self.mean_, self.scale_, self.device_)
            return (k @ self.dual_coef_).cpu().numpy() + self.intercept_

    def _new_rows(self, X: np.ndarray) -> tuple[np.ndarray, float]:
        """New rows as float32/64 (checked against the fitted width) and the scoring work."""
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"X must have {self.n_features_in_} columns")
        if X.dtype not in (np.float32, np.float64):
            X = X.astype(np.float32)
        return X, float(X.shape[0]) * self.X_fit_.shape[0] * self.n_features_in_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probability of the positive class per task (m, T)."""
        return 1.0 / (1.0 + np.exp(-self.decision_function(X)))

    @property
    def coef_(self) -> np.ndarray:
        """Weights (T, d) on the standardised features (materialised on demand)."""
        self._check_fitted()
        out = np.empty((self.dual_coef_.shape[1], self.n_features_in_))
        alpha = self.dual_coef_.cpu().numpy()
        step = 8192
        for j in range(0, self.n_features_in_, step):
            xs = (self.X_fit_[:, j:j + step] - self.mean_[j:j + step]) / self.scale_[j:j + step]
            out[:, j:j + step] = (xs.T.astype(np.float64) @ alpha).T
        return out


def standardize_like(X: np.ndarray, model: BatchedLogisticRegression) -> np.ndarray:
    """``X`` z-scored with a fitted model's mean and scale (for fitting the same data elsewhere)."""
    return (np.asarray(X, dtype=np.float64) - model.mean_) / model.scale_


def folded_weights(
    model: BatchedLogisticRegression, chunk: int = 8192
) -> tuple[np.ndarray, np.ndarray]:
    """Weights on the raw features with the standardisation folded in: ``(W, b)``.

    ``W`` (T, d) float32 and ``b`` (T,) float64 with ``x . W[t] + b[t]`` equal to the model's
    ``decision_function`` (up to float rounding). ``b`` is computed from the float32-rounded
    ``W``, so the rounding of a weight does not shift every score by ``mean . dW``.
    """
    model._check_fitted()
    alpha = model.dual_coef_.cpu().numpy()                    # (n, T)
    d = model.n_features_in_
    w_out = np.empty((alpha.shape[1], d), dtype=np.float32)
    b = np.asarray(model.intercept_, dtype=np.float64).copy()
    for j in range(0, d, chunk):
        sl = slice(j, j + chunk)
        mean = model.mean_[sl].astype(np.float64)
        scale = model.scale_[sl].astype(np.float64)
        xs = (np.asarray(model.X_fit_[:, sl], dtype=np.float64) - mean) / scale
        w = ((alpha.T @ xs) / scale).astype(np.float32)
        w_out[:, sl] = w
        b -= w.astype(np.float64) @ mean
    return w_out, b


def crossfit_scores(
    model: BatchedLogisticRegression, Y: np.ndarray, mask: np.ndarray, folds: np.ndarray
) -> np.ndarray:
    """Out-of-fold scores (n, T) of the training rows of a fitted model.

    Rows of fold ``f`` are scored by models fitted on the other folds with the model's chosen
    ``C_`` (and its standardisation, which uses no labels). NaN where a task lacks a class in
    the other folds. ``folds`` (n,) assigns each training row to a fold.
    """
    model._check_fitted()
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim == 1:
        Y = Y[:, None]
    mask = np.asarray(mask, dtype=bool)
    X = model.X_fit_
    out = np.full(Y.shape, np.nan)
    work = float(X.shape[0]) ** 2 * max(Y.shape[1], X.shape[1] / X.shape[0])
    c = torch.as_tensor(np.asarray(model.C_, dtype=np.float64), device=model.device_)
    with _cpu_threads(model.device_, work):
        k = kernel(X, X, model.mean_, model.scale_, model.device_)
        for va, basis, zva, ytr, mtr, both in _fold_parts(k, Y, mask, folds):
            theta, _ = solve_batched(basis.z, model._tensor(ytr), model._tensor(mtr), c,
                                     tol=max(model.tol, CV_TOL), max_iter=model.max_iter)
            sc = (zva @ theta[:-1] + theta[-1]).cpu().numpy()
            sc[:, ~both] = np.nan
            out[va] = sc
    return out


__all__ = ["DEFAULT_CS", "BatchedLogisticRegression", "auc_columns", "crossfit_scores",
           "folded_weights", "kernel", "solve_batched", "standardize_like"]
