"""Train/test splits that keep every structure's classes balanced (numpy only, no DuckDB).

A split assigns *units* (genes: all experiments of a gene at a stage go to the same side, so
gene-level tasks cannot leak) to train or test. Its inputs are two count matrices per unit and
task: ``pos[u, t]`` and ``neg[u, t]`` (how many of the unit's experiments are positive /
negative for task ``t``; 0 where unknown).

Two methods:

* :func:`paper_split` — the procedure of Zeng et al. (2015) as we read it: draw random 2/3–1/3
  candidates; accept the first whose *class ratio* (positives / negatives) in train and in test
  agree for every task within a threshold (``min(r_train, r_test) / max(r_train, r_test) >=
  threshold``); after ``max_tries`` (5,000) failed candidates lower the threshold and go on.
  Tasks with fewer than ``min_count`` positives or negatives overall cannot be balanced and are
  not checked.
* :func:`stratified_split` (the default) — iterative multi-label stratification (Sechidis,
  Tsoumakas & Vlahavas 2011) over the 2T "labels" {positive for t, negative for t}: the rarest
  label is distributed first, each of its units to the side that still wants most of it. It
  balances rare structures far better than rejection sampling can.

:func:`balance` scores a split the same way for both methods (used in tests and benchmarks; the
``split_balance`` SQL view computes the same numbers in the warehouse).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

TEST_SIZE = 1 / 3


@dataclass
class SplitResult:
    """``test[u]`` is True for units in the test set; ``params`` records how it was made."""

    test: np.ndarray
    params: dict = field(default_factory=dict)


def _check(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pos = np.asarray(pos, dtype=np.float64)
    neg = np.asarray(neg, dtype=np.float64)
    if pos.ndim != 2 or pos.shape != neg.shape:
        raise ValueError("pos and neg must be count matrices of the same shape (units, tasks)")
    if (pos < 0).any() or (neg < 0).any():
        raise ValueError("pos and neg must be non-negative counts")
    return pos, neg


def iterative_stratification(
    counts: np.ndarray, ratios: np.ndarray | list[float], rng: np.random.Generator
) -> np.ndarray:
    """Assign each unit (row of ``counts``) to one of ``len(ratios)`` subsets.

    ``counts[u, l]`` is how many examples of label ``l`` unit ``u`` carries. Sechidis et al.'s
    algorithm: repeatedly take the label with the fewest unassigned units and give each of
    those units to the subset whose remaining demand for that label is largest (ties: largest
    remaining demand in units, then random). Returns the subset index of every unit.
    """
    counts = np.asarray(counts, dtype=np.float64)
    ratios = np.asarray(ratios, dtype=np.float64)
    ratios = ratios / ratios.sum()
    n_units, _ = counts.shape
    want = np.outer(ratios, counts.sum(0))           # (k, L) examples each subset still wants
    want_units = ratios * n_units                     # (k,) units each subset still wants
    has = counts > 0
    n_left = has.sum(0).astype(np.int64)              # unassigned units carrying each label
    assign = np.full(n_units, -1, dtype=np.int64)
    order_noise = rng.random(n_units)                 # random order within a label
    while True:
        live = np.flatnonzero(n_left > 0)
        if live.size == 0:
            break
        label = live[np.argmin(n_left[live])]
        units = np.flatnonzero(has[:, label] & (assign < 0))
        for u in units[np.argsort(order_noise[units])]:
            w = want[:, label]
            best = np.flatnonzero(w == w.max())
            if best.size > 1:
                wu = want_units[best]
                best = best[wu == wu.max()]
            s = best[0] if best.size == 1 else rng.choice(best)
            assign[u] = s
            want[s] -= counts[u]
            want_units[s] -= 1
            n_left -= has[u]
    # Units without any label: fill the subsets that still want units.
    for u in np.flatnonzero(assign < 0):
        s = int(np.argmax(want_units))
        assign[u] = s
        want_units[s] -= 1
    return assign


def stratified_split(
    pos: np.ndarray, neg: np.ndarray, *, test_size: float = TEST_SIZE, seed: int = 0
) -> SplitResult:
    """The default split: iterative stratification over positives and negatives of all tasks."""
    pos, neg = _check(pos, neg)
    if not 0 < test_size < 1:
        raise ValueError("test_size must be between 0 and 1")
    rng = np.random.default_rng(seed)
    assign = iterative_stratification(
        np.concatenate([pos, neg], axis=1), [1 - test_size, test_size], rng
    )
    return SplitResult(
        test=assign == 1,
        params={"method": "stratified", "test_size": test_size, "seed": seed,
                "algorithm": "iterative stratification (Sechidis et al. 2011)"},
    )


def _ratio_agreement(pos, neg, test_mask_batch, checked) -> np.ndarray:
    """Worst train/test class-ratio agreement over the checked tasks, per candidate."""
    tm = test_mask_batch.astype(np.float64)           # (b, u)
    pos_te, neg_te = tm @ pos[:, checked], tm @ neg[:, checked]
    pos_tr = pos[:, checked].sum(0) - pos_te
    neg_tr = neg[:, checked].sum(0) - neg_te
    with np.errstate(divide="ignore", invalid="ignore"):
        r_tr = pos_tr / neg_tr
        r_te = pos_te / neg_te
        agree = np.minimum(r_tr, r_te) / np.maximum(r_tr, r_te)
    agree = np.where(np.isfinite(agree), agree, 0.0)
    return agree.min(axis=1) if agree.shape[1] else np.ones(len(tm))


def paper_split(
    pos: np.ndarray,
    neg: np.ndarray,
    *,
    test_size: float = TEST_SIZE,
    seed: int = 0,
    threshold: float = 0.9,
    step: float = 0.1,
    max_tries: int = 5000,
    min_count: int = 3,
    batch: int = 250,
) -> SplitResult:
    """The paper's rejection sampling: random candidates until every task's ratio agrees.

    Starts at ``threshold``; after ``max_tries`` rejected candidates lowers it by ``step``.
    If even threshold 0 is not reached (some task always lacks a class on one side), the
    candidate with the best worst-case agreement seen is returned.
    """
    pos, neg = _check(pos, neg)
    rng = np.random.default_rng(seed)
    n_units = pos.shape[0]
    n_test = int(round(test_size * n_units))
    checked = np.flatnonzero((pos.sum(0) >= min_count) & (neg.sum(0) >= min_count))
    tau = threshold
    best_mask, best_score, tries_total = None, -1.0, 0
    while True:
        tries = 0
        while tries < max_tries:
            b = min(batch, max_tries - tries)
            # b random candidates at once: the first n_test of a random permutation are test.
            keys = rng.random((b, n_units))
            cand = np.zeros((b, n_units), dtype=bool)
            np.put_along_axis(cand, np.argpartition(keys, n_test - 1, axis=1)[:, :n_test],
                              True, axis=1)
            score = _ratio_agreement(pos, neg, cand, checked)
            ok = np.flatnonzero(score >= tau)
            if ok.size:
                i = ok[0]
                tries_total += tries + int(i) + 1
                return SplitResult(test=cand[i], params={
                    "method": "paper", "test_size": test_size, "seed": seed,
                    "threshold": round(tau, 6), "start_threshold": threshold, "step": step,
                    "max_tries": max_tries, "tries": tries_total, "min_count": min_count,
                    "worst_ratio_agreement": float(score[i])})
            j = int(np.argmax(score))
            if score[j] > best_score:
                best_score, best_mask = float(score[j]), cand[j]
            tries += b
        tries_total += tries
        tau = round(tau - step, 10)
        if tau < 0:
            return SplitResult(test=best_mask, params={
                "method": "paper", "test_size": test_size, "seed": seed, "threshold": 0.0,
                "start_threshold": threshold, "step": step, "max_tries": max_tries,
                "tries": tries_total, "min_count": min_count,
                "worst_ratio_agreement": best_score})


def make_split(
    method: str, pos: np.ndarray, neg: np.ndarray, *, seed: int = 0,
    test_size: float = TEST_SIZE,
) -> SplitResult:
    """Dispatch on ``method`` ('stratified' or 'paper')."""
    if method == "stratified":
        return stratified_split(pos, neg, test_size=test_size, seed=seed)
    if method == "paper":
        return paper_split(pos, neg, test_size=test_size, seed=seed)
    raise ValueError(f"split must be 'stratified' or 'paper', not {method!r}")


def balance(pos: np.ndarray, neg: np.ndarray, test: np.ndarray, min_count: int = 3) -> dict:
    """How balanced a split is, over tasks with >= ``min_count`` positives and negatives.

    ``worst_ratio_agreement``: min over tasks of min(r_train, r_test) / max(r_train, r_test),
    r = positives / negatives (1 = identical class ratios, 0 = a side lacks a class);
    ``worst_share_error``: max over tasks and classes of |test share - test_size|;
    ``n_test_missing_class``: tasks whose test side lacks a class.
    """
    pos, neg = _check(pos, neg)
    test = np.asarray(test, dtype=bool)
    checked = np.flatnonzero((pos.sum(0) >= min_count) & (neg.sum(0) >= min_count))
    agree = _ratio_agreement(pos, neg, test[None, :], checked)[0]
    p_te, n_te = pos[test][:, checked].sum(0), neg[test][:, checked].sum(0)
    p_all, n_all = pos[:, checked].sum(0), neg[:, checked].sum(0)
    share = test.mean() if test.size else 0.0
    err = np.maximum(np.abs(p_te / p_all - share), np.abs(n_te / n_all - share))
    return {
        "n_tasks_checked": int(checked.size),
        "test_fraction": float(share),
        "worst_ratio_agreement": float(agree),
        "worst_share_error": float(err.max()) if err.size else 0.0,
        "n_test_missing_class": int(((p_te == 0) | (n_te == 0)).sum()),
    }
