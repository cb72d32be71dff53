"""The built wheel ships sql/, migrations/ and cli/ inside the ishwh package and works
without the source checkout (non-editable layout)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(out)],
                   cwd=REPO, check=True, capture_output=True, timeout=120)
    wheels = list(out.glob("ishwh-*.whl"))
    assert len(wheels) == 1
    return wheels[0]


def test_wheel_contents(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in sorted((REPO / "sql").rglob("*.sql")):
        assert f"ishwh/sql/{path.relative_to(REPO / 'sql').as_posix()}" in names
    for path in sorted((REPO / "migrations").glob("*.sql")):
        assert f"ishwh/migrations/{path.name}" in names
    assert "ishwh/migrations/0001_init.sql" in names
    assert {"ishwh/cli/__init__.py", "ishwh/cli/app.py", "ishwh/cli/basic.py",
            "ishwh/cli/ingest_dir.py", "ishwh/manifest/__init__.py"} <= names
    tops = {n.split("/")[0] for n in names}
    assert tops == {"ishwh", "ishwh-0.1.0.dist-info"}, tops  # no bare top-level cli/
    entry = zipfile.ZipFile(wheel).read("ishwh-0.1.0.dist-info/entry_points.txt").decode()
    assert "ishwh = ishwh.__main__:main" in entry


def test_unpacked_wheel_runs_without_the_checkout(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    db = tmp_path / "w.duckdb"
    script = textwrap.dedent(f"""
        import importlib.util, sys
        import ishwh
        from ishwh.resources import resource_dir
        assert ishwh.__file__.startswith({str(site)!r}), ishwh.__file__
        assert importlib.util.find_spec("cli") is None, "a bare cli module is importable"
        assert str(resource_dir("sql")).startswith({str(site)!r})
        assert str(resource_dir("migrations")).startswith({str(site)!r})
        from ishwh.__main__ import main
        for argv in (["init"], ["sql", "select count(*) as n from schema_migrations",
                                "--format", "csv"]):
            sys.argv = ["ishwh", *argv, "--db", {str(db)!r}]
            try:
                main()
            except SystemExit as exc:
                assert not exc.code, exc.code
    """)
    # -S: no site processing, so the editable install's .pth (the checkout) is not on the
    # path; the dependencies come from this venv's site-packages, ishwh from the wheel.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site),
                                                        sysconfig.get_paths()["purelib"]])}
    env.pop("ISHWH_DB", None)
    res = subprocess.run([sys.executable, "-S", "-c", script], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    n_migrations = len(list((REPO / "migrations").glob("*.sql")))
    assert res.stdout.splitlines() == ["n", str(n_migrations)]
    assert db.exists()
