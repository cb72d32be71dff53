"""`featurize --engine ray` on a local Ray cluster (one for the module: Ray starts slowly).

Real warehouses (the synthetic demo atlas's images, real DuckDB files), the real network and
a real `ray.init(num_cpus=2)` cluster; the local engine is the reference.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ishwh import warehouse
from ishwh.device import torch_threads
from ishwh.errors import InvalidInput
from ishwh.features import featurize
from ishwh.progress import Silent

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'ishwh[ray]')")

from ishwh.ray.cluster import FAULT_ENV  # noqa: E402
from ishwh.ray.partitions import staging_dir  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from test_featurize_resume import _rows as vectors  # noqa: E402  (set name -> (ids, X))

REPO = Path(__file__).resolve().parents[1]
LAYERS = ["blocks.5"]
POOLS = ("max", "mean")
BOW = {"n_words": 20}  # set bow.w20: small codebooks for 48 small sections


class _Cluster:
    fault_dir: Path


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """One local cluster for every test here (each start costs ~10 s). Its workers see
    ``$ISHWH_RAY_FAULT_DIR``: a test that creates ``armed`` there kills one worker."""
    cluster = _Cluster()
    cluster.fault_dir = tmp_path_factory.mktemp("fault")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="error",
             runtime_env={"env_vars": {FAULT_ENV: str(cluster.fault_dir)}})
    yield cluster
    ray.shutdown()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The demo atlas (3 genes of one stage: 3 experiments, ~48 sections of 320x200) with its
    CNN sets made by the local engine; copy it with :func:`copy_images_only`."""
    from ishwh.synth import ingest_synthetic  # noqa: PLC0415

    db = tmp_path_factory.mktemp("ref") / "wh.duckdb"
    warehouse.init(db)
    ingest_synthetic(db, "demo", progress=False, n_genes=3, stages=("E13.5",))
    fresh = db.with_name("fresh.duckdb")
    shutil.copy(db, fresh)  # before features: the start of every Ray run
    featurize(db, layers=LAYERS, pools=POOLS, device="cpu", progress=False)
    featurize(db, extractor="bow", bow=BOW, device="cpu", progress=False)
    featurize(db, extractor="grid", progress=False)
    return db


def copy_fresh(reference: Path, dest: Path) -> Path:
    """A copy of the reference warehouse without features (images shared by symlink)."""
    dest.mkdir(parents=True, exist_ok=True)
    db = dest / "wh.duckdb"
    shutil.copy(reference.with_name("fresh.duckdb"), db)
    warehouse.images_dir(db).symlink_to(warehouse.images_dir(reference))
    return db


def counts(db: Path) -> tuple[int, int]:
    with warehouse.connect(db, read_only=True) as con:
        return con.execute("select (select count(*) from feature_sets), "
                           "(select count(*) from experiment_features)").fetchall()[0]


def assert_same_vectors(a: Path, b: Path, names: list[str]) -> None:
    """The sets ``names`` of warehouse ``b`` hold the vectors of ``a`` (max |diff| <= 1e-5),
    and ``b`` holds no other set."""
    va, vb = vectors(a), vectors(b)
    assert sorted(vb) == sorted(names) and set(names) <= set(va)
    for name in names:
        (ids, x), (ids_b, x_b) = va[name], vb[name]
        assert ids.tolist() == ids_b.tolist() and len(ids) == 3
        assert x.shape == x_b.shape and x.shape[1] > 100
        assert float(np.abs(x - x_b).max()) <= 1e-5, name


