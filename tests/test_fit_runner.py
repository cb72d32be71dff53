"""`fit` end to end on a toy warehouse with known signal: runs, splits, predictions, views."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from toy_warehouse import make_toy_warehouse
from typer.testing import CliRunner

from cli.app import app
from ishwh import loader, store, warehouse
from ishwh.errors import InvalidInput, NotFound
from ishwh.fit import fit
from ishwh.fit.runner import levels_text, parse_levels
from ishwh.fit.splits import balance
from ishwh.query import query_text

RARE = 999   # a structure with 2 positives at E11.5: must be skipped with a reason


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fit") / "wh.duckdb"
    atlas = make_toy_warehouse(path, n_genes=300, structures_per_level=(12, 20, 30),
                               n_gene_tasks=3, dim=48, label_noise=0.5)
    ids = atlas.experiment_ids["E11.5"]
    rng = np.random.default_rng(9)
    with warehouse.connect(path) as con:
        loader.load(con, loader.Batch(
            structures=[{"structure_id": RARE, "acronym": "rare", "level": 1}],
            annotations=pl.DataFrame({"experiment_id": ids, "structure_id": [RARE] * len(ids),
                                      "pattern": ["full"] * 2 + ["undetected"] * (len(ids) - 2)})))
        # a second feature set without signal, to check both share one split
        with warehouse.transaction(con):
            fsid = con.execute("insert into feature_sets (name, extractor, dim, finished_at) "
                               "values ('grid.noise', 'grid', 16, current_timestamp) "
                               "returning feature_set_id").fetchall()[0][0]
            store.write_experiment_features(con, fsid, ids,
                                            rng.standard_normal((len(ids), 16)))
    return path


def _q(path, sql, params=None):
    with warehouse.connect(path, read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def test_informative_features_learn_at_every_level_and_rerun_reuses(toy):
    (run,) = fit(toy, "grid.toy", "E11.5", tasks="all", progress=False)
    levels = _q(toy, "select level, n_structures, mean_auc from level_auc where run_id = ? "
                     "order by level", [run])
    assert [lv for lv, _, _ in levels] == [1, 2, 3]
    assert all(m > 0.75 for _, _, m in levels), levels
    genes = _q(toy, "select task, auc from gene_task_auc where run_id = ?", [run])
    assert len(genes) == 3 and all(a > 0.7 for _, a in genes)
    status, label_mode, params = _q(toy, "select status, label_mode, params from runs "
                                         "where run_id = ?", [run])[0]
    assert (status, label_mode) == ("finished", "true")
    assert json.loads(params)["n_tasks_fitted"] == 65
    # predictions are test-set rows only, with the truth from `labels`
    bad = _q(toy, "select count(*) from predictions p join runs r using (run_id) "
                  "join splits s on s.split_id = r.split_id and s.experiment_id = p.experiment_id "
                  "join labels l on l.experiment_id = p.experiment_id "
                  "and l.structure_id = p.structure_id "
                  "where p.run_id = ? and (s.subset <> 'test' or l.detected <> p.detected)", [run])
    assert bad == [(0,)]
    skipped = _q(toy, "select reason, c from run_tasks where run_id = ? and status = 'skipped'",
                 [run])
    assert len(skipped) == 1 and skipped[0][1] is None
    assert re.fullmatch(r"[012] positive\(s\) in train \(need 3\)", skipped[0][0])
    fitted_c = _q(toy, "select count(*), count(distinct c) from run_tasks r "
                       "join structures s on s.structure_id = r.task::bigint "
                       "where run_id = ? and status = 'fitted' and task_kind = 'structure' "
                       "group by s.level", [run])
    assert all(n_c == 1 for _, n_c in fitted_c)          # one C per level (select='group')

    n_runs = _q(toy, "select count(*) from runs")[0][0]
    assert fit(toy, "grid.toy", "E11.5", tasks="all", progress=False) == [run]   # reused
    assert _q(toy, "select count(*) from runs")[0][0] == n_runs
    (forced,) = fit(toy, "grid.toy", "E11.5", tasks="all", progress=False, force=True)
    assert forced != run
    assert _q(toy, "select count(*) from runs where run_id = ?", [run]) == [(0,)]
    assert _q(toy, "select count(*) from predictions where run_id = ?", [run]) == [(0,)]


def test_shuffled_training_labels_give_chance(toy):
    # 3 splits x 62 structures: per-task null AUCs spread widely (a random direction in a
    # space where labels are predictable), so the mean needs many tasks to sit near 0.5.
    runs = fit(toy, "grid.toy", "E11.5", shuffle_labels=True, repeats=3, progress=False)
    assert len(runs) == 3
    assert _q(toy, "select distinct label_mode from runs where list_contains(?, run_id)",
              [runs]) == [("shuffled",)]
    (mean,) = _q(toy, "select avg(auc) from structure_auc where list_contains(?, run_id)",
                 [runs])[0]
    assert abs(mean - 0.5) <= 0.03, mean


def test_one_split_per_stage_for_every_feature_set(toy):
    (a,) = fit(toy, "grid.toy", "E11.5", levels="1-2", progress=False)
    (b,) = fit(toy, "grid.noise", "E11.5", levels="1-2", progress=False)
    split_a, split_b = (_q(toy, "select split_id from runs where run_id = ?", [r])[0][0]
                        for r in (a, b))
    assert split_a == split_b
    (noise_auc,) = _q(toy, "select mean_auc from stage_auc where run_id = ?", [b])[0]
    assert abs(noise_auc - 0.5) < 0.1        # no signal in the noise features
    assert _q(toy, "select levels from runs where run_id = ?", [a]) == [("1-2",)]


def test_split_balance_summary_matches_python_and_paper_split(toy):
    (s,) = fit(toy, "grid.toy", "E11.5", levels="1", progress=False)
    (p,) = fit(toy, "grid.toy", "E11.5", split="paper", levels="1", progress=False)
    with warehouse.connect(toy, read_only=True) as con:
        summary = con.sql(query_text("split_balance_summary"),
                          params={"runs": [s, p]}).to_arrow_table().to_pylist()
        split_id = con.execute("select split_id from runs where run_id = ?", [p]).fetchall()[0][0]
        lab = con.sql("select s.experiment_id, l.structure_id, l.detected, s.subset "
                      "from splits s join labels l using (experiment_id) "
                      "join structures t using (structure_id) "
                      "where s.split_id = $s and t.level = 1", params={"s": split_id}).pl()
    assert {r["method"] for r in summary} == {"stratified", "paper"}
    row = next(r for r in summary if r["split_id"] == split_id)
    wide = lab.pivot(on="structure_id", index=["experiment_id", "subset"], values="detected")
    y = wide.drop("experiment_id", "subset").to_numpy()
    known = ~np.isnan(y.astype(float))
    pos = (known & (np.nan_to_num(y.astype(float)) > 0)).astype(float)
    neg = (known & (np.nan_to_num(y.astype(float)) == 0)).astype(float)
    b = balance(pos, neg, (wide["subset"] == "test").to_numpy(), min_count=0)
    assert row["min_ratio_agreement"] == pytest.approx(b["worst_ratio_agreement"])
    assert row["n_structures"] == b["n_tasks_checked"]


def test_errors(toy, db_path):
    with pytest.raises(InvalidInput, match="stage"):
        fit(toy, "grid.toy", "E12", progress=False)
    with pytest.raises(NotFound, match="no feature set"):
        fit(toy, "nope", "E11.5", progress=False)
    with pytest.raises(NotFound, match="no structures tasks"):
        fit(toy, "grid.toy", "E11.5", levels="7", progress=False)
    with pytest.raises(NotFound, match="no experiments"):
        fit(toy, "grid.toy", "P4", progress=False)
    with warehouse.connect(db_path) as con:
        con.execute("insert into feature_sets (name, extractor, dim) values ('grid.x', 'grid', 2)"
                    ).fetchall()
    with pytest.raises(InvalidInput, match="not finished"):
        fit(db_path, "grid.x", "E11.5", progress=False)
    assert parse_levels("1-3,5") == [1, 2, 3, 5] and levels_text([1, 2, 3, 5]) == "1-3,5"


_KILLED_FIT = """
import pathlib, sys, time
from ishwh.fit import trainer
def slow_fit(self, *args, **kwargs):
    pathlib.Path(sys.argv[2]).write_text("fitting")
    time.sleep(120)
