"""Issue 14: nothing lost, nothing let in, every failure named.

One test (or a few) per class of failure, on real DuckDB files, real images and real cache
files, through the command line where a user would meet the failure. Every CLI error here
is also checked for the word "unexpected" (an unnamed exception).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import duckdb
import numpy as np
import pytest
from typer.testing import CliRunner

from cli.app import app
from ishwh import images, manifest, warehouse
from ishwh.allen.client import AllenClient
from ishwh.errors import InvalidInput, IshwhError
from ishwh.features import imageio

sys.path.insert(0, str(Path(__file__).parent))
from test_manifest import SECTIONS, STRUCTURES, make_manifest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def cli(*args) -> object:
    res = runner.invoke(app, [str(a) for a in args])
    assert "unexpected" not in res.stderr, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    return res


def refused(*args) -> str:
    """Run a CLI command that must fail with one named error; return its stderr."""
    res = cli(*args)
    assert res.exit_code == 1, (res.exit_code, res.output)
    assert res.stderr.splitlines()[-1].startswith("Error: "), res.stderr
    return res.stderr


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def counts(db: Path) -> dict[str, int]:
    with warehouse.connect(db, read_only=True) as con:
        return {t: con.execute(f"select count(*) from {t}").fetchall()[0][0]
                for t in ("genes", "experiments", "sections", "annotations", "feature_sets",
                          "runs", "splits")}


@pytest.fixture(scope="module")
def synth_manifest(tmp_path_factory) -> Path:
    """A real manifest folder of the synthetic atlas (3 genes, E13.5)."""
    from ishwh.synth import write_manifest

    out = tmp_path_factory.mktemp("synth") / "m"
    write_manifest(out, "demo", genes=3, stages=("E13.5",))
    return out


@pytest.fixture(scope="module")
def filled_master(tmp_path_factory, synth_manifest) -> Path:
    db = tmp_path_factory.mktemp("filled") / "wh.duckdb"
    warehouse.init(db)
    manifest.ingest_dir(db, synth_manifest)
    return db


@pytest.fixture
def filled(tmp_path, filled_master) -> Path:
    """A copy of a real warehouse with the synthetic manifest ingested."""
    db = tmp_path / "wh.duckdb"
    shutil.copy(filled_master, db)
    shutil.copytree(warehouse.images_dir(filled_master), warehouse.images_dir(db))
    return db


# --------------------------------------------------------------------------- 1. exports


def test_sql_out_never_replaces_the_warehouse_or_its_images(filled):
    before = sha(filled)
    err = refused("sql", "select 1 as x", "--format", "csv", "--out", filled, "--db", filled)
    assert "is the warehouse" in err
    # --force does not make the warehouse an output either
    refused("sql", "select 1 as x", "--format", "csv", "--out", filled, "--force", "--db", filled)
    assert sha(filled) == before
    one = next(warehouse.images_dir(filled).rglob("*.jpg"))
    img_before = sha(one)
    refused("sql", "select 1 as x", "--format", "parquet", "--out", one, "--force",
            "--db", filled)
    assert sha(one) == img_before
    refused("sql", "select 1 as x", "--format", "json", "--out",
            warehouse.images_dir(filled) / "new.json", "--db", filled)
    assert not (warehouse.images_dir(filled) / "new.json").exists()
    refused("report", "--out", filled, "--db", filled)
    assert sha(filled) == before


def test_sql_out_refuses_existing_files_and_missing_folders_and_writes_atomically(filled,
                                                                                   tmp_path):
    out = tmp_path / "genes.csv"
    out.write_text("precious\n")
    err = refused("sql", "select acronym from genes", "--format", "csv", "--out", out,
                  "--db", filled)
    assert "already exists" in err and "--force" in err
    assert out.read_text() == "precious\n"
    res = cli("sql", "select acronym from genes order by 1", "--format", "csv", "--out", out,
              "--force", "--db", filled)
    assert res.exit_code == 0, res.output
    assert out.read_text().splitlines()[0] == "acronym" and len(out.read_text().splitlines()) == 4
    err = refused("sql", "select 1 as x", "--format", "csv", "--out",
                  tmp_path / "missing" / "x.csv", "--db", filled)
    assert "does not exist" in err
    assert not (tmp_path / "missing").exists()
    # a failing query writes nothing at all (no empty file, no temporary file)
    refused("sql", "select * from no_such_table", "--format", "csv", "--out",
            tmp_path / "new.csv", "--db", filled)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["genes.csv", "wh.duckdb",
                                                          "wh_images"]


# --------------------------------------------------------------------------- 2, 3. paths


def test_manifest_image_paths_stay_inside_the_folder(db_path, tmp_path):
    outside = tmp_path / "outside.png"
    shutil.copy(make_manifest(tmp_path / "base") / "img/gray.png", outside)
    sections = SECTIONS + (f"Gli3,E11.5,300,1,../outside.png,,\n"
                           f"Gli3,E11.5,300,2,{outside},,\n"
                           f"Gli3,E11.5,300,3,img/../../outside.png,,\n")
    folder = make_manifest(tmp_path / "m", sections_csv=sections)
    err = refused("ingest", "dir", folder, "--db", db_path)
    assert "sections.csv:5: image ../outside.png leads outside the manifest folder" in err
    assert f"sections.csv:6: image {outside} is an absolute path" in err
    assert "sections.csv:7: image img/../../outside.png leads outside" in err
    assert counts(db_path)["sections"] == 0
    assert not any(p.is_file() for p in warehouse.images_dir(db_path).rglob("*"))


def test_link_stores_the_real_file_never_a_link_that_dangles(db_path, tmp_path):
    folder = make_manifest(tmp_path / "m")
    # a relative symbolic link inside the folder: followed to its real file
    (folder / "img" / "alias.png").symlink_to("gray.png")
    sections = SECTIONS + "Gli3,E11.5,300,1,img/alias.png,,\n"
    (folder / "sections.csv").write_text(sections)
    res = cli("ingest", "dir", folder, "--link", "--db", db_path)
    assert res.exit_code == 0, res.output
    with warehouse.connect(db_path, read_only=True) as con:
        stored = [r[0] for r in con.execute("select image_path from sections").fetchall()]
    for rel in stored:
        path = warehouse.images_dir(db_path) / rel
        assert path.exists(), f"{rel} does not resolve"
        assert not path.is_symlink()  # same file system: a hard link to the real file
    # the link in the folder may go away: the warehouse keeps the real bytes
    (folder / "img" / "alias.png").unlink()
    assert all((warehouse.images_dir(db_path) / rel).exists() for rel in stored)


# --------------------------------------------------------------------------- 4. Allen cache


def _offline_client(cache: Path) -> AllenClient:
    return AllenClient(cache, offline=True)


def test_allen_cache_record_cannot_lead_outside_the_cache(tmp_path, allen_data):
    cache = tmp_path / "cache"
    client = AllenClient(cache)
    url = "http://api.brain-map.org/api/v2/section_image_download/1?downsample=4"
    meta = client._meta_path(url)
    meta.parent.mkdir(parents=True)
    secret = allen_data / "images/Prox1_P56_sagittal_ISH_downsample2.jpg"
    rel = os.path.relpath(secret, meta.parent)
    meta.write_text(json.dumps({"url": url, "file": rel, "size": secret.stat().st_size,
                                "sha256": images.sha256_file(secret)}))
    with pytest.raises(InvalidInput, match="outside the cache") as exc:
        _offline_client(cache).download(url)
    assert str(meta) in str(exc.value)
    assert meta.exists()  # never deleted


def test_from_cache_never_deletes_and_names_the_damaged_file(tmp_path):
    cache = tmp_path / "cache"
    url = "http://api.brain-map.org/api/v2/data/query.json?criteria=model::Gene"
    path = AllenClient(cache)._json_path(url)
    path.parent.mkdir(parents=True)
    path.write_text('{"success": true, "msg": [')
    with pytest.raises(InvalidInput, match="damaged file in the Allen cache") as exc:
        _offline_client(cache).get_json(url)
    assert str(path) in str(exc.value)
    assert path.read_text() == '{"success": true, "msg": ['
    # deeply nested JSON: named too, and kept
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InvalidInput, match="RecursionError"):
        _offline_client(cache).get_json(url)
    assert path.exists()


# --------------------------------------------------------------------------- 5. corruption


def _overwrite_used_block(db: Path) -> None:
    """Overwrite bytes inside a block the genes table lives in (a real used block)."""
    with duckdb.connect(str(db), read_only=True) as con:
        block = con.execute("select max(block_id) from pragma_storage_info('sections') "
                            "where block_id >= 0").fetchall()[0][0]
    offset = 3 * 4096 + block * 262144 + 1000
    with db.open("r+b") as f:
        f.seek(offset)
        f.write(np.random.default_rng(1).bytes(64))


def test_init_refuses_a_truncated_warehouse_and_leaves_it_untouched(filled):
    with filled.open("r+b") as f:
        f.truncate(filled.stat().st_size - 262144 - 100)
    before = sha(filled)
    err = refused("init", "--db", filled)
    assert "is damaged" in err and "cut short" in err
    assert sha(filled) == before and not Path(str(filled) + ".wal").exists()
    assert "is damaged" in refused("status", "--db", filled)
    assert "is damaged" in refused("ingest", "synthetic", "--genes", "2", "--db", filled)
    assert sha(filled) == before


def test_init_refuses_overwritten_bytes_and_status_says_so(filled):
    _overwrite_used_block(filled)
    before = sha(filled)
    err = refused("init", "--db", filled)
    assert "is damaged" in err and "fails its checksum" in err
    assert sha(filled) == before
    assert "is damaged" in refused("status", "--db", filled)
    assert sha(filled) == before
    with pytest.raises(IshwhError, match="damaged"):
        with warehouse.connect(filled):
            pass


def test_auto_integrity_checks_blocks_below_the_limit_headers_above_it(filled, monkeypatch):
    from ishwh import integrity

    _overwrite_used_block(filled)
    with pytest.raises(integrity.WarehouseCorrupt):     # auto, file below the limit: full
        integrity.check_file(filled)
    monkeypatch.setattr(integrity, "AUTO_FULL_LIMIT", filled.stat().st_size - 1)
    integrity.check_file(filled)                        # auto above the limit: headers only
    monkeypatch.setenv("ISHWH_INTEGRITY", "full")
    with pytest.raises(integrity.WarehouseCorrupt):
        integrity.check_file(filled)
    monkeypatch.delenv("ISHWH_INTEGRITY")
    assert "is damaged" in refused("status", "--db", filled)   # status checks every block
    monkeypatch.setenv("ISHWH_INTEGRITY", "thorough")
    err = refused("init", "--db", filled)
    assert "ISHWH_INTEGRITY" in err and "auto" in err


def test_a_healthy_warehouse_passes_the_check_after_deletes(filled):
    from ishwh.integrity import check_file

    with warehouse.connect(filled) as con:
        con.execute("delete from annotations").fetchall()
        con.execute("checkpoint").fetchall()
    check_file(filled)
    assert cli("status", "--db", filled).exit_code == 0


# --------------------------------------------------------------------------- 6. bombs


def png_bomb(path: Path, w: int, h: int) -> None:
    """A real, complete PNG of w x h black gray pixels, compressed to a few hundred kB."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    co = zlib.compressobj(1)
    rows = b"\0" * ((w + 1) * 500)
    body = b"".join(co.compress(rows) for _ in range(h // 500)) + co.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", body) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    png_bomb(path, 20_000, 20_000)
    return path


def test_decompression_bomb_is_refused_from_its_header(db_path, tmp_path, bomb):
    assert bomb.stat().st_size < 2_000_000
    folder = make_manifest(tmp_path / "m")
    shutil.copy(bomb, folder / "img" / "bomb.png")
    (folder / "sections.csv").write_text(SECTIONS + "Gli3,E11.5,300,1,img/bomb.png,,\n")
    err = refused("ingest", "dir", folder, "--db", db_path)
    assert ("sections.csv:5: image img/bomb.png: image too large: 20,000 x 20,000 pixels "
            f"(limit {images.DEFAULT_MAX_PIXELS:,})") in err
    assert counts(db_path)["sections"] == 0
    # featurize's decoder refuses it too, before decoding
    with pytest.raises(images.ImageTooLarge, match="image too large: 20,000 x 20,000"):
        imageio.read_bytes(bomb)


def test_peak_memory_of_ingest_stays_bounded_with_a_bomb(db_path, tmp_path, bomb):
    """Decoding the 20,000 x 20,000 bomb would take 1.2 GB (RGB); refused from its header,
    the whole ingest process stays far below that."""
    folder = make_manifest(tmp_path / "m")
    shutil.copy(bomb, folder / "img" / "bomb.png")
    (folder / "sections.csv").write_text(SECTIONS + "Gli3,E11.5,300,1,img/bomb.png,,\n")
    probe = ("import resource, subprocess, sys; "
             "r = subprocess.run([sys.executable, '-m', 'ishwh', *sys.argv[1:]]); "
             "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    res = subprocess.run([sys.executable, "-c", probe, "ingest", "dir", str(folder), "--db",
                          str(db_path)], cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    code, peak_kb = map(int, res.stdout.split())
    assert code == 1 and "image too large" in res.stderr, res.stderr
    assert peak_kb < 600_000, f"peak RSS {peak_kb / 1e3:.0f} MB"


def test_pixel_limit_is_configurable(tmp_path, monkeypatch, allen_data):
    real = allen_data / "images/Prox1_P56_sagittal_ISH_downsample2.jpg"  # 2980 x 1888
    assert images.image_size(real) == (2980, 1888)
    with pytest.raises(images.ImageTooLarge, match=r"2,980 x 1,888 pixels \(limit 1,000,000\)"):
        images.image_size(real, max_pixels=1_000_000)
    monkeypatch.setenv("ISHWH_MAX_PIXELS", "1000000")
    with pytest.raises(images.ImageTooLarge):
        images.image_size(real)
    with pytest.raises(images.ImageTooLarge):
        imageio.read_bytes(real)
    monkeypatch.setenv("ISHWH_MAX_PIXELS", "lots")
    with pytest.raises(InvalidInput, match="ISHWH_MAX_PIXELS"):
        images.image_size(real)


def test_allen_download_above_the_limit_is_a_named_failure(db_path, allen_data, tmp_path,
                                                           monkeypatch):
    from test_allen_ingest import _api

    from ishwh.allen.ingest import ingest_allen

    monkeypatch.setenv("ISHWH_MAX_PIXELS", "1000000")  # the real 2980 x 1888 JPEG is above
    client = AllenClient(tmp_path / "cache", transport=_api(allen_data).transport(),
                         backoff_s=0)
    out = ingest_allen(db_path, ["E11.5", "P4"], client=client, progress=False)
    assert out["failures"]["count"] == 1
    assert "image too large: 2,980 x 1,888 pixels" in out["failures"]["examples"][0]


# --------------------------------------------------------------------------- 7. load clash


def test_a_clash_during_a_load_names_its_cause(tmp_path, synth_manifest):
    db = tmp_path / "wh.duckdb"
    cli("init", "--db", db)
    assert cli("ingest", "dir", synth_manifest, "--db", db).exit_code == 0
    before = counts(db)
    err = refused("ingest", "synthetic", "--genes", "5", "--stages", "E13.5", "--db", db)
    assert "is already in the warehouse" in err
    assert f"dir:{synth_manifest.resolve()}" in err  # where the clashing gene came from
    assert "acronym" in err
    assert counts(db) == before


# --------------------------------------------------------------------------- 8, 9, 10 input


def test_numbers_out_of_range_are_file_line_problems(db_path, tmp_path):
    sections = SECTIONS + (f"Gli3,E11.5,{2**63},1,img/gray.png,,\n"
                           f"Gli3,E11.5,{10**15},1,img/gray.png,,\n")
    structures = STRUCTURES + f"{2**64},Huge,huge,1,4\n5,X,x,{2**63},4\n"
    folder = make_manifest(tmp_path / "m", sections_csv=sections, structures_csv=structures)
    err = refused("ingest", "dir", folder, "--db", db_path)
    assert f"sections.csv:5: experiment_id {2**63} is out of range" in err
    assert f"sections.csv:6: experiment_id {10**15} is out of range" in err
    assert f"structures.csv:6: structure_id {2**64} is out of range" in err
    assert f"structures.csv:7: parent_id {2**63} is out of range" in err


def test_deeply_nested_ontology_is_a_named_problem(db_path, tmp_path):
    folder = make_manifest(tmp_path / "m", structures_csv=None,
                           ontology_json='{"msg": ' + "[" * 50_000 + "]" * 50_000 + "}")
    err = refused("ingest", "dir", folder, "--db", db_path)
    assert "ontology.json: nested too deeply" in err


def test_non_utf8_csv_names_its_line(db_path, tmp_path):
    folder = make_manifest(tmp_path / "m")
    latin1 = b"Gl\xe9,E11.5,300,1,img/gray.png,,\n"
    (folder / "sections.csv").write_bytes(SECTIONS.encode() + latin1)
    err = refused("ingest", "dir", folder, "--db", db_path)
    assert "sections.csv:5: not UTF-8 text (byte 0xe9)" in err


def test_a_broken_ontology_is_reported_once_not_per_annotation(db_path, tmp_path):
    annotations = "experiment_id,structure,pattern,intensity,density\n" + "".join(
        f"100,S{i},full,high,high\n" for i in range(300))
    folder = make_manifest(tmp_path / "m", structures_csv=None, ontology_json='{"msg": [',
                           annotations_csv=annotations)
    res = cli("ingest", "dir", folder, "--db", db_path)
    problems = [x for x in res.stderr.splitlines() if x.startswith("  ")]
    assert problems[0].startswith("  ontology.json:1: not valid JSON")
    assert "annotations.csv: 300 row(s) name structures" in res.stderr
    assert len(problems) <= 3, problems


# --------------------------------------------------------------------------- 11. machine


def test_disk_full_while_exporting_is_named_and_leaves_nothing(filled, tmp_path):
    """A file-size limit (RLIMIT_FSIZE) stands in for a full disk: writes fail with EFBIG."""
    out = tmp_path / "big.csv"
    code = (
        "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        "resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000)); "
        "from cli.app import app; sys.argv = ['ishwh'] + sys.argv[1:]; app()"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, "sql", "select range as i, repeat('x', 50) as s "
         "from range(10000)", "--format", "csv", "--out", str(out), "--db", str(filled)],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 1, res.stderr
    assert "unexpected" not in res.stderr
    assert res.stderr.startswith("Error: cannot write") and "file too large" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wh.duckdb", "wh_images"]


