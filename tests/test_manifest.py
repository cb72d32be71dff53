"""`ishwh ingest dir`: the manifest folder contract, on real DuckDB files and real images."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from cli.app import app
from ishwh import images, manifest, warehouse
from ishwh.errors import ManifestError

G = manifest.GENE_ID_BASE  # new manifest genes get G + 1, G + 2, ...

STRUCTURES = """structure_id,acronym,name,parent_id,level
1,Br,brain,,1
2,F,forebrain,1,2
3,M,midbrain,1,2
4,Tel,telencephalon,2,3
"""
SECTIONS = """gene,stage,experiment_id,section_number,image,position,gene_name
Shh,E11.5,100,1,img/gray.png,0.25,sonic hedgehog
Shh,E11.5,100,2,img/rgb.jpg,,
Pax6,p4,200,1,img/rgb.tif,0.5,paired box 6
"""
ANNOTATIONS = """experiment_id,structure,pattern,intensity,density
100,F,Full,HIGH,
100,3,undetected,undetected,undetected
200,Tel,,,
200,M,regional,low,medium
"""
GENE_LABELS = """gene,task,label
Shh,GO:0007420,1
Pax6,GO:0007420,0
"""
# (file name, (height, width)) of the images the manifest uses.
IMAGE_SIZES = {"gray.png": (30, 40), "rgb.jpg": (20, 50), "rgb.tif": (24, 16)}
TABLES = ("genes", "structures", "experiments", "sections", "annotations", "gene_labels")


def write_images(folder: Path) -> None:
    """A gray PNG, an RGB JPEG and an RGB TIFF, written by OpenCV (real files)."""
    rng = np.random.default_rng(7)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    h, w = IMAGE_SIZES["gray.png"]
    assert cv2.imwrite(str(folder / "img/gray.png"), rng.integers(0, 255, (h, w), np.uint8))
    h, w = IMAGE_SIZES["rgb.jpg"]
    assert cv2.imwrite(str(folder / "img/rgb.jpg"), rng.integers(0, 255, (h, w, 3), np.uint8))
    h, w = IMAGE_SIZES["rgb.tif"]
    assert cv2.imwrite(str(folder / "img/rgb.tif"), rng.integers(0, 255, (h, w, 3), np.uint8))


def make_manifest(folder: Path, **files: str | None) -> Path:
    """The base manifest; ``files`` overrides a file's text (None = leave the file out)."""
    texts = {"structures.csv": STRUCTURES, "sections.csv": SECTIONS,
             "annotations.csv": ANNOTATIONS, "gene_labels.csv": GENE_LABELS}
    texts.update({k.replace("_csv", ".csv").replace("_json", ".json"): v
                  for k, v in files.items()})
    folder.mkdir(parents=True, exist_ok=True)
    write_images(folder)
    for name, text in texts.items():
        if text is not None:
            (folder / name).write_text(text, encoding="utf-8")
    return folder


def counts(db: Path) -> dict[str, int]:
    with warehouse.connect(db, read_only=True) as con:
        return {t: con.execute(f"select count(*) from {t}").fetchall()[0][0] for t in TABLES}


def rows(db: Path, sql: str) -> list[tuple]:
    with warehouse.connect(db, read_only=True) as con:
        return con.execute(sql).fetchall()


def stored_files(db: Path) -> list[Path]:
    return sorted(p for p in warehouse.images_dir(db).rglob("*") if p.is_file())


# --------------------------------------------------------------------------- happy paths


