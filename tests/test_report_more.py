"""The report's added parts: figures 4 and 5, pooling, confusion, statistics, with their CSVs."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from toy_warehouse import make_toy_warehouse

from ishwh import store, warehouse
from ishwh.fit import fit
from ishwh.fit.compare import compare
from ishwh.report import build_report
from ishwh.report.plots_more import layer_curves, pooling_pairs, split_cnn_name

CNN = ("efficientnet_lite0.blocks.3.max", "efficientnet_lite0.blocks.5.max",
       "efficientnet_lite0.blocks.5.mean")


@pytest.fixture(scope="module")
def wh(tmp_path_factory):
    path = tmp_path_factory.mktemp("more") / "wh.duckdb"
    atlas = make_toy_warehouse(path, n_genes=90, structures_per_level=(3, 4), dim=16,
                               n_gene_tasks=0)
    rng = np.random.default_rng(0)
    with warehouse.connect(path) as con:
        ids, x = store.read_experiment_features(con, atlas.feature_set, "E11.5")
        for i, name in enumerate(CNN):   # three "layers/poolings" with more or less noise
            con.execute("insert into feature_sets (name, extractor, dim, finished_at) values "
                        "(?, 'cnn', 16, current_timestamp)", [name])
            fsid = con.execute("select feature_set_id from feature_sets where name = ?",
                               [name]).fetchall()[0][0]
            store.write_experiment_features(con, fsid, ids,
                                            x + (i + 1) * rng.standard_normal(x.shape))
        con.execute("update annotations set intensity = case when pattern = 'full' then "
                    "(['low', 'medium', 'high'])[1 + (experiment_id % 3)::int] "
                    "else 'undetected' end")
    runs = [fit(path, name, "E11.5", C=0.01, progress=False)[0] for name in CNN]
    runs += fit(path, CNN[0], "E11.5", target="intensity", C=0.01, progress=False)
    compare(path, runs, n_boot=200)
    return path, runs


def test_report_draws_the_added_figures_and_exports_their_numbers(wh, tmp_path):
    path, runs = wh
    res = build_report(path, tmp_path / "rep")
    figs = {p.stem for p in res.figures}
    assert {"class_distribution", "layer_auc", "pooling", "confusion"} <= figs
    tables = tmp_path / "rep" / "tables"
    stage = pl.read_csv(tables / "feature_set_stage_auc.csv")
    with warehouse.connect(path, read_only=True) as con:
        want = dict(con.execute("select feature_set, mean_auc from stage_auc").fetchall())
    for r in stage.iter_rows(named=True):
        assert r["mean_auc"] == pytest.approx(want[r["feature_set"]], abs=1e-12)
    pool = pl.read_csv(tables / "pooling.csv")
    assert pool["layer"].to_list() == ["efficientnet_lite0.blocks.5"]
    assert pool["max"][0] == pytest.approx(want[CNN[1]]) and pool["mean"][0] == pytest.approx(
        want[CNN[2]])
    dist = pl.read_csv(tables / "class_distribution.csv")
    with warehouse.connect(path, read_only=True) as con:
        n_int = con.execute("select count(intensity) from annotations").fetchall()[0][0]
    assert dist.filter(pl.col("target") == "intensity")["n"].sum() == n_int
    comp = pl.read_csv(tables / "run_comparisons.csv")
    assert comp.height == 3 and comp["p_value"].is_not_null().all()
    html = res.html.read_text(encoding="utf-8")
    assert "Wilcoxon" in html and "figure 4" in html and "figure 5" in html


def test_figure_helpers():
    assert split_cnn_name("efficientnet_lite0.blocks.3.max") == (
        "efficientnet_lite0", "blocks.3", "max")
    assert split_cnn_name("bow") is None and split_cnn_name("grid.toy") is None
    one = pl.DataFrame({"stage": ["E11.5"], "feature_set": [CNN[0]], "split_method": ["x"],
                        "label_mode": ["true"], "mean_auc": [0.8]})
    assert layer_curves(one) is None and pooling_pairs(one).is_empty()
