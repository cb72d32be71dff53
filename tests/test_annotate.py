"""Stored models, production and cross-stage fits, and `ishwh annotate`, on a toy warehouse
with several stages (one unannotated) and a structure hierarchy."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score
from toy_warehouse import make_toy_warehouse
from typer.testing import CliRunner

from cli.app import app
from ishwh import annotate as annotate_mod
from ishwh import store, warehouse
from ishwh.annotate import annotate
from ishwh.fit import calibration, fit
from ishwh.fit import models as models_mod

STAGES = ("E11.5", "E13.5", "E15.5", "P4")
LEVELS = (3, 6, 12)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    path = tmp_path_factory.mktemp("annotate") / "wh.duckdb"
    atlas = make_toy_warehouse(path, n_genes=200, stages=STAGES, structures_per_level=LEVELS,
                               dim=32, label_noise=0.5, n_gene_tasks=2)
    sids = atlas.structure_ids.tolist()
    l1, l2, l3 = sids[:3], sids[3:9], sids[9:]
    with warehouse.connect(path) as con, warehouse.transaction(con):
        # a hierarchy: level 2 under level 1, level 3 under level 2
        for i, s in enumerate(l2):
            con.execute("update structures set parent_id = ? where structure_id = ?",
                        [l1[i % 3], s]).fetchall()
        for i, s in enumerate(l3):
            con.execute("update structures set parent_id = ? where structure_id = ?",
                        [l2[i % 6], s]).fetchall()
        # P4 is unannotated, as in the atlas
        con.execute("delete from annotations where experiment_id in "
                    "(select experiment_id from experiments where stage = 'P4')").fetchall()
        # a second feature set with vectors at E11.5 only
        fsid = con.execute("insert into feature_sets (name, extractor, dim, finished_at) "
                           "values ('grid.e11', 'grid', 8, current_timestamp) "
                           "returning feature_set_id").fetchall()[0][0]
        ids = atlas.experiment_ids["E11.5"]
        store.write_experiment_features(
            con, fsid, ids, np.random.default_rng(3).standard_normal((len(ids), 8)))
    return path


def _q(path, sql, params=None):
    with warehouse.connect(path, read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def _run_models(path, run_id):
    with warehouse.connect(path, read_only=True) as con:
        return models_mod.read_models(con, run_id)


@pytest.mark.parametrize("norm", ["pooled", "stage"])
def test_stored_models_reproduce_the_runs_test_scores(toy, norm):
    (run,) = fit(toy, "grid.toy", "E11.5", tasks="all", feature_norm=norm, progress=False)
    m = _run_models(toy, run)
    with warehouse.connect(toy, read_only=True) as con:
        ids, X = models_mod.stage_vectors(con, "grid.toy", "E11.5", norm)
    scores = m.scores(X)
    pred = _q(toy, "select experiment_id, structure_id, score from predictions "
                   "where run_id = ?", [run])
    assert len(pred) > 500
    row = {int(e): i for i, e in enumerate(ids)}
    col = {int(s): j for j, s in enumerate(m.structure_ids)}
    diff = [abs(scores[row[e], col[s]] - sc) for e, s, sc in pred]
    assert max(diff) <= 1e-5
    # one model per fitted task, gene tasks included; weights span the feature set
    n_fitted = _q(toy, "select count(*) from run_tasks where run_id = ? and status = 'fitted'",
                  [run])[0][0]
    assert _q(toy, "select count(*), min(len(weights)), max(len(weights)) from models "
                   "where run_id = ?", [run]) == [(n_fitted, 32, 32)]
    assert _q(toy, "select count(*) from models where run_id = ? and task_kind = 'gene'",
              [run]) == [(2,)]


def test_holdout_none_stores_out_of_fold_scores_for_every_annotated_experiment(toy):
    (run,) = fit(toy, "grid.toy", "E13.5", holdout="none", progress=False)
    subsets = _q(toy, "select distinct subset from predictions where run_id = ?", [run])
    assert subsets == [("oof",)]
    # every labelled (experiment, structure) of the stage has an out-of-fold score
    n_labels = _q(toy, "select count(*) from labels join experiments using (experiment_id) "
                       "where stage = 'E13.5'")[0][0]
    assert _q(toy, "select count(*) from predictions where run_id = ?", [run])[0][0] == n_labels
    hold, n_train, folds = _q(toy, "select holdout, n_train, n_folds from run_training "
                                   "where run_id = ?", [run])[0]
    assert (hold, n_train, folds) == ("none", 200, 5)
    # out of fold, not in sample: the stored (full) models score the same experiments better
    oof_auc = _q(toy, "select avg(auc) from structure_auc where run_id = ?", [run])[0][0]
    m = _run_models(toy, run)
    with warehouse.connect(toy, read_only=True) as con:
        ids, X = models_mod.stage_vectors(con, "grid.toy", "E13.5", m.feature_norm)
        lab = con.execute("select experiment_id, structure_id, detected from labels join "
                          "experiments using (experiment_id) where stage = 'E13.5'").fetchall()
    from sklearn.metrics import roc_auc_score

    s_in = m.scores(X)
    row = {int(e): i for i, e in enumerate(ids)}
    aucs = []
    for j, s in enumerate(m.structure_ids):
        ys = [(s_in[row[e], j], d) for e, st, d in lab if st == s]
        aucs.append(roc_auc_score([d for _, d in ys], [v for v, _ in ys]))
    assert oof_auc < np.mean(aucs) - 0.01
    assert 0.6 < oof_auc


def test_leave_one_stage_out_and_transfer_view(toy):
    (within,) = fit(toy, "grid.toy", "E11.5", progress=False)
    (transfer,) = fit(toy, "grid.toy", "E11.5", train_stages="E15.5,E13.5",
                      feature_norm="stage", progress=False)
    assert transfer != within
    assert _q(toy, "select train_stages, holdout from run_training where run_id = ?",
              [transfer]) == [(["E13.5", "E15.5"], "split")]
    # trained on every labelled experiment of E13.5 and E15.5, none of E11.5
    assert _q(toy, "select n_train from run_training where run_id = ?", [transfer]) == [(400,)]
    # evaluated on the same test experiments as the within-stage run
    same = _q(toy, "select (select list(distinct experiment_id order by experiment_id) "
                   "from predictions where run_id = ?) = (select list(distinct experiment_id "
                   "order by experiment_id) from predictions where run_id = ?)",
              [within, transfer])
    assert same == [(True,)]
    rows = _q(toy, "select level, scheme, transfer_auc, within_auc from transfer_auc "
                   "where run_id = ? order by level", [transfer])
    assert [r[0] for r in rows] == [1, 2, 3]
    assert all(s == "transfer" and w is not None and 0.55 < t for _, s, t, w in rows), rows
    # transfer runs stay out of the report's Table 1 cells
    assert _q(toy, "select is_default from selected_runs where run_id = ?",
              [transfer]) == [(False,)]


def test_annotate_unannotated_stage_idempotent_and_consistent(toy):
    (run,) = fit(toy, "grid.toy", "E15.5", train_stages="E11.5,E13.5,E15.5", holdout="none",
                 feature_norm="stage", progress=False)
    out = annotate(toy, run, "P4")
    n_models = _q(toy, "select count(*) from models where run_id = ? "
                       "and task_kind = 'structure'", [run])[0][0]
    assert out["n_experiments"] == 200 and out["n_structures"] == n_models
    rows = _q(toy, "select count(*), min(probability), max(probability) from "
                   "predicted_annotations where run_id = ?", [run])[0]
    assert rows[0] == 200 * n_models and 0 <= rows[1] and rows[2] <= 1
    # probability and call follow the stored Platt scaling and threshold
    bad = _q(toy, "select count(*) from predicted_annotations p join models m "
                  "using (run_id, structure_id) where p.run_id = ? and (abs(p.probability - "
                  "1 / (1 + exp(-(m.platt_a * p.score + m.platt_b)))) > 1e-9 "
                  "or p.called <> (p.score >= m.threshold))", [run])
    assert bad == [(0,)]
    before = _q(toy, "select * from predicted_annotations where run_id = ? "
                     "order by experiment_id, structure_id", [run])
    annotate(toy, run, "P4")
    assert _q(toy, "select * from predicted_annotations where run_id = ? "
                   "order by experiment_id, structure_id", [run]) == before
    (v,) = _q(toy, "select n_probability_violations_before, n_probability_violations_after, "
                   "n_call_violations_before, n_call_violations_after from "
                   "hierarchy_violations where run_id = ? and stage = 'P4'", [run])
    assert v[0] > 0 and v[0] == v[1] and v[2] == v[3]
    annotate(toy, run, "P4", consistent=True)
    (v2,) = _q(toy, "select n_probability_violations_before, n_probability_violations_after, "
                    "n_call_violations_before, n_call_violations_after from "
                    "hierarchy_violations where run_id = ? and stage = 'P4'", [run])
    assert v2[0] == v[0] and v2[1] == 0 and v2[2] == v[2] and v2[3] == 0
    assert _q(toy, "select count(*) from predicted_annotations where run_id = ?",
              [run])[0][0] == 200 * n_models
    # a parent ends at the max of itself and its descendants, nothing else moves
    moved = _q(toy, "select count(*) from predicted_annotations where run_id = ? "
                    "and probability < raw_probability", [run])
    assert moved == [(0,)]


def test_a_failed_write_leaves_the_previous_annotations(toy, monkeypatch):
    (run,) = fit(toy, "grid.toy", "E13.5", progress=False)
    annotate(toy, run, "E11.5")
    before = _q(toy, "select count(*), sum(score) from predicted_annotations where run_id = ?",
                [run])
    # the insert fails inside the transaction, after the old rows were deleted
    monkeypatch.setattr(annotate_mod, "apply_platt", lambda s, a, b: np.full(s.shape, 2.0))
    with pytest.raises(Exception, match="(?i)constraint"):
        annotate(toy, run, "E11.5")
    assert _q(toy, "select count(*), sum(score) from predicted_annotations where run_id = ?",
              [run]) == before


def _cli(toy, *args):
    res = CliRunner().invoke(app, ["annotate", "--db", str(toy), *args])
    return res.exit_code, res.output.strip()


def test_cli_annotate_and_bad_input_write_nothing(toy):
    (run,) = fit(toy, "grid.toy", "E11.5", progress=False)
    (run_e11,) = fit(toy, "grid.e11", "E11.5", progress=False)
    code, out = _cli(toy, "--run", str(run), "--stage", "P4")
    assert code == 0, out
    assert "annotated 200 experiment(s) of P4" in out
    count = _q(toy, "select count(*) from predicted_annotations")
    cases = [
        (["--run", "9999", "--stage", "P4"], "no run 9999"),
        (["--run", str(run_e11), "--stage", "P4"],
         "no experiment at stage P4 has a vector of feature set 'grid.e11'"),
        (["--run", str(run), "--stage", "P28"], "no experiments at stage P28"),
        (["--run", str(run), "--stage", "P5"], "unknown stage 'P5'"),
    ]
    for args, msg in cases:
        code, out = _cli(toy, *args)
        assert code == 1 and msg in out and len(out.splitlines()) == 1, out
        assert "unexpected" not in out
    with warehouse.connect(toy) as con:
        con.execute("update runs set status = 'running' where run_id = ?", [run]).fetchall()
    try:
        code, out = _cli(toy, "--run", str(run), "--stage", "P4")
        assert code == 1 and f"run {run} is not finished" in out and len(out.splitlines()) == 1
    finally:
        with warehouse.connect(toy) as con:
            con.execute("update runs set status = 'finished' where run_id = ?",
                        [run]).fetchall()
    assert _q(toy, "select count(*) from predicted_annotations") == count


def test_platt_threshold_and_ece_against_references():
    rng = np.random.default_rng(0)
    s = rng.standard_normal((20000, 2))
    y = rng.random(s.shape) < 1 / (1 + np.exp(-(np.array([2.0, 0.5]) * s - [1.0, 0.3])))
    a, b = calibration.platt(s, y, np.ones_like(y))
    assert np.allclose(a, [2.0, 0.5], atol=0.08) and np.allclose(b, [-1.0, -0.3], atol=0.08)
    p = calibration.apply_platt(s, a, b)
    assert calibration.expected_calibration_error(p, y) < 0.02
    # a constant 0.5 against a 30 % prevalence is off by 0.2
    yy = rng.random(1000) < 0.3
    ece = calibration.expected_calibration_error(np.full(1000, 0.5), yy)
    assert ece == pytest.approx(abs(0.5 - yy.mean()))
    # max F1 over every cut equals the brute force with scikit-learn
    sc = np.round(rng.standard_normal((300, 3)), 1)             # ties included
    yt = rng.random((300, 3)) < 1 / (1 + np.exp(-2 * sc))
    mask = rng.random((300, 3)) < 0.9
    t = calibration.max_f1_threshold(sc, yt, mask)
    for j in range(3):
        m = mask[:, j]
        best = max(f1_score(yt[m, j], sc[m, j] >= c) for c in np.unique(sc[m, j]))
        assert f1_score(yt[m, j], sc[m, j] >= t[j]) == pytest.approx(best)


def test_cli_fit_production_models_and_refusals(toy):
    res = CliRunner().invoke(app, ["fit", "--db", str(toy), "--features", "grid.toy",
                                   "--stage", "P4", "--train-stages", "E11.5,E13.5",
                                   "--holdout", "none", "--feature-norm", "stage", "--json"])
    assert res.exit_code == 0, res.output
    run = __import__("json").loads(res.stdout)["run_ids"][0]
    assert _q(toy, "select r.stage, t.train_stages, t.holdout, t.feature_norm from runs r "
                   "join run_training t using (run_id) where run_id = ?",
              [run]) == [("P4", ["E11.5", "E13.5"], "none", "stage")]
    # P4 has no labels: no predictions, but models for annotate
    assert _q(toy, "select count(*) from predictions where run_id = ?", [run]) == [(0,)]
    assert _q(toy, "select count(*) > 0 from models where run_id = ?", [run]) == [(True,)]
    n_runs = _q(toy, "select count(*) from runs")
    for args, msg in [
        (["--stage", "P4"], "stage P4 has no labels to evaluate a split on"),
        (["--stage", "E11.5", "--train-stages", "E12"], "unknown training stage 'E12'"),
        (["--stage", "E11.5", "--holdout", "all"], "holdout must be 'split' or 'none'"),
        (["--stage", "E11.5", "--holdout", "none", "--repeats", "2"], "no split to repeat"),
    ]:
        res = CliRunner().invoke(app, ["fit", "--db", str(toy), "--features", "grid.toy",
                                       "--json", *args])
        out = res.output.strip()
        assert res.exit_code == 1 and msg in out and len(out.splitlines()) == 1, out
    assert _q(toy, "select count(*) from runs") == n_runs


def test_calibration_views_equal_python_and_held_out_ece_is_small(toy):
    (run,) = fit(toy, "grid.toy", "E11.5", tasks="all", progress=False)   # reused if made
    rows = _q(toy, "select p.score, p.detected, m.platt_a, m.platt_b from predictions p "
                   "join models m using (run_id, structure_id) where p.run_id = ?", [run])
    s, y, a, b = (np.array(c, dtype=float) for c in zip(*rows, strict=True))
    prob = calibration.apply_platt(s, a, b)
    ece = calibration.expected_calibration_error(prob, y)
    (sql_ece,) = _q(toy, "select ece from calibration_error where run_id = ? "
                         "and subset = 'test'", [run])[0]
    assert sql_ece == pytest.approx(ece, abs=1e-12)
    # held out: Platt was fitted on out-of-fold training scores, these are test experiments
    assert ece < 0.06
    bins = _q(toy, "select sum(n), sum(n * observed_rate) from reliability where run_id = ?",
              [run])[0]
    assert bins[0] == len(rows) and bins[1] == pytest.approx(y.sum())
