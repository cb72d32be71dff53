"""The batched trainer against scikit-learn, per task, on realistic-sized data."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from ishwh.fit.trainer import BatchedLogisticRegression, auc_columns, standardize_like


def _data(n=300, m=150, d=2000, t=50, seed=0, missing=0.0, noise=2.0):
    """Labels depend linearly on a few dims + noise; some entries unknown."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n + m, d)).astype(np.float32) * rng.uniform(0.5, 3, d).astype(
        np.float32) + rng.normal(0, 2, d).astype(np.float32)
    w = rng.standard_normal((10, t))
    logit = (x[:, :10] - x[:, :10].mean(0)) / x[:, :10].std(0) @ w
    y = (logit + noise * rng.standard_normal((n + m, t)) > rng.normal(0.5, 1.5, t)).astype(float)
    mask = rng.random(y.shape) >= missing
    return x[:n], x[n:], y[:n], y[n:], mask[:n], mask[n:]


def _compare_with_sklearn(c, **data):
    """Max per-task |test AUC(ours) - test AUC(sklearn)| and max relative score gap."""
    xtr, xte, ytr, yte, mtr, mte = _data(**data)
    est = BatchedLogisticRegression(C=c, device="cpu").fit(xtr, ytr, mtr)
    ours = est.decision_function(xte)
    a, b = standardize_like(xtr, est), standardize_like(xte, est)
    worst, worst_score = 0.0, 0.0
    for j in range(ytr.shape[1]):
        rows = mtr[:, j]
        sk = LogisticRegression(C=c, tol=1e-6, max_iter=2000).fit(a[rows], ytr[rows, j])
        s_sk = sk.decision_function(b)
        te = mte[:, j]
        diff = abs(roc_auc_score(yte[te, j], s_sk[te]) - roc_auc_score(yte[te, j], ours[te, j]))
        worst = max(worst, diff)
        worst_score = max(worst_score, np.abs(s_sk - ours[:, j]).max() / (np.abs(s_sk).max()))
    return worst, worst_score


@pytest.mark.parametrize("c", [1e-3, 1e-1])
def test_matches_sklearn_per_task_auc_small(c):
    worst, worst_score = _compare_with_sklearn(c, n=200, m=100, d=300, t=15, missing=0.1)
    assert worst <= 0.002
    assert worst_score < 1e-2      # the models themselves agree, not only their rankings


@pytest.mark.slow
def test_matches_sklearn_per_task_auc_realistic():
    """n=300 train, d=2000, 50 tasks, 10% unknown labels (about 25 s: sklearn is the slow side)."""
    worst, worst_score = _compare_with_sklearn(3e-3, missing=0.1)
    assert worst <= 0.002
    assert worst_score < 1e-2


def test_coef_equals_dual_form_and_sklearn_small():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((60, 8))
    y = (x[:, 0] + 0.5 * rng.standard_normal(60) > 0).astype(float)
    est = BatchedLogisticRegression(C=0.5, device="cpu").fit(x, y)
    sk = LogisticRegression(C=0.5, tol=1e-10, max_iter=10000).fit(standardize_like(x, est), y)
    np.testing.assert_allclose(est.coef_[0], sk.coef_[0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(est.intercept_[0], sk.intercept_[0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(est.predict_proba(x)[:, 0], sk.predict_proba(
        standardize_like(x, est))[:, 1], atol=1e-6)


def test_inner_cv_chooses_c_per_group_and_learns():
    xtr, xte, ytr, yte, mtr, mte = _data(n=240, m=120, d=400, t=12, seed=3, noise=0.5)
    groups = np.repeat([1, 2, 3], 4)
    est = BatchedLogisticRegression(Cs=(1e-4, 1e-2, 1.0), cv=3, device="cpu").fit(
        xtr, ytr, groups=groups)
    assert est.cv_scores_.shape == (3, 12)
    for g in (1, 2, 3):                       # one C per group
        assert len(set(est.C_[groups == g])) == 1
    auc = auc_columns(est.decision_function(xte), yte, np.ones_like(yte, dtype=bool))
    assert np.nanmean(auc) > 0.7
    per_task = BatchedLogisticRegression(Cs=(1e-4, 1e-2, 1.0), select="task", device="cpu")
    assert per_task.fit(xtr, ytr).C_.shape == (12,)


def test_auc_columns_matches_sklearn_with_mask_and_ties():
    rng = np.random.default_rng(5)
    s = rng.integers(0, 4, (40, 6)).astype(float)
    y = rng.random((40, 6)) < 0.4
    m = rng.random((40, 6)) < 0.8
    got = auc_columns(s, y, m)
    for j in range(6):
        assert got[j] == pytest.approx(roc_auc_score(y[m[:, j], j], s[m[:, j], j]), abs=1e-12)


def test_estimator_contract():
    x = np.random.default_rng(0).standard_normal((20, 3))
    y = np.r_[np.zeros(10), np.ones(10)]
    with pytest.raises(ValueError, match="not fitted"):
        BatchedLogisticRegression().decision_function(x)
    with pytest.raises(ValueError, match="select"):
        BatchedLogisticRegression(select="level").fit(x, y)
    with pytest.raises(ValueError, match="C must be positive"):
        BatchedLogisticRegression(C=-1.0).fit(x, y)
    with pytest.raises(ValueError, match="positive and negative"):
        BatchedLogisticRegression(C=1.0).fit(x, np.zeros(20))
    est = BatchedLogisticRegression(C=1.0, device="cpu")
    assert est.fit(x, y) is est
    with pytest.raises(ValueError, match="3 columns"):
        est.decision_function(np.zeros((2, 4)))


def test_folded_weights_equal_the_decision_function():
    """Stored models (raw-feature weights, standardisation folded in) score as the trainer."""
    from ishwh.fit.trainer import folded_weights

    rng = np.random.default_rng(5)
    f = rng.standard_normal((400, 4))
    x = (np.abs(f @ rng.standard_normal((4, 3000)) + rng.standard_normal((400, 3000))) * 3
         + 1).astype(np.float32)
    y = f @ rng.standard_normal((4, 20)) + rng.standard_normal((400, 20)) > 0.5
    est = BatchedLogisticRegression(C=1e-3, device="cpu").fit(x[:300], y[:300])
    w, b = folded_weights(est)
    ours = x[300:].astype(np.float64) @ w.astype(np.float64).T + b
    assert np.abs(ours - est.decision_function(x[300:])).max() <= 1e-5
