"""The trainer against scikit-learn on real CNN features of the synthetic atlas.

Slow (~60 s on 2 cores): renders a small synthetic atlas, runs the CNN on its sections, fits,
and refits 8 of the structure tasks with scikit-learn.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from ishwh import store, warehouse
from ishwh.fit import fit
from ishwh.fit import tasks as tasks_mod
from ishwh.fit.trainer import BatchedLogisticRegression, standardize_like


@pytest.mark.slow
def test_trainer_matches_sklearn_on_cnn_features(db_path):
    from ishwh.features import featurize
    from ishwh.synth import ingest_synthetic

    ingest_synthetic(db_path, preset="demo", progress=False, n_genes=90, stages=("E13.5",),
                     sections=(3, 4))
    (name,) = featurize(db_path, extractor="cnn", layers=["blocks.5"], progress=False).names
    (run,) = fit(db_path, name, "E13.5", progress=False)
    with warehouse.connect(db_path, read_only=True) as con:
        ids, x = store.read_experiment_features(con, name, "E13.5")
        tm = tasks_mod.structure_tasks(con, "E13.5", ids)
        split = dict(con.execute("select s.experiment_id, s.subset from splits s "
                                 "join runs r using (split_id) where r.run_id = ?",
                                 [run]).fetchall())
        level_means = [m for (m,) in con.execute(
            "select mean_auc from level_auc where run_id = ?", [run]).fetchall()]
    assert level_means and min(level_means) > 0.55       # real features carry signal
    test = np.array([split[int(e)] == "test" for e in ids])
    tr, te = tm.take_rows(np.flatnonzero(~test)), tm.take_rows(np.flatnonzero(test))
    n_pos, n_neg = tr.counts()
    te_pos, te_neg = te.counts()
    cols = np.flatnonzero((n_pos >= 3) & (n_neg >= 3) & (te_pos >= 1) & (te_neg >= 1))
    assert cols.size >= 20
    cols = cols[:: max(1, cols.size // 8)][:8]   # sklearn takes ~3 s a task here: 8 of them
    c = 1e-4
    est = BatchedLogisticRegression(C=c, device="cpu").fit(x[~test], tr.y[:, cols],
                                                            tr.mask[:, cols])
    ours = est.decision_function(x[test])
    a, b = standardize_like(x[~test], est), standardize_like(x[test], est)
    worst = 0.0
    for k, j in enumerate(cols):
        rows, trows = tr.mask[:, j], te.mask[:, j]
        sk = LogisticRegression(C=c, tol=1e-6, max_iter=2000).fit(a[rows], tr.y[rows, j])
        s_sk = sk.decision_function(b)
        worst = max(worst, abs(roc_auc_score(te.y[trows, j], s_sk[trows])
                               - roc_auc_score(te.y[trows, j], ours[trows, k])))
    assert worst <= 0.002