def test_happy_path_loads_every_table(db_path, tmp_path):
    folder = make_manifest(tmp_path / "m")
    result = manifest.ingest_dir(db_path, folder)
    assert result["new"] == {"genes": 2, "structures": 4, "experiments": 2, "sections": 3,
                             "annotations": 4, "gene_labels": 2}
    assert result["images_added"] == 3 and result["nothing_new"] is False

    # Genes get ids in order of first appearance; names come from gene_name.
    assert rows(db_path, "select gene_id, acronym, name from genes order by 1") == [
        (G + 1, "Shh", "sonic hedgehog"), (G + 2, "Pax6", "paired box 6")]
    # Stage normalised ('p4' -> 'P4'); the source names the folder.
    exps = rows(db_path, "select experiment_id, gene_id, stage, plane, source "
                         "from experiments order by 1")
    assert [e[:4] for e in exps] == [(100, G + 1, "E11.5", "sagittal"),
                                     (200, G + 2, "P4", "sagittal")]
    assert exps[0][4] == f"dir:{folder.resolve()}"
    # section_id = experiment_id * 10000 + section_number; size read from the decoded image.
    secs = rows(db_path, "select section_id, experiment_id, section_number, image_path, "
                         "width, height, position, sha256 from sections order by 1")
    assert [s[:3] for s in secs] == [(1000001, 100, 1), (1000002, 100, 2), (2000001, 200, 1)]
    for s, name in zip(secs, ("gray.png", "rgb.jpg", "rgb.tif"), strict=True):
        h, w = IMAGE_SIZES[name]
        assert (s[4], s[5]) == (w, h)
        src = folder / "img" / name
        assert s[7] == images.sha256_file(src)
        stored = warehouse.images_dir(db_path) / s[3]
        assert stored.read_bytes() == src.read_bytes()  # a copy, content-addressed
        assert s[3].endswith(Path(name).suffix)
        assert images.read_rgb(stored).shape == (h, w, 3)  # gray comes back as 3 channels
    assert [s[6] for s in secs] == [0.25, None, 0.5]
    assert len(stored_files(db_path)) == 3

    # Enumerations lower-cased; empty = unknown (NULL), which has no label.
    assert rows(db_path, "select experiment_id, structure_id, pattern, intensity, density "
                         "from annotations order by 1, 2") == [
        (100, 2, "full", "high", None), (100, 3, "undetected", "undetected", "undetected"),
        (200, 3, "regional", "low", "medium"), (200, 4, None, None, None)]
    assert rows(db_path, "select experiment_id, structure_id, detected from labels "
                         "order by 1, 2") == [(100, 2, True), (100, 3, False), (200, 3, True)]
    assert rows(db_path, "select gene_id, task, label from gene_labels order by 1") == [
        (G + 1, "GO:0007420", True), (G + 2, "GO:0007420", False)]
    assert rows(db_path, "select structure_id, parent_id, level from structures order by 1") == [
        (1, None, 1), (2, 1, 2), (3, 1, 2), (4, 2, 3)]


def _graph(node_id, acronym, level, parent, children=()):
    return {"id": node_id, "acronym": acronym, "name": acronym.lower(), "st_level": level,
            "parent_structure_id": parent, "graph_order": node_id, "color_hex_triplet": "AABBCC",
            "children": list(children)}


def test_graph_json_ontology(db_path, tmp_path):
    # The top node's parent (the graph root 99) is left out, as in Allen's downloads.
    tree = {"msg": [_graph(1, "Br", 1, 99, [
        _graph(2, "F", 2, 1, [_graph(4, "Tel", 3, 2)]), _graph(3, "M", 2, 1)])]}
    folder = make_manifest(tmp_path / "m", structures_csv=None,
                           ontology_json=json.dumps(tree, indent=1))
    assert manifest.ingest_dir(db_path, folder)["new"]["structures"] == 4
    assert rows(db_path, "select structure_id, acronym, parent_id, level, graph_order, color_hex "
                         "from structures order by 1") == [
        (1, "Br", 99, 1, 1, "AABBCC"), (2, "F", 1, 2, 2, "AABBCC"), (3, "M", 1, 2, 3, "AABBCC"),
        (4, "Tel", 2, 3, 4, "AABBCC")]


def test_graph_json_root_without_st_level_gets_level_0(db_path, tmp_path):
    root = _graph(99, "root", None, None, [_graph(1, "Br", 1, 99, [
        _graph(2, "F", 2, 1, [_graph(4, "Tel", 3, 2)]), _graph(3, "M", 2, 1)])])
    del root["st_level"]
    folder = make_manifest(tmp_path / "m", structures_csv=None,
                           ontology_json=json.dumps({"success": True, "msg": [root]}))
    manifest.ingest_dir(db_path, folder)
    assert rows(db_path, "select structure_id, parent_id, level from structures order by 1") == [
        (1, 99, 1), (2, 1, 2), (3, 1, 2), (4, 2, 3), (99, None, 0)]


