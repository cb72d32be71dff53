"""From scores to probabilities and calls, for many tasks at once (numpy only, no DuckDB).

* :func:`platt` fits Platt scaling ``p = 1 / (1 + exp(-(a s + b)))`` per task by Newton's
  method on held-out scores, with Platt's smoothed targets ``(N+ + 1) / (N+ + 2)`` and
  ``1 / (N- + 2)`` (which keeps a task with separable held-out scores from getting an
  infinite slope) and a tiny ridge on ``a``.
* :func:`max_f1_threshold` picks per task the score threshold (``called = score >= t``) that
  maximises F1 on held-out scores.
* :func:`expected_calibration_error`: the pooled ECE over equal-width probability bins.
"""

from __future__ import annotations

import numpy as np


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def platt(scores: np.ndarray, y: np.ndarray, mask: np.ndarray, *, max_iter: int = 100,
          ridge: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Platt scaling of every column: ``(a, b)``, each (T,).

    ``scores``, ``y``, ``mask`` are (n, T); rows where ``mask`` is False (unlabeled, or no
    held-out score: NaN) are ignored. A task without both classes gets ``a = 1`` and ``b`` the
    smoothed log-odds of its prevalence.
    """
    s = np.where(mask, np.nan_to_num(scores), 0.0).astype(np.float64)
    m = mask.astype(np.float64)
    pos = (y > 0.5) & mask
    n_pos = pos.sum(0).astype(np.float64)
    n_neg = m.sum(0) - n_pos
    t_pos = (n_pos + 1.0) / (n_pos + 2.0)
    t_neg = 1.0 / (n_neg + 2.0)
    t = np.where(pos, t_pos, t_neg)
    a = np.ones(s.shape[1])
    b = np.log(t_pos * n_pos + t_neg * n_neg + 1e-12) - np.log(
        (1 - t_pos) * n_pos + (1 - t_neg) * n_neg + 1e-12)
    ok = (n_pos > 0) & (n_neg > 0)
    for _ in range(max_iter):
        p = _sigmoid(a * s + b)
        r = (p - t) * m
        w = p * (1 - p) * m
        ga = (r * s).sum(0) + ridge * a
        gb = r.sum(0)
        haa = (w * s * s).sum(0) + ridge
        hab = (w * s).sum(0)
        hbb = w.sum(0) + 1e-12
        det = haa * hbb - hab * hab
        det = np.where(det > 1e-300, det, 1e-300)
        da = (hbb * ga - hab * gb) / det
        db = (haa * gb - hab * ga) / det
        # Damped Newton: the logistic loss is convex; cap the step so no task overshoots.
        size = np.maximum(1.0, np.hypot(da, db) / 10.0)
        a = np.where(ok, a - da / size, a)
        b = np.where(ok, b - db / size, b)
        if np.max(np.where(ok, np.abs(da) + np.abs(db), 0.0), initial=0.0) < 1e-10:
            break
    return a, b


def apply_platt(scores: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Probabilities ``1 / (1 + exp(-(a s + b)))`` (broadcast over rows)."""
    return _sigmoid(a * np.asarray(scores, dtype=np.float64) + b)


def max_f1_threshold(scores: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per column, the score threshold ``t`` maximising F1 of ``score >= t`` (T,).

    Candidates are the held-out scores themselves; ties in F1 go to the highest threshold
    (fewest calls). A task without a positive gets ``+inf`` (never called).
    """
    t_out = np.full(scores.shape[1], np.inf)
    for j in range(scores.shape[1]):
        keep = mask[:, j] & np.isfinite(scores[:, j])
        s, yy = scores[keep, j], y[keep, j] > 0.5
        n_pos = int(yy.sum())
        if n_pos == 0:
            continue
        order = np.argsort(-s, kind="stable")
        s, yy = s[order], yy[order]
        # Only the last row of a run of equal scores is a valid cut (score >= t takes all).
        last = np.r_[s[1:] != s[:-1], True]
        tp = np.cumsum(yy)[last]
        called = (np.flatnonzero(last) + 1)
        f1 = 2.0 * tp / (called + n_pos)
        best = int(np.flatnonzero(f1 == f1.max())[0])
        t_out[j] = s[last][best]
    return t_out


def calibrate(oof: np.ndarray, y: np.ndarray, mask: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Platt ``(a, b)`` and the max-F1 call threshold of every task, on out-of-fold scores."""
    has_oof = mask & np.isfinite(oof)
    platt_a, platt_b = platt(oof, y, has_oof)
    return platt_a, platt_b, max_f1_threshold(oof, y, has_oof)


def expected_calibration_error(prob: np.ndarray, y: np.ndarray, n_bins: int = 10) -> float:
    """Pooled ECE: ``sum_b n_b / N * |mean p_b - mean y_b|`` over equal-width bins of p."""
    p = np.asarray(prob, dtype=np.float64).ravel()
    yy = np.asarray(y, dtype=np.float64).ravel()
    if p.size == 0:
        return float("nan")
    b = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    sp = np.bincount(b, weights=p, minlength=n_bins)
    sy = np.bincount(b, weights=yy, minlength=n_bins)
    return float(np.abs(sp - sy).sum() / p.size)


__all__ = ["apply_platt", "calibrate", "expected_calibration_error", "max_f1_threshold", "platt"]