def test_disk_full_while_ingesting_is_named_and_ingests_nothing(db_path, synth_manifest):
    code = (
        "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        "resource.setrlimit(resource.RLIMIT_FSIZE, (10000, 10000)); "
        "from cli.app import app; sys.argv = ['ishwh'] + sys.argv[1:]; app()"
    )
    res = subprocess.run([sys.executable, "-c", code, "ingest", "dir", str(synth_manifest),
                          "--db", str(db_path)], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 1 and "unexpected" not in res.stderr, res.stderr
    assert res.stderr.startswith("Error: cannot write") and "file too large" in res.stderr
    assert counts(db_path)["sections"] == 0
    assert not list(db_path.parent.rglob("*.part"))
    assert cli("ingest", "dir", synth_manifest, "--db", db_path).exit_code == 0  # then resumes
    assert counts(db_path)["sections"] > 0


def test_missing_or_blocked_folders_are_named(tmp_path, filled):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    err = refused("init", "--db", blocker / "wh.duckdb")
    assert "not a folder" in err, err
    err = refused("sql", "select 1 as x", "--format", "csv", "--out", blocker / "x.csv",
                  "--db", filled)
    assert f"the folder {blocker} of {blocker / 'x.csv'} is not a folder" in err
    err = refused("synth", "write", blocker / "m", "--genes", "2")
    assert "not a folder" in err, err


# --------------------------------------------------------------------------- 12. leftovers


def test_part_files_of_a_killed_writer_are_cleaned_on_the_next_write(filled, synth_manifest):
    root = warehouse.images_dir(filled)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = root / "ab" / f"abcdef.png.{dead}.139872.part"
    stale.parent.mkdir(exist_ok=True)
    stale.write_bytes(b"half an image")
    mine = root / "ab" / f"abcdef.png.{os.getpid()}.139872.part"  # a live writer's file
    mine.write_bytes(b"being written")
    assert cli("ingest", "dir", synth_manifest, "--db", filled).exit_code == 0  # adds nothing
    assert not stale.exists()
    assert mine.exists()


# --------------------------------------------------------------------------- 13. views


def test_a_dropped_view_is_noticed_with_the_init_hint(filled):
    with duckdb.connect(str(filled)) as con:
        con.execute("drop view level_auc")
    for args in (("status",), ("sql", "-q", "level_auc")):
        err = refused(*args, "--db", filled)
        assert "views" in err and f"ishwh init --db {filled}" in err
    assert cli("init", "--db", filled).exit_code == 0
    assert cli("sql", "-q", "level_auc", "--db", filled).exit_code == 0


# --------------------------------------------------------------------------- 14. device


@pytest.fixture
def no_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: --device cuda is valid here")


def test_device_cuda_without_a_gpu_writes_nothing(no_gpu, filled, tmp_path):
    before = counts(filled)
    wh_before = sha(filled)
    for args in (("fit", "--features", "grid", "--stage", "E13.5"),
                 ("featurize", "--extractor", "cnn"),
                 ("featurize", "--extractor", "bow")):
        err = refused(*args, "--device", "cuda", "--db", filled)
        assert "no CUDA GPU" in err
    assert counts(filled) == before and sha(filled) == wh_before
    demo_out = tmp_path / "demo"
    err = refused("demo", "--out", demo_out, "--device", "cuda")
    assert "no CUDA GPU" in err and not demo_out.exists()
    assert "unknown device" in refused("fit", "--features", "grid", "--stage", "E13.5",
                                       "--device", "tpu", "--db", filled)


# --------------------------------------------------------------------------- every error named

# Errors a user can provoke from the command line ({db}: a filled warehouse, {tmp}: a temp
# folder, {file}: a plain file). Each must end in one named line: never "unexpected".
ERROR_CASES = [
    ["status", "--db", "{tmp}/none.duckdb"],
    ["status", "--db", "{file}"],
    ["init", "--db", "{file}/wh.duckdb"],
    ["sql", "selec 1", "--db", "{db}"],
    ["sql", "drop table genes", "--db", "{db}"],
    ["sql", "copy genes to '{tmp}/x.csv'", "--db", "{db}"],
    ["sql", "attach '{tmp}/other.duckdb'", "--db", "{db}"],
    ["sql", "select * from nope", "--db", "{db}"],
    ["sql", "-q", "nope", "--db", "{db}"],
    ["sql", "select 1", "-q", "level_auc", "--db", "{db}"],
    ["sql", "select 1/0 as x, 'a'::int as y", "--db", "{db}"],
    ["sql", "select 1", "--format", "xml", "--db", "{db}"],
    ["sql", "select 1", "--format", "parquet", "--db", "{db}"],
    ["sql", "select 1 as x", "--format", "csv", "--out", "{db}", "--db", "{db}"],
    ["sql", "select 1 as x", "--format", "csv", "--out", "{tmp}", "--db", "{db}"],
    ["fit", "--features", "nope", "--stage", "E13.5", "--db", "{db}"],
    ["fit", "--features", "grid", "--stage", "E99", "--db", "{db}"],
    ["fit", "--features", "grid", "--stage", "E13.5", "--levels", "x-y", "--db", "{db}"],
    ["featurize", "--extractor", "nope", "--db", "{db}"],
    ["featurize", "--extractor", "cnn", "--pool", "median", "--db", "{db}"],
    ["featurize", "--extractor", "grid", "--db", "{db}"],
    ["featurize", "--extractor", "cnn", "--weights", "{file}", "--device", "cpu",
     "--db", "{db}"],
    ["report", "--out", "{tmp}/r", "--db", "{db}"],
    ["report", "--out", "{tmp}/r", "--runs", "1,x", "--db", "{db}"],
    ["ingest", "dir", "{tmp}/no_folder", "--db", "{db}"],
    ["ingest", "dir", "{file}", "--db", "{db}"],
    ["ingest", "synthetic", "--preset", "nope", "--db", "{db}"],
    ["ingest", "synthetic", "--set", "nope=1", "--db", "{db}"],
    ["ingest", "synthetic", "--genes", "3", "--db", "{tmp}/none.duckdb"],
    ["ingest", "allen", "--stage", "E12", "--from-cache", "{tmp}", "--db", "{db}"],
    ["ingest", "allen", "--stage", "P4", "--from-cache", "{tmp}/nope", "--db", "{db}"],
    ["ingest", "allen", "--stage", "P4", "--from-cache", "{tmp}", "--db", "{db}"],
    ["synth", "write", "{file}", "--genes", "2"],
]


def test_every_cli_error_is_named(filled, tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("not a warehouse, not a folder\n" * 50)
    fill = {"db": str(filled), "tmp": str(tmp_path), "file": str(plain)}
    unnamed = []
    for case in ERROR_CASES:
        args = [a.format(**fill) for a in case]
        res = runner.invoke(app, args)
        if res.exit_code == 0 or "unexpected" in res.stderr or "Traceback" in res.stderr \
                or not res.stderr.strip():
            unnamed.append((case, res.exit_code, res.stderr[-300:]))
    assert unnamed == [], unnamed
