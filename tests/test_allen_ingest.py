"""`ingest allen` end to end: an in-memory Allen API (recorded shapes + real Allen files)
into a real DuckDB warehouse, then again (idempotent, no requests) and offline."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from fake_allen import FakeAllenApi
from typer.testing import CliRunner

from cli.app import app
from ishwh import warehouse
from ishwh.allen.client import AllenClient
from ishwh.allen.ingest import ingest_allen, normalise_call
from ishwh.errors import InvalidInput, NetworkError
from ishwh.vocab import GRADES, PATTERNS

FIXTURES = Path(__file__).parent / "fixtures" / "allen"
REAL_IMAGE_SECTION = 1000010  # served the real ISH JPEG; the others get small JPEGs


def _load(name: str):
    return json.loads((FIXTURES / name).read_text())


def _api(allen_data: Path) -> FakeAllenApi:
    tree = json.loads((allen_data / "ontology/dmba_graph17_tree_from_brainmapr.json").read_text())
    rng = np.random.default_rng(0)
    small = cv2.imencode(".jpg", rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))[1].tobytes()
    grid = (allen_data / "grid/grid_data_download_69289763_Prox1_P56.zip").read_bytes()
    data_sets = _load("section_data_sets.json")
    return FakeAllenApi(
        ontology=tree,
        data_sets=data_sets,
        section_images={int(k): v for k, v in _load("section_images.json").items()},
        annotations={int(k): v for k, v in _load("manual_annotations.json").items()},
        images={REAL_IMAGE_SECTION: (allen_data / "images/Prox1_P56_sagittal_ISH_downsample2.jpg")
                .read_bytes()},
        default_image=small,
        grids={d["id"]: grid for d in data_sets},
    )


def _counts(db) -> dict[str, int]:
    with warehouse.connect(db, read_only=True) as con:
        return {t: con.execute(f"select count(*) from {t}").fetchall()[0][0]
                for t in ("structures", "genes", "experiments", "sections", "annotations",
                          "expression_grids")}


def test_normalise_call():
    assert normalise_call("Medium", GRADES) == ("medium", True)
    assert normalise_call("Regional", PATTERNS) == ("regional", True)
    assert normalise_call("Undetected", PATTERNS) == ("undetected", True)
    assert normalise_call("Cannot Annotate", GRADES) == (None, True)
    assert normalise_call("", GRADES) == (None, True)
    assert normalise_call(None, GRADES) == (None, True)
    assert normalise_call("Regional", GRADES) == (None, False)


def test_ingest_allen_end_to_end(db_path, allen_data, tmp_path):
    api = _api(allen_data)
    api.fail("section_image_download/1000020", "503")        # retried
    api.fail("section_image_download/1000030", "truncate")   # retried, never cached
    cache = tmp_path / "cache"
    client = AllenClient(cache, transport=api.transport(), backoff_s=0)
    out = ingest_allen(db_path, ["E11.5", "P4"], grid=True, client=client, progress=False)

    assert out["structures"] == 2692          # graph 17 + its root 15564
    assert out["genes"] == 5 and out["experiments"] == 10
    assert out["experiments_not_chosen"] == 1  # the non-delegate Prox1 E11.5 duplicate
    assert out["failures"]["count"] == 0
    assert out["unknown_structures"] == {"count": 1, "annotations": 1, "examples": [99999999]}
    assert out["unexpected_values"] == {"intensity_call='Strong'": 1}
    assert _counts(db_path) == {"structures": 2692, "genes": 5, "experiments": 10,
                                "sections": 28, "annotations": 61, "expression_grids": 10}

    with warehouse.connect(db_path, read_only=True) as con:
        # the delegate experiment won; stage and plane as the contract spells them
        assert con.execute("select experiment_id, stage, plane, source from experiments "
                           "where gene_id = 18893 order by stage").fetchall() == [
            (100007, "E11.5", "sagittal", "allen"), (100008, "P4", "sagittal", "allen")]
        # the real JPEG is stored content-addressed with its true size
        path, w, h, sha = con.execute(
            "select image_path, width, height, sha256 from sections where section_id = ?",
            [REAL_IMAGE_SECTION]).fetchall()[0]
        assert (w, h) == (2980, 1888) and path.startswith(sha[:2] + "/")
        assert (warehouse.images_dir(db_path) / path).is_file()
        # the failed section image is not ingested
        assert con.execute("select count(*) from sections where experiment_id = 100001"
                           ).fetchall()[0][0] == 2
        # "Cannot Annotate" and "" are unknown (NULL), never 'undetected'
        rows = con.execute("select pattern, intensity, density from annotations "
                           "where experiment_id = 100001 and structure_id = 111220530"
                           ).fetchall()
        assert rows == [(None, None, None)]
        assert con.execute("select pattern, intensity, density from annotations "
                           "where experiment_id = 100001 and structure_id = 15570"
                           ).fetchall() == [("regional", "high", "medium")]
        assert con.execute("select count(*) from annotations where structure_id = 99999999"
                           ).fetchall()[0][0] == 0
        nx, ny, nz, sp, n, first = con.execute(
            "select nx, ny, nz, spacing_um, len(energy), energy[1] from expression_grids "
            "where experiment_id = 100001").fetchall()[0]
        assert (nx, ny, nz, sp, n) == (67, 41, 58, 200.0, 67 * 41 * 58) and first == -1.0
        # labels view sees the annotations
        assert con.execute("select count(*) from labels").fetchall()[0][0] > 0

    # a second run: nothing new, and not a single request (everything is cached)
    n_requests = len(api.requests)
    again = ingest_allen(db_path, ["E11.5", "P4"], grid=True, client=client, progress=False)
    assert len(api.requests) == n_requests
    assert set(again["new_rows"].values()) <= {0}
    assert again["network"]["requests"] == 0

    # offline, from the cache only, into a fresh warehouse: the same content
    db2 = tmp_path / "offline.duckdb"
    warehouse.init(db2)
    ingest_allen(db2, ["E11.5", "P4"], grid=True, from_cache=cache, progress=False)
    assert _counts(db2) == _counts(db_path)


def test_failed_part_is_reported_and_a_rerun_completes_it(db_path, allen_data, tmp_path):
    api = _api(allen_data)
    api.fail("section_image_download/1000050", "404")  # one experiment cannot finish now
    client = AllenClient(tmp_path / "c", transport=api.transport(), backoff_s=0)
    out = ingest_allen(db_path, ["E11.5"], client=client, progress=False)
    assert out["failures"]["count"] == 1
    assert "sections of experiment 100005" in out["failures"]["examples"][0]
    assert _counts(db_path)["sections"] == 11  # 14, less the unfinished experiment's 3
    n = len(api.requests)
    again = ingest_allen(db_path, ["E11.5"], client=client, progress=False)
    assert again["failures"]["count"] == 0 and again["new_rows"]["sections"] == 3
    # only the unfinished experiment's images were asked for; the rest came from the cache
    assert api.requests[n:] == [
        f"http://api.brain-map.org/api/v2/section_image_download/{i}?downsample=4"
        for i in (1000050, 1000051, 1000052)]


def test_fetch_grid_annotation(allen_data, tmp_path):
    import io
    import zipfile

    from ishwh.allen.ingest import fetch_grid_annotation

    arr = np.load(allen_data / "grid/E11.5_gridAnnotation_70x75x40_from_brainmapr.npy")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("gridAnnotation.mhd", "DimSize = 70 75 40\nElementType = MET_UINT\n"
                    "ElementSpacing = 80 80 80\nElementDataFile = gridAnnotation.raw\n")
        zf.writestr("gridAnnotation.raw", arr.flatten(order="F").tobytes())
    api = FakeAllenApi(grid_annotations={"E11.5": buf.getvalue()})
    with AllenClient(tmp_path / "c", transport=api.transport(), backoff_s=0) as client:
        vol = fetch_grid_annotation(client, "E11.5")
    assert np.array_equal(vol.data, arr) and vol.spacing_um == (80.0, 80.0, 80.0)
    assert api.requests == ["http://download.alleninstitute.org/informatics-archive/"
                            "current-release/mouse_annotation/E11pt5_DevMouse2012_gridAnnotation.zip"]


def test_ingest_genes_limit_and_no_images(db_path, allen_data, tmp_path):
    api = _api(allen_data)
    client = AllenClient(tmp_path / "c", transport=api.transport(), backoff_s=0)
    out = ingest_allen(db_path, ["P4"], genes=["Shh", "Nope"], images=False, client=client,
                       progress=False)
    assert out["genes"] == 1 and out["experiments"] == 1 and out["missing_genes"] == ["Nope"]
    assert not any("section_image" in u for u in api.requests)
    out = ingest_allen(db_path, ["E11.5"], limit=2, images=False, client=client, progress=False)
    assert out["genes"] == 2  # Dlx1, Gad1 (first by acronym)
    with warehouse.connect(db_path, read_only=True) as con:
        assert sorted(r[0] for r in con.execute("select acronym from genes").fetchall()) == [
            "Dlx1", "Gad1", "Shh"]
        assert con.execute("select count(*) from sections").fetchall()[0][0] == 0


def test_ingest_rejects_bad_arguments(db_path, tmp_path):
    with pytest.raises(InvalidInput, match="^unknown stage E12") as err:
        ingest_allen(db_path, ["E12"], from_cache=tmp_path)
    assert err.value.param == "stage"  # the command line names the flag: --stage
    with pytest.raises(InvalidInput, match="cannot be combined"):
        ingest_allen(db_path, ["P4"], genes=["Shh"], limit=3, from_cache=tmp_path)
    with pytest.raises(InvalidInput, match="from_cache and cache_dir"):
        ingest_allen(db_path, ["P4"], cache_dir=tmp_path, from_cache=tmp_path)


def test_unreachable_api_stops_with_one_line(db_path, tmp_path):
    api = FakeAllenApi()
    api.fail("structure_graph_download", *["drop"] * 5)
    client = AllenClient(tmp_path / "c", transport=api.transport(), backoff_s=0, retries=2)
    with pytest.raises(NetworkError, match="cannot reach api.brain-map.org"):
        ingest_allen(db_path, ["P4"], client=client, progress=False)


def test_cli_help_and_offline_run(db_path, allen_data, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["ingest", "allen", "--help"])
    assert res.exit_code == 0 and "--from-cache" in res.output and "--stage" in res.output
    # fill a cache through the library, then build offline with the CLI
    api = _api(allen_data)
    client = AllenClient(tmp_path / "cache", transport=api.transport(), backoff_s=0)
    ingest_allen(db_path, ["P4"], genes=["Gad1"], images=False, client=client, progress=False)
    db2 = tmp_path / "cli.duckdb"
    warehouse.init(db2)
    res = runner.invoke(app, ["ingest", "allen", "--stage", "P4", "--genes", "Gad1",
                              "--no-images", "--from-cache", str(tmp_path / "cache"),
                              "--db", str(db2), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["genes"] == 1 and out["offline"] is True
    assert out["unknown_structures"]["count"] == 1
    # a stage never fetched: one clear line, exit 1
    res = runner.invoke(app, ["ingest", "allen", "--stage", "E11.5", "--from-cache",
                              str(tmp_path / "cache"), "--db", str(db2)])
    assert res.exit_code == 1
    assert "not in the Allen cache" in res.output and "Traceback" not in res.output


def test_long_gene_lists_are_queried_in_chunks(db_path, allen_data, tmp_path, monkeypatch):
    import ishwh.allen.ingest as ingest_mod

    monkeypatch.setattr(ingest_mod, "_GENES_PER_QUERY", 2)
    api = _api(allen_data)
    client = AllenClient(tmp_path / "c", transport=api.transport(), backoff_s=0)
    out = ingest_allen(db_path, ["P4"], genes=["Shh", "Pax6", "Gad1", "Shh"], images=False,
                       client=client, progress=False)
    assert out["genes"] == 3 and out["missing_genes"] == []
    assert sum("model::SectionDataSet" in u for u in api.requests) == 2
    with pytest.raises(InvalidInput, match="not a gene acronym"):
        ingest_allen(db_path, ["P4"], genes=["it's"], client=client, progress=False)


def test_ontology_falls_back_to_flat_structure_rows(allen_data, tmp_path):
    from ishwh.allen.ingest import fetch_ontology

    api = _api(allen_data)
    api.fail("structure_graph_download", "404")
    with AllenClient(tmp_path / "c", transport=api.transport(), backoff_s=0) as client:
        rows = fetch_ontology(client)
    assert len(rows) == 2691  # the flat rows (graph 17 without its root), in 2 pages
    assert sum("model::Structure," in u for u in api.requests) == 2
    assert {r["level"] for r in rows} == set(range(0, 14))


def test_killed_run_resumes_without_refetching(db_path, allen_data, tmp_path):
    api = _api(allen_data)
    api.fail("section_image_download/1000071", "kill")
    client = AllenClient(tmp_path / "c", transport=api.transport(), backoff_s=0,
                         concurrency=1)
    with pytest.raises(KeyboardInterrupt):
        ingest_allen(db_path, ["E11.5", "P4"], client=client, progress=False)
    partial = _counts(db_path)
    assert 0 < partial["sections"] < 28 and partial["annotations"] == 0
    with warehouse.connect(db_path, read_only=True) as con:  # no half-loaded experiment
        per_exp = dict(con.execute("select experiment_id, count(*) from sections "
                                   "group by all").fetchall())
    assert all(n == (2 if eid in (100001, 100002) else 3) for eid, n in per_exp.items())
    fetched = {u for u in api.requests if "section_image_download" in u}
    n = len(api.requests)
    out = ingest_allen(db_path, ["E11.5", "P4"], client=client, progress=False)
    assert _counts(db_path)["sections"] == 28 and out["failures"]["count"] == 0
    again = [u for u in api.requests[n:] if "section_image_download" in u]
    assert not (set(again) & (fetched - {q_url(1000071)}))  # nothing fetched twice
    assert not list((tmp_path / "c").rglob("*.part"))


def q_url(section_image_id: int) -> str:
    return ("http://api.brain-map.org/api/v2/section_image_download/"
            f"{section_image_id}?downsample=4")
