"""The synthetic atlas: sizes, anatomy, determinism, warehouse and manifest output, the
truth oracle, and the CLI."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from ishwh import warehouse
from ishwh.errors import InvalidInput
from ishwh.images import read_rgb
from ishwh.synth import PRESETS, Atlas, ingest_synthetic, resolve, write_manifest
from ishwh.synth.ontology import from_graph_file

NO_ANNOTATOR_NOISE = {"flip_rate": 0.0, "faint_dropout": 0.0, "annotator_warp": 0.0,
                      "confusion": 0.0}
TINY = {"genes": 3, "stages": ("E13.5",), "sections": (6, 8), "workers": 1}


def _tree_hash(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_presets_have_the_documented_sizes():
    demo = Atlas(PRESETS["demo"], 0)
    assert demo.ontology.size == 60
    assert np.bincount(demo.ontology.level)[1:].tolist() == [3, 6, 10, 12, 14, 15]
    assert PRESETS["demo"].stages == ("E13.5", "E18.5")
    paper = Atlas(PRESETS["paper"], 0)
    counts = np.bincount(paper.ontology.level)[1:].tolist()
    assert counts == [3, 6, 19, 14, 81, 46, 123, 40, 307, 432]
    assert PRESETS["paper"].stages == ("E11.5", "E13.5", "E15.5", "E18.5")
    assert PRESETS["paper"].n_genes == 2000
    o = paper.ontology
    # parents come first (graph order) and sit on a shallower level
    assert all(o.parent[i] < i for i in range(o.size))
    assert all(o.level[o.parent[i]] < o.level[i] for i in range(o.size) if o.parent[i] >= 0)
    assert len(set(o.acronyms)) == o.size
    assert len(set(paper.gene_symbols)) == 2000


def test_overrides_are_checked():
    assert resolve("demo", genes=7).n_genes == 7
    with pytest.raises(InvalidInput):
        resolve("nope")
    with pytest.raises(InvalidInput):
        resolve("demo", stages=("E12.0",))
    with pytest.raises(InvalidInput):
        resolve("demo", colour="red")


def test_anatomy_partitions_the_brain_into_contiguous_structures():
    atlas = Atlas(PRESETS["demo"], 0)
    embryo = atlas.anatomy("E13.5")
    brain_only = atlas.anatomy("E18.5")
    assert (embryo.labels == 1).any()          # surrounding embryo tissue
    assert not (brain_only.labels == 1).any()  # brain only, as in the real atlas
    for anat in (embryo, brain_only):
        assert (anat.voxels > 0).all()         # every structure has tissue
        leaves = [s for s in range(atlas.ontology.size) if not atlas.children[s]]
        whole = 0
        for s in leaves:
            _, n = ndimage.label(anat.labels == s + 2)
            whole += n == 1
        assert whole / len(leaves) >= 0.8
        # deeper structures are smaller
        lv = atlas.ontology.level
        assert np.median(anat.voxels[lv == 1]) > np.median(anat.voxels[lv == lv.max()])


def test_manifest_is_byte_identical_for_a_seed(tmp_path):
    a = write_manifest(tmp_path / "a", "demo", seed=3, progress=False, **TINY)
    write_manifest(tmp_path / "b", "demo", seed=3, progress=False, **TINY)
    write_manifest(tmp_path / "c", "demo", seed=4, progress=False, **TINY)
    assert _tree_hash(tmp_path / "a") == _tree_hash(tmp_path / "b")
    assert _tree_hash(tmp_path / "a") != _tree_hash(tmp_path / "c")
    folder = tmp_path / "a"
    header = (folder / "sections.csv").read_text().splitlines()[0]
    assert header == "gene,stage,experiment_id,section_number,image,position,gene_name"
    assert (folder / "annotations.csv").read_text().startswith(
        "experiment_id,structure,pattern,intensity,density\n")
    assert (folder / "gene_labels.csv").read_text().startswith("gene,task,label\n")
    import json

    graph = json.loads((folder / "ontology.json").read_text())
    assert {"id", "acronym", "name", "parent_structure_id", "st_level", "graph_order",
            "children"} <= set(graph["msg"][0])
    assert a["sections"] == len(list((folder / "images").rglob("*.jpg")))
    img = read_rgb(next((folder / "images").rglob("*.jpg")))
    assert img.shape == (200, 320, 3)


def _table_digest(db: Path) -> str:
    h = hashlib.sha256()
    with warehouse.connect(db, read_only=True) as con:
        for table, key in [("genes", "gene_id"), ("structures", "structure_id"),
                           ("experiments", "experiment_id"), ("sections", "section_id"),
                           ("annotations", "experiment_id, structure_id"),
                           ("gene_labels", "gene_id, task"),
                           ("expression_grids", "experiment_id")]:
            h.update(repr(con.execute(f"select * from {table} order by {key}").fetchall())
                     .encode())
    return h.hexdigest()


def test_ingest_fills_every_table_and_is_idempotent(db_path, tmp_path):
    first = ingest_synthetic(db_path, "demo", seed=0, progress=False, genes=4,
                             stages=("E13.5", "E18.5"), workers=1)
    assert first["added"]["experiments"] == 8
    again = ingest_synthetic(db_path, "demo", seed=0, progress=False, genes=4,
                             stages=("E13.5", "E18.5"), workers=1)
    assert again["experiments_rendered"] == 0 and again["experiments_skipped"] == 8
    assert sum(again["added"].values()) == 0
    with warehouse.connect(db_path, read_only=True) as con:
        one = lambda q: con.execute(q).fetchall()[0]  # noqa: E731
        assert one("select count(*) from genes")[0] == 4
        assert one("select count(*) from structures")[0] == 60
        n, lo, hi, pmin, pmax = one(
            "select count(*), min(n), max(n), min(pmin), max(pmax) from (select experiment_id, "
            "count(*) n, min(position) pmin, max(position) pmax from sections group by all)")
        assert n == 8 and 12 <= lo <= hi <= 17 and 0 <= pmin < pmax <= 1
        assert one("select count(distinct (width, height)) from sections") == (1,)
        assert one("select count(*) from annotations")[0] == 8 * 60
        prevalence = one("select avg(detected::int) from labels")[0]
        assert 0.02 < prevalence < 0.5  # "undetected" dominates
        assert one("select count(*) from gene_labels")[0] == 4 * PRESETS["demo"].n_gene_tasks
        grid = con.execute("select nx, ny, nz, energy from expression_grids").fetchall()
        for nx, ny, nz, energy in grid:
            assert len(energy) == nx * ny * nz and min(energy) == -1.0
        assert any(max(g[3]) > 0 for g in grid)
        path, sha = one("select image_path, sha256 from sections limit 1")
    img = read_rgb(warehouse.images_dir(db_path) / path)
    assert img.shape == (200, 320, 3)
    assert hashlib.sha256((warehouse.images_dir(db_path) / path).read_bytes()).hexdigest() == sha
    # determinism inside the warehouse too: a second warehouse holds the same rows
    other = tmp_path / "other.duckdb"
    warehouse.init(other)
    ingest_synthetic(other, "demo", seed=0, progress=False, genes=4,
                     stages=("E13.5", "E18.5"), workers=2)
    assert _table_digest(other) == _table_digest(db_path)


def test_refuses_to_mix_two_atlases(db_path):
    ingest_synthetic(db_path, "demo", seed=0, progress=False, **TINY)
    with pytest.raises(InvalidInput, match="another synthetic atlas"):
        ingest_synthetic(db_path, "demo", seed=1, progress=False, **TINY)
    # a turned knob makes another atlas too; more genes of the same one do not
    with pytest.raises(InvalidInput, match="another synthetic atlas"):
        ingest_synthetic(db_path, "demo", seed=0, progress=False, grid_noise=0.5, **TINY)
    more = ingest_synthetic(db_path, "demo", seed=0, progress=False,
                            **{**TINY, "genes": 4})
    assert more["experiments_rendered"] == 1 and more["experiments_skipped"] == 3


def test_manifest_ingests_through_ingest_dir(db_path, tmp_path):
    from ishwh import manifest

    out = write_manifest(tmp_path / "m", "demo", seed=0, progress=False, **TINY)
    manifest.ingest_dir(db_path, tmp_path / "m")
    with warehouse.connect(db_path, read_only=True) as con:
        n_sec = con.execute("select count(*), count(position) from sections").fetchall()[0]
        n_ann = con.execute("select count(*) from annotations").fetchall()[0][0]
    assert n_sec == (out["sections"], out["sections"])
    assert n_ann == out["annotations"]


def _oracle(atlas: Atlas, stage: str, n_genes: int) -> tuple[float, float]:
    """From the images alone and the known masks: max over sections of the fraction of
    darkly stained pixels in a structure. Mean AUC with the right and a wrong mask."""
    S = atlas.ontology.size
    score = np.zeros((n_genes, S))
    truth = np.zeros((n_genes, S), bool)
    for g in range(n_genes):
        exp = atlas.experiment(stage, g, want_labels=True)
        truth[g] = exp.pattern > 0
        for sec in exp.sections:
            stained = (sec.rgb[..., 1] < 140).ravel().astype(float)
            lab = sec.labels.ravel()
            hit = atlas.subtree @ np.bincount(lab, weights=stained, minlength=S + 2)[2:]
            cnt = atlas.subtree @ np.bincount(lab, minlength=S + 2)[2:]
            score[g] = np.maximum(score[g], hit / np.maximum(cnt, 1))
    # a wrong structure: one that is neither an ancestor nor a descendant
    rng = np.random.default_rng(0)
    related = (atlas.subtree + atlas.subtree.T).toarray() > 0
    right, wrong = [], []
    for s in range(S):
        if truth[:, s].all() or not truth[:, s].any():
            continue
        other = rng.choice(np.flatnonzero(~related[s]))
        right.append(roc_auc_score(truth[:, s], score[:, s]))
        wrong.append(roc_auc_score(truth[:, s], score[:, other]))
    return float(np.mean(right)), float(np.mean(wrong))


def test_truth_is_learnable_from_images_and_masks():
    atlas = Atlas(resolve("demo", genes=40, **NO_ANNOTATOR_NOISE), 0)
    mask = atlas.structure_mask(atlas.experiment("E18.5", 0, want_labels=True)
                                .sections[5].labels, int(atlas.ontology.ids[0]))
    assert mask.any() and not mask.all()
    right, wrong = _oracle(atlas, "E18.5", 40)
    assert right > 0.95, right
    assert wrong < 0.7, wrong


def test_specimens_differ_by_a_smooth_warp_when_asked():
    stage, kw = "E18.5", {"genes": 2, "stages": ("E18.5",), "workers": 1}
    still = Atlas(resolve("demo", **kw), 0)
    warped = Atlas(resolve("demo", specimen_warp=0.03, **kw), 0)
    a = still.experiment(stage, 0, want_labels=True)
    b = warped.experiment(stage, 0, want_labels=True)
    # same draws otherwise: the same sections at the same positions
    assert [s.position for s in a.sections] == [s.position for s in b.sections]
    la, lb = a.sections[5].labels, b.sections[5].labels
    moved = (la != lb).mean()
    assert 0.02 < moved < 0.5, moved  # anatomy moved, but the brain is still the brain
    assert abs((la >= 2).mean() - (lb >= 2).mean()) < 0.1
    # two specimens of one stage differ from each other too
    c = warped.experiment(stage, 1, want_labels=True)
    assert not np.array_equal(b.sections[5].labels, c.sections[5].labels)
    # the grid is registered to the reference: the warp leaves it alone
    assert np.array_equal(a.energy, b.energy)


def test_truth_is_learnable_with_warped_specimens():
    atlas = Atlas(resolve("demo", genes=30, specimen_warp=0.03, **NO_ANNOTATOR_NOISE), 0)
    right, wrong = _oracle(atlas, "E18.5", 30)
    assert right > 0.95, right  # the annotator sees the specimen's own anatomy
    assert wrong < 0.7, wrong


def test_annotations_roll_up_and_confusion_stays_below_the_top():
    kw = {"genes": 12, "stages": ("E15.5",), "workers": 1}
    plain = Atlas(resolve("paper", confusion=0.0, **kw), 0)
    mixed = Atlas(resolve("paper", confusion=1.0, **kw), 0)
    parent, level = plain.ontology.parent, plain.ontology.level
    changed = 0
    for g in range(12):
        a = plain.experiment("E15.5", g, images=False).pattern
        b = mixed.experiment("E15.5", g, images=False).pattern
        for calls in (a, b):  # a called structure's parent is called (when it was seen)
            kids = np.flatnonzero((calls > 0) & (parent >= 0))
            assert (calls[parent[kids]] != 0).all()
        assert np.array_equal(a[level == 1] > 0, b[level == 1] > 0)  # top level untouched
        changed += int(((a > 0) != (b > 0)).sum())
    assert changed > 0  # fine calls did move


def test_knobs_are_parsed_and_checked():
    from ishwh.synth.params import parse_knobs

    assert parse_knobs(["grid_noise=1.8", "n_programs=32", "specimen-warp=0.03"]) == {
        "grid_noise": 1.8, "n_programs": 32, "specimen_warp": 0.03}
    for bad in (["colour=red"], ["grid_noise"], ["grid_noise=lots"], ["stages=E11.5"]):
        with pytest.raises(InvalidInput):
            parse_knobs(bad)


def test_real_graph17_ontology(allen_data):
    path = allen_data / "ontology" / "dmba_graph17_tree_from_brainmapr.json"
    onto = from_graph_file(path)
    assert np.bincount(onto.level)[1:].tolist() == [4, 6, 19, 14, 82, 50, 121, 44, 486, 616]
    assert not any(a.startswith("v_") for a in onto.acronyms)


runner = CliRunner()


def test_cli_help():
    from cli.app import app

    for args, shown in ((["synth", "write", "--help"], "--preset"),
                        (["ingest", "synthetic", "--help"], "--preset"),
                        (["synth", "--help"], "write")):
        res = runner.invoke(app, args)
        assert res.exit_code == 0, res.output
        assert shown in res.output, args


def test_cli_ingest_synthetic_json(db_path):
    import json

    from cli.app import app

    res = runner.invoke(app, ["ingest", "synthetic", "--genes", "2", "--stages", "E18.5",
                              "--db", str(db_path), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["added"]["experiments"] == 2
    bad = runner.invoke(app, ["ingest", "synthetic", "--stages", "E12", "--db", str(db_path)])
    assert bad.exit_code != 0 and "unknown stage" in bad.output


def test_cli_synth_write(tmp_path):
    import json

    from cli.app import app

    out = tmp_path / "atlas"
    res = runner.invoke(app, ["synth", "write", str(out), "--genes", "1", "--stages", "E18.5",
                              "--image-size", "160x100", "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["experiments"] == 1 and (out / "sections.csv").exists()
    knob = runner.invoke(app, ["synth", "write", str(tmp_path / "k"), "--genes", "1",
                               "--stages", "E18.5", "--set", "grid_noise=0", "--json"])
    assert knob.exit_code == 0, knob.output
    meta = json.loads((tmp_path / "k" / "synthetic.json").read_text())
    assert meta["params"]["grid_noise"] == 0
    assert meta["source"].startswith("synthetic:demo~")  # not the shipped demo atlas
    bad_knob = runner.invoke(app, ["synth", "write", str(tmp_path / "k2"), "--set", "x=1"])
    assert bad_knob.exit_code != 0 and "cannot set" in bad_knob.output
    assert read_rgb(next((out / "images").rglob("*.jpg"))).shape == (100, 160, 3)
    bad = runner.invoke(app, ["synth", "write", str(tmp_path / "x"), "--image-size", "big"])
    assert bad.exit_code != 0