@pytest.mark.slow
def test_killed_driver_and_killed_worker_change_nothing(ray_cluster, reference, tmp_path):
    """A driver SIGKILLed after its first partition leaves whole partitions only and writes
    nothing; the rerun (from a file:// URL) computes only the missing ones while its actor
    dies in the middle of a partition (Ray restarts it and retries), and the vectors are the
    local engine's."""
    db = copy_fresh(reference, tmp_path)
    staging = staging_dir(db)
    # The driver: a real process joined to this cluster, killed when a partition is written.
    code = ("from ishwh.features import featurize; featurize("
            f"{str(db)!r}, layers={LAYERS!r}, pools={POOLS!r}, device='cpu', chunk_size=1, "
            f"engine='ray', ray={{'address': {ray.get_runtime_context().gcs_address!r}}})")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(staging.glob("part-*[0-9a-f]")) and proc.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.kill()
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, err.decode()
    parts = [p for p in staging.glob("part-*") if not p.name.endswith(".tmp")]
    assert 1 <= len(parts) < 3
    for p in parts:  # whole: every table of the partition is there
        assert sorted(f.name for f in p.iterdir()) == ["errors.parquet", "experiments.parquet"]
    assert counts(db)[1] == 0  # nothing reached the warehouse

    (ray_cluster.fault_dir / "armed").touch()  # the first actor to take a partition dies
    url = warehouse.images_dir(reference).resolve().as_uri()  # file:///...
    assert url.startswith("file:///")
    res = featurize(db, layers=LAYERS, pools=POOLS, device="cpu", chunk_size=1,
                           engine="ray", progress=False,
                           ray={"images": url, "cpus_per_worker": 0.5})
    assert (ray_cluster.fault_dir / "fired").exists()  # an actor did die
    assert res.partitions["first_sections"] > 0  # timed apart (the actors' start)
    assert {k: res.partitions[k] for k in ("total", "computed", "reused")} == \
        {"total": 3, "computed": 3 - len(parts), "reused": len(parts)}
    assert sorted(res.finished) == sorted(res.names)
    assert all(v == 3 for v in res.written.values())
    assert_same_vectors(reference, db, res.names)
    assert not staging.exists()  # partitions (and killed writes) are removed once ingested

    # Run again: nothing to do, nothing added.
    again = featurize(db, layers=LAYERS, pools=POOLS, device="cpu", chunk_size=1,
                             engine="ray", progress=False)
    assert again.written == {} and sorted(again.finished) == sorted(res.names)


def _table(db: Path, sql: str) -> list[tuple]:
    with warehouse.connect(db, read_only=True) as con:
        return con.execute(sql).fetchall()


