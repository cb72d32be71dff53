"""Multi-class logistic regression for many tasks at once: nominal and ordinal (no DuckDB).

:class:`BatchedMulticlassLogisticRegression` fits, for every task ``t`` (a column of ``Y``,
class codes ``0 .. K_t - 1``, ``-1`` unknown), one of two models on the standardised features:

``model='multinomial'`` (nominal classes; e.g. the expression pattern): exactly scikit-learn's
``LogisticRegression(C=C_t)`` on a multi-class target (softmax, l2 penalty on every class's
weights, unpenalised intercepts)::

    min_{W, b}  C_t * sum_i -log softmax(x_i W + b)[y_i]  +  ||W||_F^2 / 2

``model='ordinal'`` (ordered grades; intensity, density): the cumulative logit (proportional
odds) model ``P(y <= k | x) = sigmoid(theta_k - x . w)`` with increasing thresholds
``theta_0 < ... < theta_{K-2}`` (unpenalised) and the same penalty ``||w||^2 / 2``. One weight
vector per task: the grades share a direction, so a rare grade borrows strength from the
others; the class probabilities are the differences of consecutive cumulative probabilities.

Speed comes from the same place as :class:`~ishwh.fit.trainer.BatchedLogisticRegression`: the
optimal weights lie in the span of the training rows, so every task is solved in the r <= n
dimensional thin-SVD basis ``Z = U S`` of the training Gram matrix (one pass over the wide
features), and all tasks share one L-BFGS run on the sum of their objectives (the objectives
are separable, so the joint optimum is every task's optimum). The coordinates are scaled by
``1 / sqrt(1 + C s_i^2 / 4)`` (the Hessian's diagonal in that orthogonal basis), which makes
the problem well conditioned whatever C.

C is chosen as in the binary trainer: inner CV folds by iterative stratification over all
tasks' classes, the grid ``Cs`` walked from small to large with warm starts, scored by the
validation macro AUC (one-vs-rest, the mean over the classes present), one C per ``groups``
value (the runner passes the ontology level).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ishwh.device import resolve_device
from ishwh.fit.splits import iterative_stratification
from ishwh.fit.trainer import (
    DEFAULT_CS,
    BatchedLogisticRegression,
    _Basis,
    _cpu_threads,
    _inputs,
    auc_columns,
    kernel,
)

MODELS = ("multinomial", "ordinal")
_NEG = -1e30   # logit of a class a task does not have
CV_TOL = 1e-4  # L-BFGS gradient tolerance of the inner-CV solves (float32)
# L-BFGS gradient tolerance of the final solve (float64, preconditioned variables). Measured
# (`benchmarks/multiclass.py --tol-check --tasks 100`, C 1e-4 .. 1e-2, both models): the
# probabilities differ from a 1e-8 solve by at most 1.1e-4 and the macro AUC by at most 1e-5,
# in 40-60 % of the iterations. scikit-learn's default (tol 1e-4 on its mean loss) stops at a
# gradient of 1e-4 C n on this objective's scale (1.3e-4 at the benchmark's C and n).
FIT_TOL = 1e-5


def macro_auc_columns(prob: np.ndarray, y: np.ndarray, n_classes: np.ndarray) -> np.ndarray:
    """One-vs-rest macro AUC per task: mean over the classes present in the task's labeled rows.

    ``prob`` (m, T, K) class scores, ``y`` (m, T) codes (-1 unknown), ``n_classes`` (T,).
    NaN where fewer than two classes are present. Matches scikit-learn's
    ``roc_auc_score(y, prob, multi_class='ovr', average='macro')`` on the classes present.
    """
    m, t, k = prob.shape
    lab = y >= 0
    total = np.zeros(t)
    count = np.zeros(t)
    for c in range(k):
        auc = auc_columns(prob[:, :, c], (y == c).astype(np.float64), lab)
        ok = np.isfinite(auc) & (c < n_classes)
        total += np.where(ok, auc, 0.0)
        count += ok
    n_present = np.array([np.unique(y[lab[:, j], j]).size for j in range(t)])
    with np.errstate(invalid="ignore"):
        out = total / np.maximum(count, 1)
    out[n_present < 2] = np.nan
    # binary task: both one-vs-rest AUCs are the AUC itself (as sklearn's binary AUC)
    return out


class _Problem:
    """The objective of all tasks in one basis: parameters, loss, probabilities."""

    def __init__(self, model: str, z: torch.Tensor, y: np.ndarray, n_classes: np.ndarray,
                 c: np.ndarray, kmax: int):
        self.model = model
        self.z = z
        dev, dt = z.device, z.dtype
        n, r = z.shape
        t = y.shape[1]
        self.kmax = kmax
        self.lab = torch.as_tensor(y >= 0, device=dev)
        self.y = torch.as_tensor(np.where(y >= 0, y, 0), device=dev, dtype=torch.long)
        self.nk = torch.as_tensor(n_classes, device=dev, dtype=torch.long)
        self.c = torch.as_tensor(c, device=dev, dtype=dt)
        kk = torch.arange(kmax, device=dev)
        self.active = kk[None, :] < self.nk[:, None]                           # (T, K)
        self.onehot = torch.nn.functional.one_hot(self.y, kmax).to(dt)         # (n, T, K)
        freq = (self.onehot * self.lab[..., None]).sum(0) + 0.5                # (T, K)
        freq = torch.where(self.active, freq, torch.zeros_like(freq))
        self.freq = freq / freq.sum(1, keepdim=True)
        # Curvature of the loss per unit of s^2 at the class-frequency start: p (1 - p) per
        # class (multinomial); the steepest cumulative split F (1 - F) (ordinal). It scales
        # the coordinates (Jacobi preconditioning in the orthogonal basis).
        if model == "multinomial":
            q = self.freq * (1 - self.freq)                                    # (T, K)
        else:
            cum = self.freq.cumsum(1)[:, :-1]
            q = (cum * (1 - cum)).amax(1, keepdim=True)                        # (T, 1)
        q = q.clamp(min=1e-3)
        s2 = (z * z).sum(0)                                                    # s_i^2
        self.pre = 1.0 / torch.sqrt(1.0 + s2[:, None, None] * (self.c[:, None] * q)[None])
        n_lab = self.lab.sum(0).to(dt)
        self.pre_b = 1.0 / torch.sqrt(1.0 + (n_lab * self.c)[:, None] * q)     # (T, K|1)
        if model == "ordinal":
            self.pre, self.pre_b = self.pre[:, :, 0], self.pre_b[:, 0]
        if model == "multinomial":
            self.shape_w = (r, t, kmax)
            self.shape_b = (t, kmax)
        else:
            self.shape_w = (r, t)
            self.shape_b = (t, kmax - 1)      # theta_0, then log-gaps (softplus) of the rest
        self.r, self.t = r, t

    def init_params(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero weights, intercepts / thresholds at the class frequencies."""
        dt, dev = self.z.dtype, self.z.device
        freq = self.freq
        w = torch.zeros(self.shape_w, dtype=dt, device=dev)
        if self.model == "multinomial":
            b = torch.where(self.active, torch.log(freq.clamp(min=1e-12)), torch.zeros_like(freq))
        else:
            cum = freq.cumsum(1)[:, :-1].clamp(1e-6, 1 - 1e-6)
            theta = torch.log(cum / (1 - cum))
            gaps = (theta[:, 1:] - theta[:, :-1]).clamp(min=1e-3)
            b = torch.cat([theta[:, :1], torch.log(torch.expm1(gaps))], dim=1)
        return w, b

    def unscale(self, vw: torch.Tensor, vb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Optimiser variables -> weights in the basis and intercepts/thresholds."""
        if self.model == "multinomial":
            return vw * self.pre, vb * self.pre_b
        return vw * self.pre, torch.cat([vb[:, :1] * self.pre_b[:, None], vb[:, 1:]], dim=1)

    def scale(self, w: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.model == "multinomial":
            return w / self.pre, b / self.pre_b
        return w / self.pre, torch.cat([b[:, :1] / self.pre_b[:, None], b[:, 1:]], dim=1)

    def log_proba(self, zz: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Log class probabilities (m, T, K) of rows with basis coordinates ``zz``."""
        m = zz.shape[0]
        if self.model == "multinomial":
            logits = (zz @ w.reshape(self.r, -1)).reshape(m, self.t, self.kmax) + b[None]
            logits = torch.where(self.active[None], logits, torch.full_like(logits, _NEG))
            return torch.log_softmax(logits, dim=2)
        eta = zz @ w                                                          # (m, T)
        theta0 = b[:, :1]
        gaps = torch.nn.functional.softplus(b[:, 1:])                         # (T, K-2)
        theta = torch.cat([theta0, theta0 + gaps.cumsum(1)], dim=1)           # (T, K-1)
        kk = torch.arange(self.kmax - 1, device=zz.device)
        # thresholds beyond a task's last class are +inf: P(y <= k) = 1 there
        has = kk[None, :] < (self.nk[:, None] - 1)                            # (T, K-1)
        a = theta[None] - eta[..., None]                                      # (m, T, K-1)
        upper = torch.where(has[None], torch.nn.functional.logsigmoid(a), torch.zeros_like(a))
        lower = torch.where(has[None], torch.nn.functional.logsigmoid(-a), torch.zeros_like(a))
        zero = torch.zeros((m, self.t, 1), dtype=a.dtype, device=a.device)
        # log p_k = log sig(theta_k - eta) + log sig(eta - theta_{k-1}) + log(1 - e^-gap_k)
        lp = torch.cat([upper, zero], dim=2) + torch.cat([zero, lower], dim=2)
        gap_all = theta[:, 1:] - theta[:, :-1]                                # (T, K-2)
        mid = torch.log(-torch.expm1(-gap_all.clamp(min=1e-12)))
        mid = torch.where(has[:, 1:], mid, torch.zeros_like(mid))
        lp = lp + torch.cat([torch.zeros((self.t, 1), dtype=a.dtype, device=a.device), mid,
                             torch.zeros((self.t, 1), dtype=a.dtype, device=a.device)],
                            dim=1)[None]
        return torch.where(self.active[None], lp, torch.full_like(lp, _NEG))

    def objective(self, vw: torch.Tensor, vb: torch.Tensor) -> torch.Tensor:
        w, b = self.unscale(vw, vb)
        lp = self.log_proba(self.z, w, b)
        nll = -(lp * self.onehot).sum(2) * self.lab                           # (n, T)
        return (self.c * nll.sum(0)).sum() + 0.5 * (w * w).sum()


def _solve(prob: _Problem, start: tuple[torch.Tensor, torch.Tensor] | None, tol: float,
           max_iter: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """L-BFGS on the sum of every task's objective; returns (w, b, iterations)."""
    w0, b0 = prob.init_params() if start is None else start
    vw0, vb0 = prob.scale(w0, b0)
    vw = vw0.clone().requires_grad_(True)
    vb = vb0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([vw, vb], lr=1.0, max_iter=max_iter, history_size=20,
                            tolerance_grad=tol, tolerance_change=1e-12,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        f = prob.objective(vw, vb)
        f.backward()
        return f

    opt.step(closure)
    n_iter = int(opt.state[opt._params[0]].get("n_iter", 0))
    w, b = prob.unscale(vw.detach(), vb.detach())
    return w, b, n_iter


class BatchedMulticlassLogisticRegression(BatchedLogisticRegression):
    """Many multinomial or ordinal logistic regressions on one feature matrix.

    It shares the binary trainer's C selection (groups, grid, choice); fitting and scoring
    are its own.

    Parameters
    ----------
    model : 'multinomial' (nominal classes) or 'ordinal' (cumulative logit).
    C : float, one per task, or None (chosen by inner CV over ``Cs``).
    Cs, cv, select : the inner-CV grid, folds and selection ('group', 'task', 'all').
    tol : L-BFGS gradient tolerance (on the preconditioned variables).
    max_iter : L-BFGS iteration limit per solve.
    device : 'auto', 'cpu' or 'cuda'. random_state : seed of the inner folds.
    """

    def __init__(self, model: str = "multinomial", C: float | Sequence[float] | None = None,
                 Cs: Sequence[float] = DEFAULT_CS, cv: int = 3, select: str = "group",
                 tol: float = FIT_TOL, max_iter: int = 500, device: str = "auto",
                 random_state: int = 0):
        self.model = model
        self.C = C
        self.Cs = Cs
        self.cv = cv
        self.select = select
        self.tol = tol
        self.max_iter = max_iter
        self.device = device
        self.random_state = random_state

    def _validate(self, Y: np.ndarray, n_classes: np.ndarray) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, not {self.model!r}")
        self._validate_selection()
        if n_classes.shape != (Y.shape[1],) or (n_classes < 2).any():
            raise ValueError("n_classes must give every task at least 2 classes")
        if (Y >= n_classes[None, :]).any() or (Y < -1).any():
            raise ValueError("Y codes must lie in -1 (unknown) .. n_classes - 1")
        for j in range(Y.shape[1]):
            present = np.unique(Y[Y[:, j] >= 0, j])
            if present.size != n_classes[j]:
                raise ValueError(f"task {j}: every class 0..n_classes-1 needs a labeled row")

    def fit(self, X: np.ndarray, Y: np.ndarray, n_classes: Sequence[int] | None = None,
            groups: Sequence | None = None) -> BatchedMulticlassLogisticRegression:
        """Fit every column of ``Y`` (n, T; codes 0..K_t-1, -1 unknown) on ``X`` (n, d)."""
        X, Y = _inputs(X, Y, np.int64)
        nk = (np.array([int(Y[:, j].max()) + 1 for j in range(Y.shape[1])])
              if n_classes is None else np.asarray(n_classes, dtype=np.int64))
        self._validate(Y, nk)
        groups = np.zeros(Y.shape[1]) if groups is None else np.asarray(groups)
        if groups.shape != (Y.shape[1],):
            raise ValueError("groups must have one entry per task")
        self.device_ = resolve_device(self.device)
        self.n_classes_ = nk
        self.kmax_ = int(nk.max())
        self.n_features_in_ = X.shape[1]
        self.mean_ = X.mean(0, dtype=np.float64).astype(np.float32)
        sd = X.std(0, dtype=np.float64)
        self.scale_ = np.where(sd > 0, sd, 1.0).astype(np.float32)
        self.X_fit_ = X
        work = float(X.shape[0]) ** 2 * max(Y.shape[1] * self.kmax_, X.shape[1] / X.shape[0])
        with _cpu_threads(self.device_, work):
            k = kernel(X, X, self.mean_, self.scale_, self.device_)
            self._select_c(groups, Y.shape[1], lambda keys: self._cv_scores(k, Y, nk, keys))
            basis = _Basis(k)
            prob = _Problem(self.model, basis.z, Y, nk, self.C_, self.kmax_)
            w, b, self.n_iter_ = _solve(prob, None, self.tol, self.max_iter)
            self.basis_, self.w_, self.b_, self._prob = basis, w, b, prob
        return self

    def _cv_scores(self, k: torch.Tensor, Y: np.ndarray, nk: np.ndarray,
                   keys: np.ndarray) -> np.ndarray:
        """Validation macro AUC (len(Cs), T), mean over folds; the grid stops early once
        every group's score has stayed below its best for two steps."""
        rng = np.random.default_rng(self.random_state)
        counts = np.concatenate([(Y == c) for c in range(self.kmax_)], axis=1).astype(float)
        fold = iterative_stratification(counts, [1.0] * int(self.cv), rng)
        t = Y.shape[1]
        folds = []
        for f in range(int(self.cv)):
            tr, va = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
            ytr = Y[tr].copy()
            # a task missing a class in this fold's training part is left out of this fold
            ok = np.array([np.unique(ytr[ytr[:, j] >= 0, j]).size == nk[j] for j in range(t)])
            ytr[:, ~ok] = -1
            ytr[0, ~ok] = 0          # placeholder rows keep those tasks solvable, unscored
            ytr[1, ~ok] = 1
            nk_f = np.where(ok, nk, 2)
            basis = _Basis(k[tr][:, tr])
            # Model selection needs validation rankings, not tight optima: the folds are
            # solved in float32 with a looser stopping rule (about 3x less time on a CPU).
            folds.append({"z": basis.z.float(), "y": ytr, "nk": nk_f, "ok": ok, "va": va,
                          "zva": basis.project(k[va][:, tr]).float(), "start": None})

        def fold_aucs(c: float):
            for fd in folds:
                prob = _Problem(self.model, fd["z"], fd["y"], fd["nk"], np.full(t, c),
                                self.kmax_)
                w, b, _ = _solve(prob, fd["start"], max(self.tol, CV_TOL), self.max_iter)
                fd["start"] = (w, b)
                p = prob.log_proba(fd["zva"], w, b).exp().cpu().numpy()
                auc = macro_auc_columns(p, Y[fd["va"]], nk)
                auc[~fd["ok"]] = np.nan
                yield auc

        return self._walk_grid(keys, t, fold_aucs)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities (m, T, K_max); classes a task lacks get 0."""
        if not hasattr(self, "w_"):
            raise ValueError("this BatchedMulticlassLogisticRegression is not fitted yet")
        X, work = self._new_rows(X)
        with _cpu_threads(self.device_, work), torch.no_grad():
            kx = kernel(X, self.X_fit_, self.mean_, self.scale_, self.device_)
            lp = self._prob.log_proba(self.basis_.project(kx), self.w_, self.b_)
            return lp.exp().cpu().numpy()


__all__ = ["FIT_TOL", "MODELS", "BatchedMulticlassLogisticRegression", "macro_auc_columns"]
