"""`fit --target` end to end on a toy warehouse with graded annotations; compare; errors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import wilcoxon
from sklearn.metrics import roc_auc_score
from toy_warehouse import make_toy_warehouse
from typer.testing import CliRunner

from cli.app import app
from ishwh import store, warehouse
from ishwh.fit import fit
from ishwh.fit.compare import compare
from ishwh.vocab import GRADES, PATTERNS

STAGE = "E11.5"


def _q(path, sql, params=None):
    with warehouse.connect(path, read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Toy atlas whose grades follow a noisy linear score of the features (learnable)."""
    path = tmp_path_factory.mktemp("targets") / "wh.duckdb"
    atlas = make_toy_warehouse(path, n_genes=150, structures_per_level=(3, 5), dim=32,
                               n_gene_tasks=0)
    with warehouse.connect(path) as con:
        ids, x = store.read_experiment_features(con, atlas.feature_set, STAGE)
        rng = np.random.default_rng(3)
        rows = []
        for s in atlas.structure_ids.tolist():
            eta = x @ rng.standard_normal(x.shape[1]) / 5 + 0.5 * rng.standard_normal(len(ids))
            g = np.digitize(eta, np.quantile(eta, [0.6, 0.75, 0.9]))
            pat = np.where(g == 0, 0, 1 + (x[:, 0] > 0.3) + (x[:, 1] > 1.2))
            rows += [(int(e), s, PATTERNS[p], GRADES[k], GRADES[max(0, k - 1)])
                     for e, k, p in zip(ids, g.tolist(), pat.tolist(), strict=True)]
        con.execute("delete from annotations")
        con.executemany("insert into annotations values (?, ?, ?, ?, ?)", rows)
        # a second feature set: half the signal, for the paired comparison
        con.execute("insert into feature_sets (name, extractor, dim, finished_at) values "
                    "('grid.weak', 'grid', 32, current_timestamp)")
        fsid = con.execute("select feature_set_id from feature_sets where name = 'grid.weak'"
                           ).fetchall()[0][0]
        store.write_experiment_features(con, fsid, ids, x + 2 * rng.standard_normal(x.shape))
    return path, atlas.feature_set


def test_targets_fit_score_and_record_the_rare_class_rule(toy):
    path, fs = toy
    # C by inner CV for pattern; fixed C elsewhere (speed)
    runs = {t: fit(path, fs, STAGE, target=t, progress=False,
                   C=None if t == "pattern" else 0.05)[0]
            for t in ("pattern", "intensity", "density")}
    runs["multinomial"] = fit(path, fs, STAGE, target="intensity", model="multinomial",
                              progress=False, C=0.05)[0]
    assert len(set(runs.values())) == 4
    assert fit(path, fs, STAGE, target="pattern", progress=False)[0] == runs["pattern"]
    # probabilities of every scored experiment x structure sum to one
    sums = _q(path, "select min(s), max(s) from (select sum(probability) s from "
                    "class_predictions group by run_id, structure_id, experiment_id)")[0]
    assert sums == pytest.approx((1.0, 1.0))
    got = set(_q(path, "select target, model from run_targets"))
    assert got == {("pattern", "multinomial"), ("intensity", "ordinal"), ("density", "ordinal"),
                   ("intensity", "multinomial")}
    # learnable: mean macro AUC well above chance for every target
    for run in runs.values():
        auc, kappa = _q(path, "select avg(macro_auc), avg(kappa) from target_metrics "
                              "where run_id = ?", [run])[0]
        assert auc > 0.7
    assert _q(path, "select count(*) from target_metrics where run_id = ? and kappa is not "
                    "null", [runs["pattern"]])[0][0] == 0
    # every annotated class of every structure is accounted for, merged classes included
    n_tc = _q(path, "select count(*) from target_classes where run_id = ?",
              [runs["density"]])[0][0]
    n_cls = _q(path, "select count(distinct (structure_id, density)) from annotations")[0][0]
    assert n_tc == n_cls
    merged = _q(path, "select count(*) from target_classes where effective_class <> class")
    truth = _q(path, "select count(*) from class_predictions p join target_classes c "
                     "on c.run_id = p.run_id and c.structure_id = p.structure_id "
                     "and c.class = p.truth where c.effective_class <> c.class")
    assert truth[0][0] == 0          # test truths are named in the merged classes
    assert merged[0][0] >= 0


