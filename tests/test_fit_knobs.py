"""`ishwh fit --C/--Cs/--cv/--select`: listed in --help, recorded in runs, nonsense refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from toy_warehouse import make_toy_warehouse
from typer.testing import CliRunner

from cli.app import app
from ishwh import warehouse

runner = CliRunner()


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("knobs") / "wh.duckdb"
    make_toy_warehouse(path, n_genes=80, structures_per_level=(3, 4), dim=24)
    return path


def _q(path, sql, params=None):
    with warehouse.connect(path, read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def _fit(toy, *extra):
    return runner.invoke(app, ["fit", "--features", "grid.toy", "--stage", "E11.5",
                               "--db", str(toy), "--json", *extra])


def test_help_lists_the_knobs():
    res = runner.invoke(app, ["fit", "--help"])
    assert res.exit_code == 0
    for flag in ("--C ", "--Cs", "--cv", "--select"):
        assert flag in res.output, flag


def test_fixed_c_is_recorded_and_used(toy):
    res = _fit(toy, "--C", "0.02")
    assert res.exit_code == 0, res.output
    (run,) = json.loads(res.stdout)["run_ids"]
    params = json.loads(_q(toy, "select params from runs where run_id = ?", [run])[0][0])
    assert params["trainer"]["C"] == 0.02 and params["trainer"]["Cs"] is None
    cs = {c for (c,) in _q(toy, "select c from run_tasks where run_id = ? and "
                                "status = 'fitted'", [run])}
    assert cs == {0.02}


def test_grid_folds_and_select_are_recorded(toy):
    res = _fit(toy, "--Cs", "1e-3,1e-1", "--cv", "2", "--select", "all")
    assert res.exit_code == 0, res.output
    (run,) = json.loads(res.stdout)["run_ids"]
    trainer = json.loads(_q(toy, "select params from runs where run_id = ?", [run])[0][0]
                         )["trainer"]
    assert trainer["C"] is None and trainer["Cs"] == [1e-3, 1e-1]
    assert trainer["cv"] == 2 and trainer["select"] == "all"
    # select=all: one C for the whole run, taken from the grid
    cs = {c for (c,) in _q(toy, "select c from run_tasks where run_id = ? and "
                                "status = 'fitted'", [run])}
    assert len(cs) == 1 and cs <= {1e-3, 1e-1}


@pytest.mark.parametrize("extra, flag", [
    (["--C", "-1"], "--C"), (["--C", "0"], "--C"), (["--C", "nan"], "--C"),
    (["--cv", "1"], "--cv"), (["--Cs", ","], "--Cs"), (["--Cs", "1,-2"], "--Cs"),
    (["--Cs", "a,b"], "--Cs"), (["--select", "level"], "--select"),
    (["--C", "1", "--Cs", "1,2"], "--C"),
])
def test_nonsense_is_refused_in_one_line_before_any_work(toy, extra, flag):
    before = _q(toy, "select (select count(*) from runs), (select count(*) from split_defs)")
    res = _fit(toy, *extra)
    assert res.exit_code == 1
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and flag in lines[0], res.output
    assert "unexpected" not in res.output
    assert _q(toy, "select (select count(*) from runs), (select count(*) from split_defs)"
              ) == before