def test_real_allen_graph17_ontology(db_path, tmp_path, allen_data):
    tree = (allen_data / "ontology/dmba_graph17_tree_from_brainmapr.json").read_text()
    # A real ISH section (Prox1, P56), linked into the folder (the link is followed to the
    # real file, which is copied in; absolute paths are refused, see test_reliability.py).
    real = allen_data / "images/Prox1_P56_sagittal_ISH_downsample2.jpg"
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "prox1.jpg").symlink_to(real)
    folder = make_manifest(tmp_path / "m", structures_csv=None, ontology_json=tree,
                           sections_csv=SECTIONS + "Prox1,P56,69289763,1,prox1.jpg,,\n",
                           annotations_csv="experiment_id,structure,pattern,intensity,density\n"
                           "100,15566,full,high,high\n200,M,regional,low,low\n")
    result = manifest.ingest_dir(db_path, folder)
    assert result["new"]["structures"] == 2691
    assert rows(db_path, "select structure_id from annotations order by 1") == [(15566,), (16649,)]
    assert rows(db_path, "select width, height, sha256 from sections where experiment_id = "
                         "69289763") == [(2980, 1888, images.sha256_file(real))]
    # The design card's counts of non-ventricle structures per st_level 1..10.
    per_level = dict(rows(db_path, "select level, count(*) from structures "
                                   "where acronym not like 'v\\_%' escape '\\' group by 1"))
    assert [per_level[lv] for lv in range(1, 11)] == [4, 6, 19, 14, 82, 50, 121, 44, 486, 616]


def test_reingest_adds_nothing_and_says_so(db_path, tmp_path):
    folder = make_manifest(tmp_path / "m")
    manifest.ingest_dir(db_path, folder)
    before = counts(db_path)
    again = manifest.ingest_dir(db_path, folder)
    assert again["nothing_new"] is True
    assert set(again["new"].values()) == {0} and again["images_added"] == 0
    assert counts(db_path) == before
    res = CliRunner().invoke(app, ["ingest", "dir", str(folder), "--db", str(db_path)])
    assert res.exit_code == 0, res.output
    assert "nothing new" in res.stderr
    assert counts(db_path) == before


def test_extension_adds_only_new_rows_and_reuses_gene_ids(db_path, tmp_path):
    manifest.ingest_dir(db_path, make_manifest(tmp_path / "m1"))
    # The second folder repeats the first and adds a Shh experiment and a new gene.
    rng = np.random.default_rng(3)
    m2 = make_manifest(
        tmp_path / "m2",
        sections_csv=SECTIONS + "Shh,P14,300,5,img/new.png,,\nWnt1,E13.5,400,1,img/new2.png,,\n",
        annotations_csv=ANNOTATIONS + "300,Br,gradient,medium,low\n",
        gene_labels_csv=GENE_LABELS + "Wnt1,GO:0007420,1\n",
    )
    cv2.imwrite(str(m2 / "img/new.png"), rng.integers(0, 255, (12, 18, 3), np.uint8))
    cv2.imwrite(str(m2 / "img/new2.png"), rng.integers(0, 255, (12, 19), np.uint8))
    result = manifest.ingest_dir(db_path, m2)
    assert result["new"] == {"genes": 1, "structures": 0, "experiments": 2, "sections": 2,
                             "annotations": 1, "gene_labels": 1}
    assert result["images_added"] == 2
    assert rows(db_path, "select experiment_id, gene_id from experiments order by 1") == [
        (100, G + 1), (200, G + 2), (300, G + 1), (400, G + 3)]
    assert len(stored_files(db_path)) == 5