@pytest.mark.slow
def test_bow_and_grid_on_ray_equal_the_local_engine(ray_cluster, reference, tmp_path):
    """Bag of words (codebooks made on the driver, words counted by two actors) and grid sets
    on Ray: the local engine's vectors, section counts, codebooks and stage records."""
    db = copy_fresh(reference, tmp_path)
    bow = featurize(db, extractor="bow", bow=BOW, device="cpu", chunk_size=2,
                           engine="ray", ray={"workers": 2}, progress=False)
    assert bow.names == ["bow.w20"] and bow.written == {"bow.w20": 3}
    assert {k: bow.partitions[k] for k in ("total", "computed", "reused")} == \
        {"total": 2, "computed": 2, "reused": 0}
    grid = featurize(db, extractor="grid", engine="ray", progress=False)
    assert grid.names == ["grid"] and grid.written == {"grid": 3}
    assert sorted(bow.finished + grid.finished) == ["bow.w20", "grid"]
    assert_same_vectors(reference, db, bow.names + grid.names)
    for sql in ("select f.name, s.section_id, s.vec from section_features s "
                "join feature_sets f using (feature_set_id) order by all",
                "select f.name, c.stage, c.scale, c.centers from codebooks c "
                "join feature_sets f using (feature_set_id) order by all",
                "select f.name, s.stage, s.status from feature_set_stages s "
                "join feature_sets f using (feature_set_id) order by all"):
        got = _table(db, sql)
        assert got and got == _table(reference, sql), sql
    assert not staging_dir(db).exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_address_is_one_line_and_writes_nothing(reference, tmp_path):
    db = copy_fresh(reference, tmp_path)
    # A subprocess: tests here may not open sockets, and a fresh process has no Ray connection.
    proc = subprocess.run(
        [sys.executable, "-m", "ishwh", "featurize", "--engine", "ray", "--address",
         f"ray://127.0.0.1:{_free_port()}", "--db", str(db), "--no-progress"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("Error: --address: cannot reach the Ray cluster at "
                               "ray://127.0.0.1:")
    assert "unexpected" not in lines[0]
    assert counts(db) == (0, 0)
    assert not staging_dir(db).exists()


@pytest.mark.slow
@pytest.mark.parametrize("extractor", [[], ["-e", "atlas", "--what", "stain,cnn"]],
                         ids=["cnn", "atlas"])
def test_workers_that_cannot_read_the_images_write_nothing(ray_cluster, reference, tmp_path,
                                                           extractor):
    from cli.app import app  # noqa: PLC0415

    db = copy_fresh(reference, tmp_path)
    missing = (tmp_path / "nowhere").as_uri()
    res = CliRunner().invoke(app, ["featurize", *extractor, "--engine", "ray", "--images",
                                   missing, "--db", str(db), "--no-progress"])
    assert res.exit_code == 1, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1, res.output
    assert lines[0].startswith("Error: --images: the Ray workers cannot read the images: "
                               f"cannot read image {missing}/")
    assert counts(db) == (0, 0)
    assert _table(db, "select count(*) from section_alignments") == [(0,)]
    assert not staging_dir(db).exists()


@pytest.mark.slow
def test_cli_error_on_a_private_cluster_is_one_stderr_line(reference, tmp_path):
    """The CLI starting its own Ray cluster: Ray's core worker announces its log level on the
    process's stderr; only ishwh's error line may reach the user."""
    db = copy_fresh(reference, tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    proc = subprocess.run(
        [sys.executable, "-m", "ishwh", "featurize", "--engine", "ray", "--images",
         (tmp_path / "nowhere").as_uri(), "--db", str(db), "--no-progress"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("Error: --images: the Ray workers cannot read the images")
    assert counts(db) == (0, 0)


def test_bad_ray_options_are_refused_by_name(reference, tmp_path):
    db = copy_fresh(reference, tmp_path)
    for opts, word in (({"workers": 0}, "workers"), ({"address": "nohost"}, "address"),
                       ({"images": "http://x/y"}, "http://"),
                       ({"cpus_per_worker": 0}, "cpus_per_worker")):
        with pytest.raises(InvalidInput, match=word):
            featurize(db, engine="ray", ray=opts, progress=False)
    assert counts(db) == (0, 0)


# --------------------------------------------------------------------------- atlas

ATLAS = {"extractor": "atlas", "atlas": {"what": ["stain", "cnn"]}, "device": "cpu",
         "chunk_size": 1}
ATLAS_SETS = ["atlas.stain", "atlas.cnn"]


@pytest.fixture(scope="module")
def atlas_reference(reference, tmp_path_factory) -> Path:
    """The demo atlas's structure features and placements made by the local engine. Torch
    on one thread, as a Ray actor with ``cpus_per_worker`` <= 1 runs it: convolutions round
    differently on another thread count (measured: 5.5e-5 on atlas.cnn values up to 60,
    local engine against itself), whichever engine runs them."""
    db = copy_fresh(reference, tmp_path_factory.mktemp("atlas"))
    with torch_threads(1):
        featurize(db, progress=False, **ATLAS)
    return db


class _CtrlC(Silent):
    """A user who presses Ctrl-C as soon as the first partition is on disk."""

    def advance(self, n: int = 1) -> None:
        raise KeyboardInterrupt


def _alignments(db: Path) -> list[tuple]:
    return _table(db, "select * exclude (created_at, displacement), displacement "
                      "from section_alignments order by section_id")


@pytest.mark.slow
def test_atlas_features_on_ray_equal_local_and_resume(ray_cluster, reference, atlas_reference,
                                                      tmp_path):
    """atlas.stain and atlas.cnn on Ray: a job interrupted after its first partition leaves
    that partition and nothing in the warehouse; the rerun computes the two others, and the
    vectors, seen counts and section placements are the local engine's."""
    db = copy_fresh(reference, tmp_path)
    staging = staging_dir(db)
    with torch_threads(1), pytest.raises(KeyboardInterrupt):
        featurize(db, engine="ray", progress=_CtrlC(), **ATLAS)
    parts = [p for p in staging.glob("part-*") if not p.name.endswith(".tmp")]
    assert len(parts) == 1
    assert sorted(f.stem for f in parts[0].iterdir()) == [
        "alignments", "errors", "experiments", "notes", "registration", "seen"]
    assert _table(db, "select (select count(*) from experiment_features), "
                      "(select count(*) from section_alignments)") == [(0, 0)]

    with torch_threads(1):
        res = featurize(db, engine="ray", progress=False, **ATLAS)
    assert {k: res.partitions[k] for k in ("total", "computed", "reused")} == \
        {"total": 3, "computed": 2, "reused": 1}
    assert res.written == dict.fromkeys(ATLAS_SETS, 3)
    assert sorted(res.finished) == sorted(ATLAS_SETS)
    assert_same_vectors(atlas_reference, db, ATLAS_SETS)
    sql = ("select f.name, s.structure_id, s.slot, s.n_sections_seen from "
           "feature_set_structures s join feature_sets f using (feature_set_id) order by all")
    assert _table(db, sql) == _table(atlas_reference, sql)
    assert any(r[3] > 0 for r in _table(db, sql))
    # Placements registered by the actors: the local rows, column for column; the
    # displacement grid to float32 rounding (a fresh registration's grid varies by that much
    # from process to process, local engine included: numpy reductions round by alignment).
    got, want = _alignments(db), _alignments(atlas_reference)
    assert len(got) == len(want) == 49  # every section of the 3 experiments
    assert [r[:-1] for r in got] == [r[:-1] for r in want]
    for g, w in zip(got, want, strict=True):
        assert (g[-1] is None) == (w[-1] is None)
        if g[-1] is not None:
            assert float(np.abs(np.subtract(g[-1], w[-1])).max()) <= 1e-4
    assert not staging.exists()


# --------------------------------------------------------------------------- annotate


def _predicted(db: Path, run: int) -> list[tuple]:
    with warehouse.connect(db, read_only=True) as con:
        return con.execute(
            "select experiment_id, structure_id, score, probability, called, raw_probability, "
            "raw_called, is_consistent from predicted_annotations where run_id = ? "
            "order by all", [run]).fetchall()


@pytest.fixture(scope="module")
def toy_models(tmp_path_factory) -> tuple[Path, int]:
    """A toy warehouse (no images) with production models trained at two stages, and the
    third stage annotated by the local engine (hierarchy-consistent)."""
    from toy_warehouse import make_toy_warehouse  # noqa: PLC0415

    from ishwh.annotate import annotate  # noqa: PLC0415
    from ishwh.fit import fit  # noqa: PLC0415

    db = tmp_path_factory.mktemp("annotate") / "wh.duckdb"
    atlas = make_toy_warehouse(db, n_genes=60, stages=("E11.5", "E13.5", "E15.5"),
                               structures_per_level=(3, 6), dim=32)
    sids = atlas.structure_ids.tolist()
    with warehouse.connect(db) as con, warehouse.transaction(con):
        for i, s in enumerate(sids[3:]):  # level 2 under level 1: a hierarchy to respect
            con.execute("update structures set parent_id = ? where structure_id = ?",
                        [sids[i % 3], s]).fetchall()
    (run,) = fit(db, "grid.toy", "E15.5", train_stages="E11.5,E13.5", holdout="none",
                 progress=False)
    annotate(db, run, "E15.5", consistent=True)
    return db, run


def test_annotate_on_ray_equals_local(ray_cluster, toy_models, tmp_path, monkeypatch):
    """The same predicted_annotations, row for row, from Ray tasks (blocks of 7 rows: the
    rows of a block never depend on the others), one of whose workers dies and is retried.
    Scores agree to float64 rounding: BLAS sums 7-row and 60-row blocks in other orders."""
    import ishwh.ray.annotate as ray_annotate  # noqa: PLC0415
    from ishwh.annotate import annotate  # noqa: PLC0415

    monkeypatch.setattr(ray_annotate, "ROWS_PER_TASK", 7)
    src, run = toy_models
    db = tmp_path / "wh.duckdb"
    shutil.copy(src, db)
    local = _predicted(db, run)
    assert len(local) == 60 * 9 and any(r[4] for r in local) and not all(r[4] for r in local)
    (ray_cluster.fault_dir / "armed").touch()
    out = annotate(db, run, "E15.5", consistent=True, engine="ray",
                   ray={"address": None, "cpus_per_worker": 0.5})
    assert (ray_cluster.fault_dir / "fired").exists()
    assert out["n_predictions"] == len(local)
    got = _predicted(db, run)  # replaced in one transaction
    # keys and calls: identical; scores and probabilities: up to float64 BLAS rounding
    def calls(rows):
        return [(r[0], r[1], r[4], r[6], r[7]) for r in rows]

    def floats(rows):
        return np.array([(r[2], r[3], r[5]) for r in rows])

    assert calls(got) == calls(local)
    assert float(np.abs(floats(got) - floats(local)).max()) <= 1e-12


def test_annotate_bad_address_is_one_line_and_writes_nothing(toy_models, tmp_path):
    src, run = toy_models
    db = tmp_path / "wh.duckdb"
    shutil.copy(src, db)
    before = _predicted(db, run)
    proc = subprocess.run(
        [sys.executable, "-m", "ishwh", "annotate", "--run", str(run), "--stage", "E13.5",
         "--engine", "ray", "--address", f"ray://127.0.0.1:{_free_port()}", "--db", str(db)],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("Error: --address: cannot reach the Ray cluster at ray://")
    assert "unexpected" not in lines[0]
    assert _predicted(db, run) == before
    with warehouse.connect(db, read_only=True) as con:  # nothing of E13.5 was written
        assert con.execute("select count(*) from predicted_annotations p join experiments e "
                           "using (experiment_id) where e.stage = 'E13.5'").fetchall() == [(0,)]
