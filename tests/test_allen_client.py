"""The Allen API client against an in-memory API (httpx MockTransport; no sockets)."""

from __future__ import annotations

import json

import cv2
import httpx
import numpy as np
import pytest
from fake_allen import FakeAllenApi

from ishwh.allen import queries as q
from ishwh.allen.client import AllenClient, check_image, check_zip
from ishwh.errors import NetworkError, NotFound


def _jpeg(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", img)[1].tobytes()


def _data_sets(n: int) -> list[dict]:
    return [{"id": 1000 + i, "delegate": True, "failed": False,
             "genes": [{"id": i, "acronym": f"G{i}", "name": None, "entrez_id": None}],
             "specimen": {"donor": {"age": {"name": "E11.5"}}},
             "plane_of_section": {"name": "sagittal"}} for i in range(n)]


def _client(api: FakeAllenApi, tmp_path, **kw) -> AllenClient:
    kw.setdefault("backoff_s", 0)
    return AllenClient(tmp_path / "cache", transport=api.transport(), **kw)


def test_rma_pages_until_total_rows(tmp_path):
    api = FakeAllenApi(data_sets=_data_sets(7))
    with _client(api, tmp_path) as c:
        rows = c.rma(q.section_data_sets(["E11.5"]), page_size=3)
    assert [r["id"] for r in rows] == list(range(1000, 1007))
    assert len(api.requests) == 3  # 3 + 3 + 1 rows
    starts = [httpx.URL(u).params["criteria"] for u in api.requests]
    assert all("num_rows$eq3" in s for s in starts)
    assert ["start_row$eq0" in starts[0], "start_row$eq3" in starts[1],
            "start_row$eq6" in starts[2]] == [True, True, True]


def test_query_statement_has_documented_shape():
    stmt = q.section_data_sets(["E11.5", "P4"], ["Prox1"]).statement(2000, 2000)
    assert stmt.startswith("model::SectionDataSet,rma::criteria,[failed$eqfalse],products[id$eq3]")
    assert "treatments[name$eq'ISH']" in stmt
    assert "plane_of_section[name$eq'sagittal']" in stmt
    assert "specimen(donor(age[name$in'E11.5','P4']))" in stmt
    assert "genes[acronym$in'Prox1']" in stmt
    assert "rma::include,genes,specimen(donor(age)),plane_of_section" in stmt
    assert stmt.endswith("rma::options[num_rows$eq2000][start_row$eq2000][order$eq'data_sets.id']")
    assert q.section_image_url(5, 4) == (
        "http://api.brain-map.org/api/v2/section_image_download/5?downsample=4")
    assert q.grid_annotation_url("E11.5").endswith(
        "mouse_annotation/E11pt5_DevMouse2012_gridAnnotation.zip")
    with pytest.raises(ValueError):
        q.section_data_sets(["E11.5"], ["it's"])


def test_503_then_success_is_retried(tmp_path):
    api = FakeAllenApi(data_sets=_data_sets(2))
    api.fail("query.json", "503", "503")
    with _client(api, tmp_path) as c:
        rows = c.rma(q.section_data_sets(["E11.5"]))
        assert len(rows) == 2
        assert c.stats.retries == 2 and c.stats.requests == 3


def test_success_false_is_retried_then_reported(tmp_path):
    api = FakeAllenApi(data_sets=_data_sets(1))
    api.fail("query.json", "success_false")
    with _client(api, tmp_path) as c:
        assert len(c.rma(q.section_data_sets(["E11.5"]))) == 1
    api.fail("query.json", *["success_false"] * 3)
    with _client(api, tmp_path / "other", retries=3) as c:
        with pytest.raises(NetworkError, match="success=false: Data Access error") as err:
            c.rma(q.section_data_sets(["E11.5"]))
    assert "\n" not in str(err.value)
    # a failed response is never cached
    assert not list((tmp_path / "other").rglob("*.json"))


def test_truncated_image_is_retried_and_never_cached(tmp_path):
    api = FakeAllenApi(default_image=_jpeg())
    url = q.section_image_url(7, 4)
    api.fail("section_image_download/7", "truncate")
    with _client(api, tmp_path) as c:
        path = c.download(url)
        assert path.read_bytes() == api.default_image
        assert c.stats.retries == 1
    # always truncated: a clear error, and nothing in the cache
    api.fail("section_image_download/8", *["truncate"] * 3)
    with _client(api, tmp_path, retries=3) as c:
        with pytest.raises(NetworkError, match="truncated: got .* of .* bytes"):
            c.download(q.section_image_url(8, 4))
        assert not c.is_cached(q.section_image_url(8, 4))
    assert not list((tmp_path / "cache").rglob("*.part"))


def test_cache_hit_makes_no_request_and_checks_sha(tmp_path):
    api = FakeAllenApi(default_image=_jpeg(), data_sets=_data_sets(3))
    url = q.section_image_url(9, 4)
    with _client(api, tmp_path) as c:
        c.download(url)
        c.rma(q.section_data_sets(["E11.5"]))
    n = len(api.requests)
    with _client(api, tmp_path) as c:
        path = c.download(url)
        c.rma(q.section_data_sets(["E11.5"]))
        assert c.stats.cache_hits == 2 and c.stats.requests == 0
    assert len(api.requests) == n
    # a damaged cached file (size/sha mismatch) is not a hit: fetched again
    path.write_bytes(path.read_bytes()[:-10])
    with _client(api, tmp_path) as c:
        assert c.download(url).read_bytes() == api.default_image
        assert c.stats.requests == 1
    meta = json.loads(next((tmp_path / "cache").rglob("*.meta.json")).read_text())
    assert meta["url"] == url and meta["size"] == len(api.default_image)


def test_offline_serves_cache_and_names_missing_urls(tmp_path):
    api = FakeAllenApi(data_sets=_data_sets(1))
    with _client(api, tmp_path) as c:
        c.rma(q.section_data_sets(["E11.5"]))
    with AllenClient(tmp_path / "cache", offline=True) as c:
        assert len(c.rma(q.section_data_sets(["E11.5"]))) == 1
        with pytest.raises(NotFound, match="not in the Allen cache"):
            c.rma(q.section_data_sets(["P4"]))


def test_unreachable_and_http_errors_are_one_line(tmp_path):
    api = FakeAllenApi()
    api.fail("query.json", *["drop"] * 2)
    with _client(api, tmp_path, retries=2) as c:
        with pytest.raises(NetworkError, match="cannot reach api.brain-map.org") as err:
            c.rma(q.section_data_sets(["E11.5"]))
    assert "\n" not in str(err.value) and "--from-cache" in str(err.value)
    with _client(api, tmp_path) as c:  # 404 is not retried
        with pytest.raises(NetworkError, match="HTTP 404"):
            c.download(q.section_image_url(1, 4))
        assert c.stats.requests == 1


def test_body_checks():
    jpg = _jpeg()
    assert check_image(jpg) is None
    assert "truncated" in check_image(jpg[: len(jpg) // 2])
    assert "not an image" in check_image(b'{"success": false}')
    assert "not a complete zip" in check_zip(b"PK\x03\x04broken")