def test_link_hard_links_images(db_path, tmp_path):
    folder = make_manifest(tmp_path / "m")
    res = CliRunner().invoke(app, ["ingest", "dir", str(folder), "--link", "--db", str(db_path),
                                   "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["images_added"] == 3
    for rel, in rows(db_path, "select image_path from sections"):
        stored = warehouse.images_dir(db_path) / rel
        src = next(p for p in (folder / "img").iterdir()
                   if images.sha256_file(p) == rel.split("/")[1].split(".")[0])
        assert os.path.samefile(stored, src)  # the same file, not a copy


def test_cli_renders_new_rows(db_path, tmp_path):
    folder = make_manifest(tmp_path / "m")
    res = CliRunner().invoke(app, ["ingest", "dir", str(folder), "--db", str(db_path)])
    assert res.exit_code == 0, res.output
    assert "sections" in res.stdout and "annotations" in res.stdout


# --------------------------------------------------------------------------- bad manifests

# (case id, file overrides, extra images to write, problems expected (substrings))
BAD = [
    ("unknown structure acronym", {"annotations_csv": ANNOTATIONS + "100,NOPE,full,,\n"},
     ["annotations.csv:6: unknown structure 'NOPE'"]),
    ("unknown structure id", {"annotations_csv": ANNOTATIONS + "100,77,full,,\n"},
     ["annotations.csv:6: unknown structure id 77"]),
    ("unknown stage", {"sections_csv": SECTIONS.replace("Pax6,p4", "Pax6,E12.5")},
     ["sections.csv:4: unknown stage 'E12.5'"]),
    ("missing image", {"sections_csv": SECTIONS + "Shh,E11.5,100,3,img/none.png,,\n"},
     ["sections.csv:5: image img/none.png not found"]),
    ("unreadable image", {"sections_csv": SECTIONS + "Shh,E11.5,100,3,img/junk.png,,\n"},
     ["sections.csv:5: image img/junk.png: not a readable PNG, JPEG or TIFF image"]),
    ("duplicate section", {"sections_csv": SECTIONS + "Shh,E11.5,100,2,img/gray.png,,\n"},
     ["sections.csv:5: duplicate section: experiment 100 section 2 is also on line 3"]),
    ("experiment with two genes", {"sections_csv": SECTIONS + "Pax6,E11.5,100,3,img/gray.png,,\n"},
     ["sections.csv:5: experiment 100 is listed as Pax6 E11.5 here but as Shh E11.5 on line 2"]),
    ("experiment with two stages", {"sections_csv": SECTIONS + "Shh,P4,100,3,img/gray.png,,\n"},
     ["sections.csv:5: experiment 100 is listed as Shh P4 here but as Shh E11.5 on line 2"]),
    ("gene with two names",
     {"sections_csv": SECTIONS + "Shh,P4,300,1,img/gray.png,,sonic\n"},
     ["sections.csv:5: gene Shh is named 'sonic' here but 'sonic hedgehog' on line 2"]),
    ("bad position", {"sections_csv": SECTIONS.replace(",0.5,", ",1.5,").replace(",0.25,", ",x,")},
     ["sections.csv:2: position 'x' is not a number in 0..1",
      "sections.csv:4: position '1.5' is not a number in 0..1"]),
    ("bad experiment id and section number",
     {"sections_csv": SECTIONS + "Shh,E11.5,abc,-1,img/gray.png,,\n"},
     ["sections.csv:5: experiment_id 'abc' is not an integer",
      "sections.csv:5: section_number '-1' is not an integer in 0..9999"]),
    ("ontology cycle", {"structures_csv": STRUCTURES + "5,A,a,6,4\n6,B,b,5,4\n"},
     ["the parents form a cycle: 5 -> 6 -> 5"]),
    ("missing parent", {"structures_csv": STRUCTURES + "5,A,a,42,4\n"},
     ["structures.csv:6: parent 42 is not in the ontology"]),
    ("duplicate structure id", {"structures_csv": STRUCTURES + "4,X,x,1,2\n"},
     ["structures.csv:6: duplicate structure id 4 (also structures.csv:5)"]),
    ("structure without level", {"structures_csv": STRUCTURES + "5,A,a,1,\n"},
     ["structures.csv:6: level '' is not an integer"]),
    ("bad enum values",
     {"annotations_csv": ANNOTATIONS.replace("Full,HIGH", "weird,huge") + "200,Br,,,lots\n"},
     ["annotations.csv:2: bad pattern 'weird'", "annotations.csv:2: bad intensity 'huge'",
      "annotations.csv:6: bad density 'lots'"]),
    ("duplicate annotation", {"annotations_csv": ANNOTATIONS + "100,2,full,,\n"},
     ["annotations.csv:6: duplicate annotation of experiment 100 in structure F (2); "
      "also on line 2"]),
    ("annotation of unknown experiment", {"annotations_csv": ANNOTATIONS + "999,F,full,,\n"},
     ["annotations.csv:6: unknown experiment 999"]),
    ("missing column", {"sections_csv": SECTIONS.replace("stage,", "stag,")},
     ["sections.csv:1: missing column(s) stage"]),
    ("missing sections.csv", {"sections_csv": None}, ["no sections.csv"]),
    ("missing ontology", {"structures_csv": None}, ["no ontology.json or structures.csv"]),
    ("two ontologies", {"ontology_json": "[]"},
     ["ontology.json: give either ontology.json or structures.csv, not both"]),
    ("graph node without st_level",
     {"structures_csv": None, "ontology_json": json.dumps(
         [{"id": 1, "acronym": "Br", "st_level": 1, "children": [
             {"id": 2, "acronym": "F", "parent_structure_id": 1},
             {"id": 3, "acronym": "M", "parent_structure_id": 1, "st_level": 2}]}])},
     ["ontology.json: structure 2 (F): no st_level"]),
    ("graph nesting disagrees with parent ids",
     {"structures_csv": None, "ontology_json": json.dumps(
         [_graph(1, "Br", 1, None, [_graph(2, "F", 2, 1, [_graph(4, "Tel", 3, 1)]),
                                    _graph(3, "M", 2, 1)])])},
     ["ontology.json: structure 4 (Tel): parent_structure_id 1 disagrees with its place in "
      "the tree (inside 2)"]),
    ("ontology not JSON", {"structures_csv": None, "ontology_json": '{"msg": [\n  {oops}\n]}'},
     ["ontology.json:2: not valid JSON"]),
    ("bad gene labels",
     {"gene_labels_csv": GENE_LABELS + "Nope,GO:1,1\nShh,GO:1,maybe\nShh,GO:0007420,0\n"},
     ["gene_labels.csv:4: unknown gene 'Nope'", "gene_labels.csv:5: bad label 'maybe'",
      "gene_labels.csv:6: duplicate label of gene Shh for task 'GO:0007420'; also on line 2"]),
    ("NUL byte in a CSV", {"sections_csv": SECTIONS + "Shh,E11.5,100,3,img/gr\x00ay.png,,\n"},
     ["sections.csv:5: contains a NUL byte"]),
    ("NUL byte in the large-file reader",
     {"annotations_csv": ANNOTATIONS + "100,T\x00el,full,,\n"},
     ["annotations.csv:6: contains a NUL byte"]),
    ("more fields than columns", {"gene_labels_csv": GENE_LABELS + "Shh,GO:2,1,extra\n"},
     ["gene_labels.csv:4: more fields than the header has columns"]),
]


@pytest.mark.parametrize("overrides,expected", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_manifest_ingests_nothing(db_path, tmp_path, overrides, expected):
    folder = make_manifest(tmp_path / "m", **overrides)
    (folder / "img/junk.png").write_bytes(b"not an image at all")
    with pytest.raises(ManifestError) as err:
        manifest.ingest_dir(db_path, folder)
    for text in expected:
        assert any(text in p for p in err.value.problems), (text, err.value.problems)
    assert set(counts(db_path).values()) == {0}
    assert stored_files(db_path) == []


def test_every_problem_is_listed_at_once_by_the_cli(db_path, tmp_path):
    folder = make_manifest(
        tmp_path / "m",
        sections_csv=SECTIONS + "Shh,E12.5,100,3,img/none.png,,\n",
        annotations_csv=ANNOTATIONS + "100,NOPE,weird,,\n",
    )
    res = CliRunner().invoke(app, ["ingest", "dir", str(folder), "--db", str(db_path)])
    assert res.exit_code == 1
    lines = res.stderr.splitlines()
    assert "  sections.csv:5: unknown stage 'E12.5' (one of: E11.5, E13.5, E15.5, E18.5, P4, " \
           "P14, P28, P56)" in lines
    assert "  sections.csv:5: image img/none.png not found" in lines
    assert "  annotations.csv:6: unknown structure 'NOPE'" in lines
    assert any(line.startswith("  annotations.csv:6: bad pattern 'weird'") for line in lines)
    assert lines[-1].startswith("Error: 4 problem(s) in the manifest")
    assert "Traceback" not in res.output
    assert set(counts(db_path).values()) == {0}


def test_clashes_with_the_warehouse_are_problems(db_path, tmp_path):
    manifest.ingest_dir(db_path, make_manifest(tmp_path / "m1"))
    before = counts(db_path)
    m2 = make_manifest(
        tmp_path / "m2",
        structures_csv=STRUCTURES.replace("4,Tel,telencephalon,2,3", "4,Tel,telencephalon,2,4"),
        sections_csv=SECTIONS.replace("sonic hedgehog", "").replace("Pax6,p4", "Pax6,P14")
        .replace("img/rgb.jpg,,", "img/rgb.jpg,,Sonic")
        .replace("img/rgb.jpg", "img/gray.png"),
        annotations_csv=ANNOTATIONS.replace("regional,low", "full,low"),
        gene_labels_csv=GENE_LABELS.replace("Pax6,GO:0007420,0", "Pax6,GO:0007420,1"),
    )
    with pytest.raises(ManifestError) as err:
        manifest.ingest_dir(db_path, m2)
    problems = err.value.problems
    expected = [
        "structures.csv:5: structure 4 is already in the warehouse as Tel (parent 2, level 3)",
        "sections.csv:3: gene Shh is named 'Sonic' here but 'sonic hedgehog' in the warehouse",
        "sections.csv:4: experiment 200 is already in the warehouse as Pax6 P4",
        "sections.csv:3: experiment 100 section 2 is already in the warehouse with a different "
        "image",
        "annotations.csv:5: experiment 200 is already annotated differently in structure M (3)",
        "gene_labels.csv:3: the warehouse already has the other label for task 'GO:0007420'",
    ]
    for text in expected:
        assert any(text in p for p in problems), (text, problems)
    assert counts(db_path) == before


def test_more_image_kinds(db_path, tmp_path):
    """16-bit gray TIFF, RGBA PNG and gray+alpha PNG (written by Pillow) all load as RGB."""
    from PIL import Image

    folder = make_manifest(tmp_path / "m", annotations_csv=None, gene_labels_csv=None,
                           sections_csv="gene,stage,experiment_id,section_number,image\n"
                           "Shh,P56,1,1,img/g16.tif\nShh,P56,1,2,img/rgba.png\n"
                           "Shh,P56,1,3,img/la.png\n")
    rng = np.random.default_rng(5)
    assert cv2.imwrite(str(folder / "img/g16.tif"), rng.integers(0, 65535, (9, 11), np.uint16))
    assert cv2.imwrite(str(folder / "img/rgba.png"), rng.integers(0, 255, (8, 13, 4), np.uint8))
    Image.fromarray(rng.integers(0, 255, (7, 5, 2), np.uint8), "LA").save(folder / "img/la.png")
    manifest.ingest_dir(db_path, folder)
    assert rows(db_path, "select section_number, width, height from sections order by 1") == [
        (1, 11, 9), (2, 13, 8), (3, 5, 7)]
    for rel, in rows(db_path, "select image_path from sections"):
        assert images.read_rgb(warehouse.images_dir(db_path) / rel).dtype == np.uint8
