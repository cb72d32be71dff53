"""`ishwh demo` end to end on a shrunken demo atlas, and its re-run reusing everything."""

from __future__ import annotations

import polars as pl
import pytest
from typer.testing import CliRunner

from cli.app import app

# The demo shrunk so the end-to-end test stays around a minute on 2 cores: fewer genes and
# sections, one annotated stage and the one it annotates, a small bag-of-words codebook (its
# k-means dominates a tiny atlas).
SMALL = {
    "synth_overrides": {"n_genes": 45, "stages": ("E18.5", "P4"), "sections": (3, 3)},
    "featurize_options": {"bow": {"bow": {"n_words": 24, "n_init": 1}}},
}


def test_demo_help():
    res = CliRunner().invoke(app, ["demo", "--help"])
    assert res.exit_code == 0
    assert "--out" in res.output and "--db" in res.output


@pytest.mark.slow
def test_demo_end_to_end_then_rerun_reuses_everything(tmp_path, monkeypatch):
    from ishwh.demo import run_demo

    # The CLI calls ishwh.demo.run_demo: shrink the atlas it asks for, change nothing else.
    monkeypatch.setattr("ishwh.demo.run_demo",
                        lambda out, db, **kw: run_demo(out, db, **SMALL, **kw))
    out = tmp_path / "demo"
    res = CliRunner().invoke(app, ["demo", "--out", str(out)])
    assert res.exit_code == 0, res.output
    # stdout: Table 1, then the report path as the last line; step timings on stderr
    lines = res.stdout.strip().splitlines()
    assert lines[-1] == str(out / "report" / "report.html")
    assert "Table 1" in res.stdout and "all stages" in res.stdout
    for step in ("init", "synthetic atlas", "features: CNN", "features: bag of words", "fit",
                 "statistics", "annotate P4", "report"):
        assert step in res.stderr
    assert "Annotated P4" in res.stdout and "withheld" in res.stdout
    html = (out / "report" / "report.html").read_text(encoding="utf-8")
    runs = pl.read_csv(out / "report" / "tables" / "runs.csv")
    cnn = [f for f in runs["feature_set"].unique().to_list() if not f.startswith("bow")]
    assert cnn and "bow.w24" in runs["feature_set"].to_list()  # 24 words: set bow.w24
    assert runs["stage"].unique().to_list() == ["E18.5"]
    assert html.count('<img src="data:image/png;base64,') >= 3
    # the paired CNN-vs-bag-of-words comparison, with its Wilcoxon p-value, is in the report
    comp = pl.read_csv(out / "report" / "tables" / "run_comparisons.csv")
    assert comp.height >= 1 and comp["p_value"].is_not_null().all()
    assert "Wilcoxon" in html and "intensity" in html
    # the Predicted annotations section: P4 annotated by the production run, exported
    assert 'id="predicted"' in html
    pred = pl.read_parquet(out / "report" / "tables" / "predicted_annotations.parquet")
    assert set(pred["stage"]) == {"P4"} and pred["experiment_id"].n_unique() == 45
    assert set(pred["run_id"]).isdisjoint(runs["run_id"].to_list())
    first_runs = sorted(runs["run_id"].to_list())

    # Running it again reuses the warehouse: the same runs, no new work, the same Table 1.
    steps: list[tuple[str, float]] = []
    again = run_demo(out, **SMALL, progress=False, on_step=lambda n, s, _: steps.append((n, s)))
    assert [n for n, _ in steps] == ["init", "synthetic atlas", "features: CNN",
                                     "features: bag of words", "fit", "statistics",
                                     "annotate P4", "table 1", "report"]
    assert again.annotation["auc"] > 0.5 and again.annotation["n_experiments"] == 45
    assert again.db_path == out / "ishwh.duckdb"
    assert sorted(again.run_ids) == first_runs
    assert set(again.feature_sets) == set(runs["feature_set"].to_list())
    wide = again.table1
    assert wide["stage"][-1] == "all stages" and set(again.feature_sets) <= set(wide.columns)
    assert dict(steps)["features: bag of words"] < 5 and dict(steps)["fit"] < 10
