"""Readers for the real Allen formats, on the real files in ../shared/data/allen."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections import Counter

import numpy as np
import pytest

from ishwh.allen.readers import (
    read_data_set_xml,
    read_grid_annotation,
    read_grid_zip,
    read_mhd_zip,
    read_ontology,
)
from ishwh.errors import InvalidInput

PAPER_LEVEL_COUNTS = [4, 6, 19, 14, 82, 50, 121, 44, 486, 616]


def _level_counts(rows):
    c = Counter(r["level"] for r in rows if not r["acronym"].startswith("v_"))
    return [c[level] for level in range(1, 11)]


def test_real_graph17_nested_ontology(allen_data):
    tree = json.loads((allen_data / "ontology/dmba_graph17_tree_from_brainmapr.json").read_text())
    rows = read_ontology(tree)
    assert len(rows) == 2691
    assert _level_counts(rows) == PAPER_LEVEL_COUNTS
    # wrapped the way structure_graph_download/17.json answers: msg = [root]
    root = {"id": 15564, "acronym": "root", "name": "root", "parent_structure_id": None,
            "graph_order": 0, "children": tree}
    wrapped = read_ontology({"success": True, "msg": [root]})
    assert len(wrapped) == 2692
    assert wrapped[0]["structure_id"] == 15564 and wrapped[0]["level"] == 0
    assert all(r["level"] is not None for r in wrapped)


def test_real_graph17_flat_rows_match_nested(allen_data):
    with open(allen_data / "ontology/dmba_graph17_flat_from_brainmapr.csv") as f:
        flat = [dict(r) for r in csv.DictReader(f)]
    rows = read_ontology({"success": True, "msg": flat})  # RMA Structure rows
    assert len(rows) == 2691 and _level_counts(rows) == PAPER_LEVEL_COUNTS
    tree = json.loads((allen_data / "ontology/dmba_graph17_tree_from_brainmapr.json").read_text())
    nested = {r["structure_id"]: r for r in read_ontology(tree)}
    for r in rows:
        n = nested[r["structure_id"]]
        assert (r["parent_id"], r["level"], r["acronym"]) == (n["parent_id"], n["level"],
                                                              n["acronym"])


def test_real_grid_zip(allen_data):
    vol = read_grid_zip(allen_data / "grid/grid_data_download_69289763_Prox1_P56.zip")
    assert vol.shape == (67, 41, 58)
    assert vol.spacing_um == (200.0, 200.0, 200.0)
    assert vol.data.dtype == np.float32
    assert (vol.data == -1).any() and vol.data.max() > 0   # -1 = no data
    with zipfile.ZipFile(allen_data / "grid/grid_data_download_69289763_Prox1_P56.zip") as zf:
        raw = zf.read("energy.raw")
    # x fastest: the flat form equals the .raw bytes
    assert vol.flat().astype("<f4").tobytes() == raw
    assert np.frombuffer(raw, "<f4")[1] == vol.data[1, 0, 0]
    with pytest.raises(InvalidInput, match="no density volume"):
        read_grid_zip(allen_data / "grid/grid_data_download_69289763_Prox1_P56.zip", "density")


def test_real_data_set_xml(allen_data):
    ds = read_data_set_xml(allen_data / "api_responses/SectionDataSet_69289763_data_set.xml")
    assert ds["id"] == 69289763 and ds["delegate"] is True and ds["failed"] is False
    assert ds["age"] == "P56" and ds["section_thickness"] == 25.0
    assert [p["id"] for p in ds["products"]] == [3, 1]
    assert ds["specimen"]["donor"]["strain"] == "C57BL/6J"
    imgs = ds["section_images"]
    assert len(imgs) == 18
    assert imgs[0]["id"] == 69177634 and imgs[0]["section_number"] == 6
    assert imgs[0]["image_width"] == 8929 and imgs[0]["resolution"] == pytest.approx(1.049)
    assert all(i["data_set_id"] == 69289763 for i in imgs)
    with pytest.raises(InvalidInput):
        read_data_set_xml(b"<genes></genes>")


def test_grid_annotation_volume_roundtrip(allen_data, tmp_path):
    arr = np.load(allen_data / "grid/E11.5_gridAnnotation_70x75x40_from_brainmapr.npy")
    assert arr.shape == (70, 75, 40)
    # the shape Allen ships: gridAnnotation.mhd + .raw (uint32, x fastest) in a zip
    mhd = ("ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
           "ElementSpacing = 80 80 80\nDimSize = 70 75 40\nElementType = MET_UINT\n"
           "ElementDataFile = gridAnnotation.raw\n")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("gridAnnotation/gridAnnotation.mhd", mhd)
        zf.writestr("gridAnnotation/gridAnnotation.raw", arr.flatten(order="F").tobytes())
    (tmp_path / "E11pt5.zip").write_bytes(buf.getvalue())
    vol = read_grid_annotation(tmp_path / "E11pt5.zip")
    assert vol.shape == (70, 75, 40) and vol.spacing_um == (80.0, 80.0, 80.0)
    assert np.array_equal(vol.data, arr)
    assert np.array_equal(read_grid_annotation(
        allen_data / "grid/E11.5_gridAnnotation_70x75x40_from_brainmapr.npy").data, arr)
    (tmp_path / "g.raw").write_bytes(arr.flatten(order="F").tobytes())
    assert np.array_equal(read_grid_annotation(tmp_path / "g.raw", (70, 75, 40)).data, arr)
    # every label is a graph-17 structure
    tree = json.loads((allen_data / "ontology/dmba_graph17_tree_from_brainmapr.json").read_text())
    ids = {r["structure_id"] for r in read_ontology(tree)}
    labels = set(np.unique(arr).tolist()) - {0}
    assert len(labels) == 215 and labels <= ids


def test_mhd_size_mismatch_is_reported():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("energy.mhd", "DimSize = 2 2 2\nElementType = MET_FLOAT\n"
                                  "ElementDataFile = energy.raw\n")
        zf.writestr("energy.raw", b"\0" * 12)
    with pytest.raises(InvalidInput, match="12 bytes"):
        read_mhd_zip(buf.getvalue())
