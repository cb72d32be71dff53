"""Allen reference volumes and Allen's own section alignments (recorded responses only)."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from fake_allen import FakeAllenApi
from test_allen_ingest import _api
from typer.testing import CliRunner

from cli.app import app
from ishwh import warehouse
from ishwh.allen.alignment import data_set_alignments, record_vector
from ishwh.allen.client import AllenClient
from ishwh.allen.ingest import ingest_allen
from ishwh.allen.positions import reference_lateral
from ishwh.allen.readers import read_data_set_xml
from ishwh.allen.reference import annotation_url, read_annotation_zip
from ishwh.errors import InvalidInput

XML = "api_responses/SectionDataSet_69289763_data_set.xml"
VOLUME = "grid/E11.5_annotation_345x371x158_from_brainmapr.npz"


def test_real_alignment_records_place_each_section(allen_data):
    """Data set 69289763 (Prox1 P56, the real data_set.xml): every section image, stored at
    downsample 2, is placed on the P56 reference space (67 x 41 x 58 voxels of 200 µm);
    its slice is the one its centre falls in, and the stored affine inverts Allen's chain
    (image pixel -> tsv -> tvr -> voxel) written out here by hand."""
    rec = read_data_set_xml(allen_data / XML)
    stored = {int(im["id"]): (im["width"] // 4, im["height"] // 4) for im in rec["section_images"]}
    found, missing = data_set_alignments(rec, stored, (200.0, 200.0, 200.0), (67, 41, 58))
    assert not missing and set(found) == set(stored)
    tvr = record_vector(rec["alignment3d"], "tvr", 12)
    for im in rec["section_images"]:
        a = found[int(im["id"])]
        assert a.ok and a.method == "allen" and a.quality == 1.0
        tsv = record_vector(im["alignment2d"], "tsv", 6)
        z = reference_lateral(tvr, tsv, im["section_number"], rec["section_thickness"],
                              im["width"], im["height"])
        assert a.slice_index == round(z / 200)
        u, v = 300.0, 200.0                                  # a stored pixel
        fx, fy = im["width"] / (im["width"] // 4), im["height"] / (im["height"] // 4)
        x, y = (u + 0.5) * fx - 0.5, (v + 0.5) * fy - 0.5    # its full-resolution pixel
        vol = np.array([tsv[0] * x + tsv[1] * y + tsv[4], tsv[2] * x + tsv[3] * y + tsv[5],
                        im["section_number"] * rec["section_thickness"]])
        ref = tvr[:9].reshape(3, 3) @ vol + tvr[9:]
        col, row = ref[0] / 200, ref[1] / 200
        back = a.affine @ np.array([col, row, 1.0])
        assert back == pytest.approx([u, v], abs=1e-6)
        # ~1.05 µm per full pixel, 4 full pixels per stored one: ~48 stored px per voxel
        assert 200 / (1.049 * 4) * 0.85 < a.scale < 200 / (1.049 * 4) * 1.15


def test_json_and_xml_forms_of_a_record_agree():
    assert record_vector({"tsv_00": 1, "tsv_01": 2, "tsv_02": 3, "tsv_03": 4, "tsv_04": 5,
                          "tsv_05": 6}, "tsv", 6).tolist() == [1, 2, 3, 4, 5, 6]
    assert record_vector({"tsv": "1,2,3,4,5,6"}, "tsv", 6).tolist() == [1, 2, 3, 4, 5, 6]
    assert record_vector({}, "tsv", 6) is None
    with pytest.raises(InvalidInput):
        record_vector({"tsv": "1,2,3"}, "tsv", 6)


def _annotation_zip(ann: np.ndarray, spacing: tuple[float, float, float]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("annotation.mhd", "ObjectType = Image\nNDims = 3\nBinaryData = True\n"
                    "BinaryDataByteOrderMSB = False\n"
                    f"ElementSpacing = {' '.join(map(str, spacing))}\n"
                    f"DimSize = {' '.join(map(str, ann.shape))}\nElementType = MET_UINT\n"
                    "ElementDataFile = annotation.raw\n")
        zf.writestr("annotation.raw", np.asarray(ann, "<u4").transpose(2, 1, 0).tobytes())
    return buf.getvalue()


@pytest.mark.slow
def test_ingest_allen_reference_and_alignments_used_by_featurize(db_path, allen_data, tmp_path):
    """``ingest allen --reference``: the stage's annotation volume (Allen's zip) is stored
    with its three spacings, every section gets Allen's placement (method 'allen'), and
    ``featurize --extractor atlas`` uses those instead of registering the images."""
    from ishwh.features import featurize  # noqa: PLC0415

    ann = np.ascontiguousarray(np.load(allen_data / VOLUME)["annotation"][::2, ::2, ::2])
    api: FakeAllenApi = _api(allen_data)
    api.annotation_volumes["E11.5"] = _annotation_zip(ann, (32.0, 32.0, 40.0))
    nx, ny, nz = ann.shape
    tz = 1500.0
    for ds in api.data_sets:   # recorded shapes: identity volume -> reference, shifted in z
        ds["alignment3d"] = {f"tvr_{i:02d}": v for i, v in enumerate(
            [1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, tz])}
    scale = {}
    for images in api.section_images.values():
        for im in images:      # the image spans the volume's anterior-posterior extent
            s = nx * 32.0 / im["image_width"]
            scale[im["id"]] = s
            im["alignment2d"] = {f"tsv_{i:02d}": v for i, v in enumerate([s, 0, 0, s, 0, 0])}
    client = AllenClient(tmp_path / "cache", transport=api.transport(), backoff_s=0)
    out = ingest_allen(db_path, ["E11.5"], client=client, progress=False, reference=True)
    assert annotation_url("E11.5").endswith(
        "/mouse_annotation/E11pt5_DevMouse2012_annotation.zip")
    assert any(u.endswith("E11pt5_DevMouse2012_annotation.zip") for u in api.requests)
    ref = out["reference"]["E11.5"]
    assert ref["shape"] == [nx, ny, nz] and ref["spacing_um"] == [32.0, 32.0, 40.0]
    with warehouse.connect(db_path, read_only=True) as con:
        spacing = con.execute("select spacing_um, spacing_xyz_um from reference_atlases"
                              ).fetchall()[0]
        secs = con.execute(
            "select s.section_id, s.section_number, s.width, s.height, a.slice_index, a.affine, "
            "a.method, a.ok from sections s join section_alignments a using (section_id)"
        ).fetchall()
    assert spacing[0] == 32.0 and list(spacing[1]) == [32.0, 32.0, 40.0]
    n_sections = sum(len(v) for k, v in api.section_images.items()
                     if any(d["id"] == k and d["specimen"]["donor"]["age"]["name"] == "E11.5"
                            for d in api.data_sets))
    assert out["reference"]["E11.5"]["alignments"]["sections"] == len(secs) > 0
    assert len(secs) <= n_sections
    thick = {d["id"]: d["section_thickness"] for d in api.data_sets}
    exp_of = {im["id"]: k for k, v in api.section_images.items() for im in v}
    full = {im["id"]: (im["image_width"], im["image_height"])
            for v in api.section_images.values() for im in v}
    for sid, number, width, height, k, aff, method, ok in secs:
        assert method == "allen"
        z = number * thick[exp_of[sid]] + tz
        assert k == min(round(z / 40.0), nz - 1)
        f, fy = full[sid][0] / width, full[sid][1] / height  # full pixels per stored one
        x_full = 10 * 32.0 / scale[sid]                      # voxel column 10 -> full px
        u = (x_full + 0.5) / f - 0.5
        assert np.asarray(aff).reshape(2, 3) @ np.array([10.0, 0.0, 1.0]) == pytest.approx(
            [u, (0 + 0.5) / fy - 0.5], abs=1e-6)
        assert ok == (0 <= z / 40.0 < nz)
    before = len(secs)
    featurize(db_path, extractor="atlas", stages=["E11.5"], progress=False)
    with warehouse.connect(db_path, read_only=True) as con:
        methods = dict(con.execute("select method, count(*) from section_alignments "
                                   "group by 1").fetchall())
    assert methods.get("allen") == before    # used, not replaced by image registration
    # a second run asks nothing new of the network for the reference
    n = len(api.requests)
    ingest_allen(db_path, ["E11.5"], client=client, progress=False, reference=True)
    assert not any("annotation.zip" in u for u in api.requests[n:])
    # the CLI, offline from that cache, into a new warehouse: the same placements
    db2 = tmp_path / "cli.duckdb"
    warehouse.init(db2)
    res = CliRunner().invoke(app, ["ingest", "allen", "--stage", "E11.5", "--reference",
                                   "--from-cache", str(tmp_path / "cache"), "--db", str(db2)])
    assert res.exit_code == 0, res.output
    assert f"Allen alignments: {before} of {before} section(s) placed" in " ".join(
        res.output.split())
    with warehouse.connect(db2, read_only=True) as con:
        again = con.execute("select section_id, slice_index, affine from section_alignments "
                            "order by 1").fetchall()
    assert [(r[0], r[4]) for r in sorted(secs)] == [(r[0], r[1]) for r in again]
    assert np.allclose([r[5] for r in sorted(secs)], [r[2] for r in again])


def test_annotation_zip_without_a_volume_is_refused():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("readme.txt", json.dumps({"x": 1}))
    with pytest.raises(InvalidInput, match="no 'annotation' volume"):
        read_annotation_zip(buf.getvalue())
