"""Kill `featurize` mid-run (SIGKILL, a real subprocess), resume, compare with a clean run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ishwh import store, warehouse

sys.path.insert(0, str(Path(__file__).parent))
from test_featurize import make_warehouse  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LAYERS = ["blocks.2", "blocks.3"]
CHILD = (
    "import sys; from ishwh.features import featurize; "
    f"featurize(sys.argv[1], layers={LAYERS!r}, pools=('max', 'mean'), device='cpu', "
    "workers=1, batch_size=4, progress=False, chunk_size=1)"
)


def _run(db: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, str(db)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _rows(db: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    with warehouse.connect(db, read_only=True) as con:
        names = [r[0] for r in con.execute("select name from feature_sets order by name"
                                           ).fetchall()]
        return {n: store.read_experiment_features(con, n) for n in names}


def _count(db: Path) -> tuple[int, int]:
    with warehouse.connect(db, read_only=True) as con:
        return con.execute("select count(*), count(distinct (feature_set_id, experiment_id)) "
                           "from experiment_features").fetchall()[0]


@pytest.mark.slow
def test_kill_and_resume_equals_uninterrupted_run(tmp_path):
    a = tmp_path / "a" / "wh.duckdb"
    a.parent.mkdir()
    warehouse.init(a)
    make_warehouse(a, n_exp=10, n_sec=3)
    b = tmp_path / "b" / "wh.duckdb"  # an identical copy for the uninterrupted run
    shutil.copytree(a.parent, b.parent, dirs_exist_ok=True)

    # Run on A and SIGKILL it as soon as the first chunk is committed (the WAL grows).
    wal = Path(str(a) + ".wal")
    proc = _run(a)
    deadline = time.monotonic() + 60
    base = wal.stat().st_size if wal.exists() else 0
    while time.monotonic() < deadline and proc.poll() is None:
        # feature_sets rows + one chunk of vectors: a few hundred kB in the WAL
        if wal.exists() and wal.stat().st_size > base + 200_000:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "featurize finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    n_killed, _ = _count(a)
    assert 0 < n_killed < 10 * 4, n_killed  # interrupted mid-run

    resumed = _run(a)
    assert resumed.wait(timeout=120) == 0, resumed.stderr.read().decode()
    clean = _run(b)
    assert clean.wait(timeout=120) == 0, clean.stderr.read().decode()

    n, n_distinct = _count(a)
    assert n == n_distinct == 10 * 4  # every (set, experiment) once: no duplicates
    ra, rb = _rows(a), _rows(b)
    assert list(ra) == list(rb) and len(ra) == 4
    for name in ra:
        np.testing.assert_array_equal(ra[name][0], rb[name][0])
        np.testing.assert_array_equal(ra[name][1], rb[name][1])  # identical vectors
    with warehouse.connect(a, read_only=True) as con:
        assert con.execute("select count(*) from feature_sets where finished_at is null"
                           ).fetchall()[0][0] == 0
