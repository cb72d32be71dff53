"""The trainer's scale floor: a feature almost constant on the training rows is not blown up
on new rows (docs/annotate.md, calibration), and the folded models still reproduce the
trainer's scores."""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

from cli.app import app
from ishwh.fit.trainer import BatchedLogisticRegression, folded_weights


def _data(seed=0, n=120, d=60):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    X[:, :20] = 0.0
    X[0, :20] = 1.0                       # nonzero on one training row only (a border cell)
    y = (X[:, 20] + 0.5 * rng.standard_normal(n) > 0).astype(float)
    new = rng.standard_normal((30, d)).astype(np.float32)
    new[:, :20] = 1.0                     # new rows that have those features
    return X, y, new


def test_floor_bounds_new_rows_and_folded_weights_reproduce_scores():
    X, y, new = _data()
    plain = BatchedLogisticRegression(C=1.0).fit(X, y[:, None])
    floored = BatchedLogisticRegression(C=1.0, scale_floor=1.0).fit(X, y[:, None])
    sd = X.std(0)
    # the border features: divided by the median std instead of their own tiny std
    assert np.allclose(floored.scale_[:20], np.median(sd[sd > 0]), rtol=1e-5)
    assert np.allclose(floored.scale_[20:], np.maximum(sd[20:], np.median(sd[sd > 0])),
                       rtol=1e-5)
    # what the border features add to a new row's score
    bare = new.copy()
    bare[:, :20] = X[1, :20]
    add_plain = np.abs(plain.decision_function(new) - plain.decision_function(bare)).max()
    add_floor = np.abs(floored.decision_function(new) - floored.decision_function(bare)).max()
    assert add_floor < add_plain / 2
    w, b = folded_weights(floored)
    assert np.abs(new.astype(np.float64) @ w[0].astype(np.float64) + b[0]
                  - floored.decision_function(new)[:, 0]).max() < 1e-4


def test_scale_floor_is_refused_where_it_does_not_apply(tmp_path):
    res = CliRunner().invoke(app, ["fit", "--features", "grid", "--stage", "E11.5",
                                   "--scale-floor", "-1", "--db", str(tmp_path / "w.duckdb")])
    assert res.exit_code != 0
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "--scale-floor" in lines[0] and "unexpected" not in lines[0]
