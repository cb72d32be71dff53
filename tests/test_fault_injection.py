"""Fault injection: SIGKILL the writing commands at random points, rerun, compare.

Each command runs as a real ``python -m ishwh ...`` subprocess. A clean chain (never
killed) and a faulted chain start from the same state; in the faulted chain every step is
killed ``KILLS[step]`` time(s) at a random moment of its work (after its first write shows:
a WAL or an image file), then rerun to completion. After each step both warehouses must hold
the same rows (and the same image files), and no temporary file (``*.part``, a WAL) may be
left anywhere. Kill moments are drawn from ``$ISHWH_FAULT_SEED`` (default: a fresh seed,
printed on failure), so repeated CI runs try new points; ``$ISHWH_FAULT_KILLS`` multiplies
the kill points per step. The number of kill points tried is recorded in
docs/reliability.md.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pytest

from ishwh import images, warehouse

REPO = Path(__file__).resolve().parents[1]
SEED = int(os.environ.get("ISHWH_FAULT_SEED") or random.SystemRandom().randrange(1 << 30))
FACTOR = max(1, int(os.environ.get("ISHWH_FAULT_KILLS") or 1))
ONLY = {s.strip() for s in os.environ.get("ISHWH_FAULT_ONLY", "").split(",") if s.strip()}

# step name -> (CLI arguments after `ishwh`, kill points, tables compared)
STEPS: dict[str, tuple[list[str], int, list[str]]] = {
    "ingest dir": (["ingest", "dir", "{manifest}"], 2,
                   ["genes", "structures", "experiments", "sections", "annotations",
                    "gene_labels"]),
    "ingest synthetic": (["ingest", "synthetic", "--genes", "16", "--stages", "E13.5",
                          "--image-size", "96x64", "--seed", "3"], 2,
                         ["genes", "experiments", "sections", "annotations",
                          "expression_grids"]),
    "featurize": (["featurize", "--extractor", "grid", "--no-progress"], 1,
                  ["feature_sets", "experiment_features"]),
    "fit": (["fit", "--features", "grid", "--stage", "E13.5"], 1, ["runs", "predictions"]),
    # {run}: the warehouse's finished fit run (its id differs after a killed fit)
    "annotate": (["annotate", "--run", "{run}", "--stage", "E13.5"], 1,
                 ["predicted_annotations"]),
}

# Columns that legitimately differ between two equal runs (clocks, generated run ids).
_VOLATILE = {"created_at", "finished_at", "started_at", "applied_at", "source", "run_id",
             "seconds", "elapsed_s", "timings",
             "fingerprint"}  # fit: hashes its inputs, feature-set timestamps included


def _ishwh(args: list[str], db: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ishwh", *args, "--db", str(db)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(REPO)})


def _args(template: list[str], manifest: Path, db: Path) -> list[str]:
    """The step's arguments for ``db``: ``{manifest}``, and ``{run}`` = its finished run."""
    run = ""
    if any("{run}" in a for a in template):
        with warehouse.connect(db, read_only=True) as con:
            run = str(con.execute("select max(run_id) from runs where status = 'finished'"
                                  ).fetchall()[0][0])
    return [a.format(manifest=manifest, run=run) for a in template]


def _started(db: Path) -> bool:
    """The command has begun writing: DuckDB's WAL exists or an image file appeared."""
    if Path(str(db) + ".wal").exists():
        return True
    root = warehouse.images_dir(db)
    return root.is_dir() and any(root.iterdir())


def _timed_run(args: list[str], db: Path) -> float:
    """Run to completion; return the seconds from its first write to its exit."""
    proc = _ishwh(args, db)
    start = None
    while proc.poll() is None:
        if start is None and _started(db):
            start = time.monotonic()
        time.sleep(0.005)
    assert proc.returncode == 0, proc.stderr.read().decode()
    return time.monotonic() - (start or time.monotonic())