trainer.BatchedLogisticRegression.fit = slow_fit
from ishwh.fit import fit
fit(sys.argv[1], "grid.toy", "E11.5", progress=False)
"""


def test_killed_fit_is_never_finished_and_is_cleaned(tmp_path):
    path = tmp_path / "wh.duckdb"
    make_toy_warehouse(path, n_genes=60, structures_per_level=(3, 3), dim=8)
    marker = tmp_path / "marker"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_FIT, str(path), str(marker)],
                            cwd=Path(__file__).resolve().parents[1])
    try:
        deadline = time.time() + 60
        while not marker.exists():
            assert proc.poll() is None, "the fit process ended early"
            assert time.time() < deadline
            time.sleep(0.1)
    finally:
        proc.kill()
        proc.wait()
    assert _q(path, "select status from runs") == [("running",)]
    assert _q(path, "select count(*) from predictions") == [(0,)]
    assert _q(path, "select count(*) from structure_auc") == [(0,)]
    (run,) = fit(path, "grid.toy", "E11.5", progress=False)
    assert _q(path, "select run_id, status from runs") == [(run, "finished")]


def test_cli_help_and_json(toy):
    runner = CliRunner()
    res = runner.invoke(app, ["fit", "--help"])
    assert res.exit_code == 0 and "--shuffle-labels" in res.output
    res = runner.invoke(app, ["fit", "--features", "grid.toy", "--stage", "E11.5",
                              "--levels", "1-2", "--db", str(toy), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert len(out["run_ids"]) == 1 and [r["level"] for r in out["levels"]] == [1, 2]
    res = runner.invoke(app, ["fit", "--features", "grid.toy", "--stage", "E11.5",
                              "--tasks", "bogus", "--db", str(toy)])
    assert res.exit_code == 1 and "Error: --tasks" in res.output