def test_compare_equals_scipy_on_sklearn_aucs(toy):
    path, fs = toy
    a = fit(path, fs, STAGE, progress=False)[0]
    b = fit(path, "grid.weak", STAGE, progress=False)[0]
    rows = [r for r in compare(path, [a, b], n_boot=500) if {r["run_a"], r["run_b"]} == {a, b}]
    assert len(rows) == 1
    aucs = {}
    for run in (a, b):
        preds = _q(path, "select structure_id, score, detected from predictions "
                         "where run_id = ?", [run])
        by = {}
        for s, score, det in preds:
            by.setdefault(s, ([], []))
            by[s][0].append(score)
            by[s][1].append(det)
        aucs[run] = {s: roc_auc_score(t, sc) for s, (sc, t) in by.items() if 0 < sum(t) < len(t)}
    common = sorted(set(aucs[a]) & set(aucs[b]))
    d = np.array([aucs[a][s] - aucs[b][s] for s in common])
    want = wilcoxon(d)
    assert rows[0]["n_structures"] == len(common)
    assert rows[0]["mean_diff"] == pytest.approx(d.mean(), abs=1e-12)
    assert rows[0]["p_value"] == pytest.approx(want.pvalue, rel=1e-9)
    assert rows[0]["boot_lo"] < rows[0]["mean_diff"] < rows[0]["boot_hi"]
    assert _q(path, "select count(*) from run_bootstrap where run_id in (?, ?)", [a, b]) == [(2,)]
    # the same numbers again: the bootstrap is seeded
    again = [r for r in compare(path, [a, b], n_boot=500) if r["run_a"] == rows[0]["run_a"]]
    assert again[0]["boot_lo"] == rows[0]["boot_lo"]


def _cli(*args):
    """Exit code and the error lines (the progress bar may share the captured output)."""
    res = CliRunner().invoke(app, list(args))
    errors = [ln for ln in res.output.splitlines() if ln.startswith("Error")]
    return res.exit_code, "\n".join(errors)


def test_bad_input_is_one_clear_line(toy, tmp_path):
    path, fs = toy
    plain = tmp_path / "plain.duckdb"
    atlas = make_toy_warehouse(plain, n_genes=40, structures_per_level=(2,), n_gene_tasks=0)
    code, out = _cli("fit", "--features", atlas.feature_set, "--stage", STAGE, "--target",
                     "intensity", "--db", str(plain))
    assert code == 1 and out.count("\n") == 0
    assert "no intensity annotations at stage E11.5" in out and "unexpected" not in out
    with warehouse.connect(plain) as con:
        con.execute("update annotations set density = 'undetected'")
        before = con.execute("select count(*) from runs").fetchall()
    code, out = _cli("fit", "--features", atlas.feature_set, "--stage", STAGE, "--target",
                     "density", "--db", str(plain))
    assert code == 1 and out.count("\n") == 0
    assert "every density annotation at stage E11.5 is 'undetected'" in out
    assert _q(plain, "select count(*) from runs") == before
    code, out = _cli("fit", "--features", fs, "--stage", STAGE, "--target", "pattern",
                     "--model", "ordinal", "--db", str(path))
    assert code == 1 and "pattern is nominal" in out
    code, out = _cli("fit", "--features", fs, "--stage", STAGE, "--target", "colour",
                     "--db", str(path))
    assert code == 1 and "unknown target 'colour'" in out
    code, out = _cli("compare", "--runs", "1,999", "--db", str(path))
    assert code == 1 and "999" in out


def test_repeats_give_a_t_interval_per_level_and_stage(toy):
    from scipy.stats import t as student_t

    path, fs = toy
    runs = fit(path, fs, STAGE, repeats=3, C=0.05, progress=False)
    assert len(set(runs)) == 3
    # a cell holds every run of the feature set and split method (other tests add theirs)
    rows = _q(path, "select level, n_repeats, run_ids, macro_auc, ci95_macro_auc "
                    "from repeat_metrics where target = 'detected' and feature_set = ? "
                    "and not is_stage", [fs])
    assert rows
    for level, n, run_ids, mean, ci in rows:
        ids = [int(x) for x in run_ids.split(",")]
        assert set(runs) <= set(ids) and n == len(ids)
        v = np.array([m for (m,) in _q(path, "select mean_auc from level_auc where "
                                             "list_contains(?, run_id) and level = ?",
                                       [ids, level])])
        assert mean == pytest.approx(v.mean(), abs=1e-12)
        want = student_t.ppf(0.975, n - 1) * v.std(ddof=1) / np.sqrt(n)
        assert ci == pytest.approx(want, rel=1e-5)
    stage = _q(path, "select n_repeats, ci95_macro_auc from repeat_metrics where is_stage and "
                     "target = 'detected' and feature_set = ?", [fs])
    assert len(stage) == 1 and stage[0][1] > 0
