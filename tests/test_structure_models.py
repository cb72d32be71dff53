"""Stored models for structure-feature runs (``atlas.<what>``, ``atlas.<what>+<global>``):
one model per structure on its own columns, scored by ``ishwh annotate`` from the warehouse."""

from __future__ import annotations

import json

import numpy as np
import pytest
from toy_warehouse import make_toy_warehouse

from ishwh import store, warehouse
from ishwh.annotate import annotate
from ishwh.fit import fit
from ishwh.fit import models as models_mod

STAGES = ("E11.5", "E13.5", "P4")
K = 3


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A toy warehouse with a global set and a structure-feature set `atlas.toy` (K numbers
    per structure, the first two carrying the structure's call); P4 unannotated; one
    structure never seen on a registered section."""
    path = tmp_path_factory.mktemp("structure_models") / "wh.duckdb"
    make_toy_warehouse(path, n_genes=120, stages=STAGES, dim=16, n_gene_tasks=0)
    rng = np.random.default_rng(5)
    with warehouse.connect(path) as con, warehouse.transaction(con):
        sids = [s for (s,) in con.execute(
            "select structure_id from structures order by structure_id").fetchall()]
        fsid = con.execute(
            "insert into feature_sets (name, extractor, dim, params, finished_at) values "
            "('atlas.toy', 'atlas', ?, ?, current_timestamp) returning feature_set_id",
            [len(sids) * K, json.dumps({"stats": ["a", "b", "c"]})]).fetchall()[0][0]
        for i, s in enumerate(sids):
            con.execute("insert into feature_set_structures values (?, ?, ?, ?)",
                        [fsid, s, i, 0 if i == 1 else 5]).fetchall()
        for stage in STAGES:
            rows = con.execute(
                "select experiment_id, structure_id, pattern = 'full' from annotations "
                "join experiments using (experiment_id) where stage = ?", [stage]).fetchall()
            ids = np.array([e for (e,) in con.execute(
                "select experiment_id from experiments where stage = ? order by 1",
                [stage]).fetchall()])
            lab = np.zeros((ids.size, len(sids)))
            e_of = {int(e): i for i, e in enumerate(ids)}
            s_of = {int(s): i for i, s in enumerate(sids)}
            for e, s, d in rows:
                lab[e_of[e], s_of[s]] = d
            x = (rng.standard_normal((ids.size, len(sids), K)) * 0.6
                 + lab[:, :, None] * np.array([1.0, 0.5, 0.0]) + 0.2 * STAGES.index(stage))
            store.write_experiment_features(con, fsid, ids,
                                            x.reshape(ids.size, -1).astype(np.float32))
        # P4 is unannotated, as in the atlas
        con.execute("delete from annotations where experiment_id in "
                    "(select experiment_id from experiments where stage = 'P4')").fetchall()
    return path


def _check_reproduced(path, run, stage, subset):
    """annotate the stage from the stored models; its scores equal predictions.score."""
    annotate(path, run, stage, progress=False)
    with warehouse.connect(path, read_only=True) as con:
        got = con.execute(
            "select p.score, a.score from predictions p join predicted_annotations a "
            "using (run_id, experiment_id, structure_id) where p.run_id = ? and p.subset = ?",
            [run, subset]).fetchall()
        n_pred = con.execute("select count(*) from predictions where run_id = ?",
                             [run]).fetchall()[0][0]
    assert len(got) == n_pred > 300
    diff = np.abs(np.array(got)[:, 0] - np.array(got)[:, 1])
    assert diff.max() <= 1e-5


@pytest.mark.parametrize("features", ["atlas.toy", "atlas.toy+grid.toy"])
def test_structure_models_are_stored_and_reproduce_the_test_scores(toy, features):
    (run,) = fit(toy, features, "E11.5", progress=False)
    with warehouse.connect(toy, read_only=True) as con:
        m = models_mod.read_models(con, run)
        n_fitted, never = con.execute(
            "select count(*) filter (status = 'fitted'), count(*) filter (reason like "
            "'never seen%') from run_tasks where run_id = ?", [run]).fetchall()[0]
        auc = con.execute("select avg(auc) from structure_auc where run_id = ?",
                          [run]).fetchall()[0][0]
    assert never == 1 and len(m.tasks) == n_fitted > 5
    # each model reads its own K columns (+ the whole 16-dim global vector when combined)
    assert (m.local_width == K).all()
    assert m.weights.shape[1] == K + (16 if "+" in features else 0)
    assert auc > 0.8
    _check_reproduced(toy, run, "E11.5", "test")


def test_structure_production_models_annotate_an_unannotated_stage(toy):
    (run,) = fit(toy, "atlas.toy", "P4", train_stages="E11.5,E13.5", holdout="none",
                 feature_norm="stage", progress=False)
    out = annotate(toy, run, "P4", consistent=True, progress=False)
    assert out["n_experiments"] == 120 and out["n_structures"] > 5
    # out-of-fold predictions of a training stage, reproduced by annotate within 1e-5 only
    # where the models scored them: here, production models score E13.5 with full models
    (run2,) = fit(toy, "atlas.toy", "E13.5", train_stages="E11.5,E13.5", holdout="none",
                  progress=False)
    with warehouse.connect(toy, read_only=True) as con:
        subsets = con.execute("select distinct subset from predictions where run_id = ?",
                              [run2]).fetchall()
        ece = con.execute("select ece from calibration_error where run_id = ?",
                          [run2]).fetchall()
    assert subsets == [("oof",)] and ece and ece[0][0] < 0.1
    (run3,) = fit(toy, "atlas.toy+grid.toy", "E13.5", train_stages="E11.5", progress=False)
    _check_reproduced(toy, run3, "E13.5", "test")


def test_auto_feature_norm_rule_and_annotate_uses_the_runs_norm(toy):
    from ishwh.errors import InvalidInput
    from ishwh.fit.models import resolve_feature_norm

    assert resolve_feature_norm("auto", "E11.5", ["E11.5"], "split") == "pooled"
    assert resolve_feature_norm("auto", "E11.5", ["E13.5"], "split") == "stage"
    assert resolve_feature_norm("auto", "E11.5", ["E11.5", "E13.5"], "split") == "stage"
    assert resolve_feature_norm("auto", "E11.5", ["E11.5"], "none") == "stage"
    assert resolve_feature_norm("pooled", "E11.5", ["E13.5"], "split") == "pooled"
    with pytest.raises(InvalidInput):
        resolve_feature_norm("global", "E11.5", ["E11.5"], "split")
    # the default is auto: a transfer run records 'stage', and annotate scores a stage with
    # the run's normalisation (its scores of E13.5 equal the run's test predictions)
    (run,) = fit(toy, "grid.toy", "E13.5", train_stages="E11.5", progress=False)
    with warehouse.connect(toy, read_only=True) as con:
        assert con.execute("select feature_norm from run_training where run_id = ?",
                           [run]).fetchall() == [("stage",)]
    _check_reproduced(toy, run, "E13.5", "test")


def test_figures_get_annotates_calibrated_probabilities(toy):
    from ishwh.annotate import prediction_probabilities
    from ishwh.fit.calibration import apply_platt

    (run,) = fit(toy, "atlas.toy", "E13.5", progress=False)
    with warehouse.connect(toy, read_only=True) as con:
        exps = [e for (e,) in con.execute("select distinct experiment_id from predictions "
                                          "where run_id = ? order by 1 limit 3",
                                          [run]).fetchall()]
        prob, truth, calibrated = prediction_probabilities(con, run, exps)
        # before annotate: the run's stored Platt scaling of each score
        m = models_mod.read_models(con, run)
        col = {int(s): j for j, s in enumerate(m.structure_ids)}
        scores = con.execute("select experiment_id, structure_id, score from predictions "
                             "where run_id = ? and list_contains(?, experiment_id)",
                             [run, exps]).fetchall()
    assert calibrated and len(prob) == len(scores) == len(truth) > 10
    for e, s, sc in scores:
        want = apply_platt(sc, m.platt_a[col[s]], m.platt_b[col[s]])
        assert abs(prob[(e, s)] - want) < 1e-9
    # after annotate --consistent: annotate's (hierarchy-consistent) probabilities
    annotate(toy, run, "E13.5", consistent=True, progress=False)
    with warehouse.connect(toy, read_only=True) as con:
        prob2, _, calibrated2 = prediction_probabilities(con, run, exps, level=1)
        ann = dict(((e, s), p) for e, s, p in con.execute(
            "select experiment_id, structure_id, probability from predicted_annotations "
            "where run_id = ?", [run]).fetchall())
        lvl = {s for (s,) in con.execute("select structure_id from structures "
                                         "where level = 1").fetchall()}
    assert calibrated2 and prob2 and all(s in lvl for _, s in prob2)
    assert all(abs(p - ann[k]) < 1e-12 for k, p in prob2.items())
    # the report's figure 6 colours by them and says so on its colour bar
    from ishwh.report.gather import gather

    grid = gather(toy).grid
    assert grid is not None and grid["score_label"] == "P(detected), calibrated"
    assert 0 <= np.nanmin(grid["score"]) and np.nanmax(grid["score"]) <= 1