def _killed_run(args: list[str], db: Path, after: float) -> str:
    """Start, wait for the first write, SIGKILL ``after`` seconds later. Returns where the
    kill landed ('during work' or 'after it finished')."""
    proc = _ishwh(args, db)
    deadline = time.monotonic() + 300
    while proc.poll() is None and not _started(db) and time.monotonic() < deadline:
        time.sleep(0.005)
    end = time.monotonic() + after
    while proc.poll() is None and time.monotonic() < end:
        time.sleep(0.002)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        return "during work"
    assert proc.returncode == 0, proc.stderr.read().decode()
    return "after it finished"


def _dump(db: Path, tables: list[str]) -> dict[str, list[tuple]]:
    out = {}
    with warehouse.connect(db, read_only=True) as con:
        for t in tables:
            cols = [r[0] for r in con.execute(f"describe {t}").fetchall()
                    if r[0] not in _VOLATILE]
            if t == "runs":
                cols = ["status", *[c for c in cols if c != "status"]]
            if t == "predictions":  # run ids differ: name the run by its feature set + stage
                rows = con.execute(
                    "select f.name, r.stage, p.experiment_id, p.structure_id, p.score, "
                    "p.detected from predictions p join runs r using (run_id) "
                    "join feature_sets f using (feature_set_id) order by all").fetchall()
            else:
                rows = con.execute(f"select {', '.join(cols)} from {t} order by all").fetchall()
            out[t] = [tuple(np.asarray(v).tolist() if isinstance(v, list | np.ndarray) else v
                            for v in row) for row in rows]
    return out


def _files(db: Path) -> list[tuple[str, str]]:
    root = warehouse.images_dir(db)
    return sorted((str(p.relative_to(root)), images.sha256_file(p))
                  for p in root.rglob("*") if p.is_file())


def _leftovers(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*")
                  if p.name.endswith(".part") or p.name.endswith(".wal"))


@pytest.mark.slow
def test_killed_commands_resume_to_the_uninterrupted_result(tmp_path):
    from ishwh.synth import write_manifest

    rng = random.Random(SEED)
    manifest = tmp_path / "manifest"
    write_manifest(manifest, "demo", genes=4, stages=("E11.5",), image_size=(96, 64),
                   progress=False)
    tried: list[str] = []
    pairs: dict[str, tuple[Path, Path]] = {}
    for step, (template, kills, tables) in STEPS.items():
        # `ingest dir` fills warehouses of its own; the synthetic chain builds on its steps.
        chain = "dir" if step == "ingest dir" else "synthetic"
        if chain not in pairs:
            pairs[chain] = (tmp_path / chain / "clean.duckdb", tmp_path / chain / "faulted.duckdb")
            for db in pairs[chain]:
                warehouse.init(db)
        clean, faulted = pairs[chain]
        work = _timed_run(_args(template, manifest, clean), clean)
        args = _args(template, manifest, faulted)
        for _ in range(kills * FACTOR if not ONLY or step in ONLY else 0):
            after = rng.uniform(0.0, max(work, 0.05))
            where = _killed_run(args, faulted, after)
            tried.append(f"{step} at +{after:.2f}s of {work:.2f}s ({where})")
        rerun = _ishwh(args, faulted)
        assert rerun.wait(timeout=600) == 0, (SEED, step, rerun.stderr.read().decode())
        context = f"seed {SEED}, step {step}, kill points: {tried}"
        got, want = _dump(faulted, tables), _dump(clean, tables)
        for t in tables:
            diff = [[(i, x, y) for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
                    for a, b in zip(got[t], want[t], strict=False) if a != b][:1]
            assert got[t] == want[t], (context, t, len(got[t]), len(want[t]), diff)
        assert _files(faulted) == _files(clean), context
        assert _leftovers(tmp_path) == [], context
    with duckdb.connect(str(pairs["synthetic"][1]), read_only=True) as con:
        assert con.execute("select count(*) from runs where status <> 'finished'"
                           ).fetchall()[0][0] == 0
    n = sum(k for s, (_, k, _) in STEPS.items() if not ONLY or s in ONLY) * FACTOR
    assert len(tried) == n
    print(f"fault injection (seed {SEED}): {n} kill points:", *tried, sep="\n  ")

