"""The batched multinomial and ordinal trainers against independent references."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from ishwh.fit.multiclass import BatchedMulticlassLogisticRegression, macro_auc_columns
from ishwh.fit.targets import merge_rare


def _data(n=160, m=80, d=60, t=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n + m, d)) * rng.uniform(0.5, 2, d) + rng.normal(0, 1, d)
    z = (x - x[:n].mean(0)) / x[:n].std(0)
    eta = z[:, :5] @ rng.standard_normal((5, t)) + rng.standard_normal((n + m, t))
    y = np.digitize(eta, [0.5, 1.5, 2.5])
    return x, y, n


def test_multinomial_equals_sklearn_with_unknown_labels():
    x, y, n = _data()
    y_tr = y[:n].copy()
    y_tr[np.random.default_rng(1).random(y_tr.shape) < 0.1] = -1      # unknown calls
    est = BatchedMulticlassLogisticRegression("multinomial", C=0.05, device="cpu",
                                              tol=1e-9).fit(x[:n], y_tr)
    prob = est.predict_proba(x[n:])
    mu, sd = x[:n].mean(0), x[:n].std(0)
    for j in range(y.shape[1]):
        rows = y_tr[:, j] >= 0
        sk = LogisticRegression(C=0.05, tol=1e-10, max_iter=5000).fit(
            ((x[:n] - mu) / sd)[rows], y_tr[rows, j])
        want = sk.predict_proba((x[n:] - mu) / sd)
        assert np.abs(prob[:, j, :want.shape[1]] - want).max() < 2e-4
    auc = macro_auc_columns(prob, y[n:], est.n_classes_)
    checked = 0
    for j in range(y.shape[1]):
        if np.unique(y[n:, j]).size < est.n_classes_[j]:
            continue
        checked += 1
        sk_auc = roc_auc_score(y[n:, j], prob[:, j, :est.n_classes_[j]], multi_class="ovr",
                               labels=list(range(est.n_classes_[j])))
        assert auc[j] == pytest.approx(sk_auc, abs=1e-12)
    assert checked >= 3


def _ordinal_reference(z, y, k, c):
    """The cumulative logit model by scipy L-BFGS on the full features (no basis)."""
    d = z.shape[1]

    def f(p):
        w, th = p[:d], np.cumsum(np.concatenate([p[d:d + 1], np.exp(p[d + 1:])]))
        a = th[None, :] - (z @ w)[:, None]                      # (n, k-1)
        cum = np.concatenate([np.zeros((len(y), 1)), expit(a), np.ones((len(y), 1))], 1)
        p_y = cum[np.arange(len(y)), y + 1] - cum[np.arange(len(y)), y]
        return c * -np.log(np.maximum(p_y, 1e-300)).sum() + 0.5 * w @ w

    p0 = np.concatenate([np.zeros(d), [-1.0], np.zeros(k - 2)])
    res = minimize(f, p0, method="L-BFGS-B", options={"maxiter": 20000, "ftol": 1e-15,
                                                        "gtol": 1e-10})
    return res.x[:d], np.cumsum(np.concatenate([res.x[d:d + 1], np.exp(res.x[d + 1:])]))


def test_ordinal_equals_an_independent_cumulative_logit_fit():
    x, y, n = _data(t=2, d=12)
    est = BatchedMulticlassLogisticRegression("ordinal", C=0.1, device="cpu", tol=1e-10
                                              ).fit(x[:n], y[:n])
    prob = est.predict_proba(x[n:])
    assert np.allclose(prob.sum(2), 1.0)
    z = (x - x[:n].mean(0)) / x[:n].std(0)
    for j in range(2):
        k = est.n_classes_[j]
        w, th = _ordinal_reference(z[:n], y[:n, j], k, 0.1)
        a = th[None, :] - (z[n:] @ w)[:, None]
        cum = np.concatenate([np.zeros((len(a), 1)), expit(a), np.ones((len(a), 1))], 1)
        assert np.abs(prob[:, j, :k] - np.diff(cum, axis=1)).max() < 1e-3


def test_inner_cv_picks_a_grid_value_and_orders_thresholds():
    x, y, n = _data(t=4)
    est = BatchedMulticlassLogisticRegression("ordinal", device="cpu").fit(
        x[:n], y[:n], groups=[1, 1, 2, 2])
    assert set(est.C_) <= set(est.Cs)
    assert est.C_[0] == est.C_[1] and est.C_[2] == est.C_[3]
    p = est.predict_proba(x[n:])
    assert np.allclose(p.sum(2), 1.0) and (p >= 0).all()
    assert np.nanmean(macro_auc_columns(p, y[n:], est.n_classes_)) > 0.7


def test_bad_arguments_name_the_parameter():
    x, y, n = _data(t=2)
    with pytest.raises(ValueError, match="model"):
        BatchedMulticlassLogisticRegression("probit").fit(x[:n], y[:n])
    y1 = y[:n].copy()
    y1[y1[:, 0] == 1, 0] = 0
    with pytest.raises(ValueError, match="class"):
        BatchedMulticlassLogisticRegression(C=1.0).fit(x[:n], y1, n_classes=[4, 4])


@pytest.mark.parametrize(("counts", "ordinal", "want"), [
    ([50, 10, 10, 10], True, [0, 1, 2, 3]),           # nothing rare
    ([50, 10, 10, 2], True, [0, 1, 2, 2]),            # high -> medium
    ([50, 2, 10, 10], True, [0, 2, 2, 3]),            # low -> medium (never into undetected)
    ([50, 10, 0, 10], True, [0, 1, 1, 3]),            # absent medium -> the larger neighbour
    ([50, 1, 1, 1], True, [0, 2, 2, 2]),              # three rare grades end as one class
    ([50, 2, 10, 20], False, [0, 3, 2, 3]),           # pattern: into the most common
])
def test_merge_rare_rule(counts, ordinal, want):
    mapping, why = merge_rare(np.array(counts), ordinal)
    assert why is None
    assert mapping.tolist() == want


def test_merge_rare_skips_structures_without_both_sides():
    assert merge_rare(np.array([2, 10, 10, 10]), True)[1].startswith("2 undetected")
    assert merge_rare(np.array([30, 1, 1, 0]), False)[1].startswith("2 detected")
