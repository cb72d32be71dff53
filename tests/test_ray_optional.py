"""Ray is an optional extra: without it, `--engine ray` says how to install it; Ray's flags
belong to the Ray engine."""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

from cli.app import app
from ishwh.errors import InvalidInput, NotFound
from ishwh.features import featurize


@pytest.fixture
def no_ray(monkeypatch):
    """As if Ray were not installed: importing it fails."""
    for name in [m for m in sys.modules if m == "ray" or m.startswith("ray.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "ray", None)


def test_engine_ray_without_ray_says_how_to_install_it(no_ray, db_path):
    with pytest.raises(InvalidInput, match="not installed") as info:
        featurize(db_path, engine="ray", progress=False)
    assert "pip install 'ishwh[ray]'" in info.value.hint
    res = CliRunner().invoke(app, ["featurize", "--engine", "ray", "--db", str(db_path)])
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "pip install 'ishwh[ray]'" in lines[0], res.output
    assert "unexpected" not in lines[0]


def test_annotate_engine_ray_without_ray_says_how_to_install_it(no_ray, db_path):
    # Refused before the warehouse is read: the run (here: none) is never looked up.
    res = CliRunner().invoke(app, ["annotate", "--run", "1", "--stage", "P4", "--engine", "ray",
                                   "--db", str(db_path)])
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "pip install 'ishwh[ray]'" in lines[0], res.output


def test_local_engine_works_without_ray(no_ray, db_path):
    # The local engine goes its way (here: to "no grids") without importing Ray.
    with pytest.raises(NotFound, match="no expression grids"):
        featurize(db_path, extractor="grid", progress=False)


@pytest.mark.parametrize("flag, value", [("--address", "auto"), ("--ray-workers", "2"),
                                         ("--images", "file:///x"),
                                         ("--gpus-per-worker", "0.5")])
def test_ray_flags_need_engine_ray(db_path, flag, value):
    res = CliRunner().invoke(app, ["featurize", flag, value, "--db", str(db_path)])
    assert res.exit_code == 2
    assert f"{flag} applies to --engine ray only" in res.output


def test_annotate_address_needs_engine_ray(db_path):
    res = CliRunner().invoke(app, ["annotate", "--run", "1", "--stage", "P4", "--address",
                                   "auto", "--db", str(db_path)])
    assert res.exit_code == 2 and "--address applies to --engine ray only" in res.output


def test_unknown_engine_is_refused(db_path):
    for cmd in (["featurize"], ["annotate", "--run", "1", "--stage", "P4"]):
        res = CliRunner().invoke(app, [*cmd, "--engine", "spark", "--db", str(db_path)])
        assert res.exit_code == 2 and "--engine must be local or ray" in res.output
    with pytest.raises(InvalidInput, match="engine"):
        featurize(db_path, engine="spark", progress=False)
