"""`ishwh demo` end to end on a shrunken demo atlas, and its re-run reusing everything."""

from __future__ import annotations

import time

import polars as pl
import pytest
from typer.testing import CliRunner

from cli.app import app

# The demo preset shrunk so the end-to-end test stays well under a minute on 2 cores.
SMALL = {"n_genes": 36, "stages": ("E13.5",), "sections": (4, 5)}


def test_demo_help():
    res = CliRunner().invoke(app, ["demo", "--help"])
    assert res.exit_code == 0
    assert "--out" in res.output and "--db" in res.output


@pytest.mark.slow
def test_demo_end_to_end_and_rerun(tmp_path):
    from ishwh.demo import run_demo

    steps: list[str] = []
    first = run_demo(tmp_path / "demo", synth_overrides=SMALL, progress=False,
                     on_step=lambda name, s, note: steps.append(name))
    assert steps == ["init", "synthetic atlas", "features: CNN", "features: bag of words",
                     "fit", "table 1", "report"]
    assert first.db_path == tmp_path / "demo" / "ishwh.duckdb"
    assert first.report.html.is_file() and first.report.html.parent == tmp_path / "demo/report"
    html = first.report.html.read_text(encoding="utf-8")
    assert html.count('<img src="data:image/png;base64,') == len(first.report.figures) >= 3
    # CNN and bag-of-words columns, every (stage, level) row, and the overall row
    cnn = [f for f in first.feature_sets if not f.startswith("bow")]
    bow = [f for f in first.feature_sets if f.startswith("bow")]
    assert cnn and bow
    wide = first.table1
    assert set(first.feature_sets) <= set(wide.columns)
    assert wide["stage"][-1] == "all stages"
    overall = wide.row(wide.height - 1, named=True)
    assert float(overall[wide["best"][-1]].split(" ")[0]) > 0.6  # it learns something
    assert first.run_ids and len(first.run_ids) == len(first.feature_sets)  # one stage

    # running it again reuses the warehouse: same runs, no new work
    again = run_demo(tmp_path / "demo", synth_overrides=SMALL, progress=False)
    assert again.run_ids == first.run_ids
    assert again.feature_sets == first.feature_sets
    assert again.table1.equals(first.table1)
    assert sum(again.timings.values()) < sum(first.timings.values())
    assert pl.read_csv(again.report.html.parent / "tables/runs.csv").height == len(first.run_ids)


@pytest.mark.slow
def test_demo_cli_prints_table_and_report_path(tmp_path, monkeypatch):
    """The CLI: Table 1 on stdout, then the report path as the last line."""
    import ishwh.demo as demo_mod

    real = demo_mod.run_demo
    start = time.perf_counter()
    monkeypatch.setattr(  # the CLI calls ishwh.demo.run_demo; shrink its atlas the same way
        "cli.demo.run_demo", lambda out, db, **kw: real(out, db, synth_overrides=SMALL, **kw)
    )
    res = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "d")])
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    assert lines[-1] == str(tmp_path / "d" / "report" / "report.html")
    assert "Table 1" in res.stdout and "all stages" in res.stdout
    assert time.perf_counter() - start < 120
