"""Atlas-aware features: reference files, registration, structure features and their fit."""

from __future__ import annotations

import json

import cv2
import duckdb
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from cli.app import app
from ishwh import manifest, warehouse
from ishwh.atlas import reference as ref_mod
from ishwh.atlas.planted import PlantedParams, ontology_arrays, write_planted_manifest
from ishwh.atlas.register import RegistrationModel, project_index, project_labels
from ishwh.errors import InvalidInput, ManifestError
from ishwh.fit.structure_features import newton_logistic

runner = CliRunner()
VOLUME = "grid/E11.5_annotation_345x371x158_from_brainmapr.npz"
TREE = "ontology/dmba_graph17_tree_from_brainmapr.json"


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _one_line_error(res) -> str:
    assert res.exit_code != 0
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, res.output
    assert "unexpected" not in lines[0].lower() and "Traceback" not in res.output
    return lines[0]


@pytest.fixture(scope="module")
def e115(request):
    from tests.conftest import ALLEN_DATA  # noqa: PLC0415

    if not ALLEN_DATA.is_dir():
        pytest.skip("shared Allen data not present")
    # every second voxel along each axis: the real anatomy at 32 um, 8x fewer voxels (fast)
    ann = np.ascontiguousarray(np.load(ALLEN_DATA / VOLUME)["annotation"][::2, ::2, ::2])
    tree = json.loads((ALLEN_DATA / TREE).read_text())
    return ann, tree


SMALL = {"canvas": (200, 210), "warp_px": 0.75}


# ----------------------------------------------------------------- reference files


def test_metaimage_round_trip_and_axes(tmp_path):
    rng = np.random.default_rng(0)
    vol = rng.integers(0, 5, size=(7, 5, 3)).astype(np.int32)
    ref_mod.write_mhd(tmp_path / "E11.5.mhd", vol, 16.0)
    # x fastest on disk, as Allen ships it: the raw bytes are the F-order flattening
    raw = np.fromfile(tmp_path / "E11.5.raw", dtype="<u4")
    assert np.array_equal(raw, vol.flatten(order="F"))
    got, spacing = ref_mod.read_reference_file(tmp_path / "E11.5.mhd")
    assert np.array_equal(got, vol) and spacing == 16.0


def test_metaimage_shape_that_does_not_fit_its_header(tmp_path):
    vol = np.ones((4, 4, 4), np.int32)
    ref_mod.write_mhd(tmp_path / "E11.5.mhd", vol)
    (tmp_path / "E11.5.raw").write_bytes((tmp_path / "E11.5.raw").read_bytes()[:-8])
    with pytest.raises(InvalidInput, match="holds 248 bytes but DimSize 4 x 4 x 4"):
        ref_mod.read_reference_file(tmp_path / "E11.5.mhd")


def _warehouse_with_ontology(tmp_path, tree):
    db = tmp_path / "w.duckdb"
    assert invoke("init", "--db", db).exit_code == 0
    rows = []
    ids, parent, level = ontology_arrays(tree)
    with warehouse.connect(db) as con:
        for i, s in enumerate(ids):
            rows.append([int(s), f"S{s}", None, int(ids[parent[i]]) if parent[i] >= 0 else None,
                         int(level[i]), i])
        con.executemany("insert into structures (structure_id, acronym, name, parent_id, level, "
                        "graph_order) values (?, ?, ?, ?, ?, ?)", rows)
    return db


def test_ingest_reference_cli_and_bad_inputs(tmp_path, e115):
    ann, tree = e115
    db = _warehouse_with_ontology(tmp_path, tree)
    good = tmp_path / "E11.5.npz"
    np.savez_compressed(good, annotation=ann, spacing_um=np.float64(16))
    res = invoke("ingest", "reference", "--stage", "E11.5", good, "--db", db)
    assert res.exit_code == 0, res.output
    assert "173 x 186 x 79" in res.output
    con = duckdb.connect(str(db), read_only=True)
    (n, sha) = con.execute("select count(*), any_value(sha256) from reference_atlases").fetchone()
    con.close()
    assert n == 1
    # the stored blob gives back the same voxels
    with warehouse.connect(db) as con:
        back = ref_mod.load(con, "E11.5")
    assert np.array_equal(back.annotation, ann) and back.spacing_um == 16.0
    # unknown ids: one line, nothing written (the E13.5 row does not appear)
    bad = ann.copy()
    bad[0, 0, 0] = 987654321
    np.savez_compressed(tmp_path / "bad.npz", annotation=bad)
    line = _one_line_error(invoke("ingest", "reference", "--stage", "E13.5",
                                  tmp_path / "bad.npz", "--db", db))
    assert "987654321" in line and "not in the ontology" in line
    # a volume whose data does not fit its header
    ref_mod.write_mhd(tmp_path / "E15.5.mhd", ann)
    raw = tmp_path / "E15.5.raw"
    raw.write_bytes(raw.read_bytes()[:-4])
    line = _one_line_error(invoke("ingest", "reference", "--stage", "E15.5",
                                  tmp_path / "E15.5.mhd", "--db", db))
    assert "bytes but DimSize 173 x 186 x 79" in line
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("select list(stage) from reference_atlases").fetchone()[0] == ["E11.5"]
    con.close()
    # a stage without reference when atlas features are asked: one line, no feature set
    line = _one_line_error(invoke("featurize", "--extractor", "atlas", "--stage", "E13.5",
                                  "--db", db))
    assert "stage E13.5 has no reference atlas" in line
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("select count(*) from feature_sets").fetchone()[0] == 0
    con.close()


def _planted(e115, seed: int, genes: int = 2, per_gene: int | None = None, **params):
    """(reference, planted atlas, [(gray, position, true labels, true slice)]) on the
    fixture's anatomy."""
    from ishwh.atlas.planted import PlantedAtlas  # noqa: PLC0415

    ann, tree = e115
    ids, parent, level = ontology_arrays(tree)
    pa_ = PlantedAtlas(ann.astype(np.int32), ids, parent, level,
                       PlantedParams(**{**SMALL, **params}), seed=seed)
    out = []
    for g in range(genes):
        expr, _ = pa_.gene(g)
        for i, p in enumerate(pa_.positions(g)[:per_gene]):
            img, true_lab, true_k, _ = pa_.section(g, i, expr, float(p))
            out.append((cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), float(p), true_lab, true_k))
    return ref_mod.Reference("E11.5", ann.astype(np.int32)), pa_, out


# ----------------------------------------------------------------- registration


def test_registration_recovers_known_transforms(e115):
    ref, _, sections = _planted(e115, seed=3)
    model = RegistrationModel(ref)
    dice = []
    for gray, p, true_lab, true_k in sections:
        al = model.register(gray, p)
        assert al.ok and abs(al.slice_index - true_k) <= 3
        pred = project_labels(ref.slice_labels(al.slice_index), al.affine, gray.shape,
                              displacement=al.displacement)
        inter = np.logical_and(pred > 0, true_lab > 0).sum()
        dice.append(2 * inter / ((pred > 0).sum() + (true_lab > 0).sum()))
    assert np.mean(dice) > 0.85
    # an empty section is not silently placed
    blank = np.full((200, 200), 245, np.uint8)
    al = model.register(blank, 0.5)
    assert not al.ok and al.quality < 0.5


# ----------------------------------------------------------------- the per-structure model


def test_newton_logistic_matches_sklearn():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 4))
    y = (x @ [1.0, -2.0, 0.5, 0.0] + rng.normal(size=200) > 0)
    coef, icpt = newton_logistic(x[None], y[:, None], np.ones((200, 1)), c=0.5)
    sk = LogisticRegression(C=0.5, tol=1e-10, max_iter=1000).fit(x, y)
    assert np.allclose(coef[0], sk.coef_[0], atol=1e-5)
    assert np.allclose(icpt[0], sk.intercept_[0], atol=1e-5)


# ----------------------------------------------------------------- manifest + pipeline


def test_manifest_reference_with_unknown_ids_ingests_nothing(tmp_path, e115):
    ann, tree = e115
    out = tmp_path / "m"
    write_planted_manifest(out, ann, tree, "E11.5", PlantedParams(n_genes=1, n_sections=1, **SMALL))
    bad = ann.copy()
    bad[1, 1, 1] = 42424242
    np.savez_compressed(out / "reference" / "E11.5.npz", annotation=bad)
    db = tmp_path / "w.duckdb"
    assert invoke("init", "--db", db).exit_code == 0
    with pytest.raises(ManifestError, match=r"reference/E11.5.npz: .*42424242"):
        manifest.ingest_dir(db, out)
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("select count(*) from structures").fetchone()[0] == 0
    assert con.execute("select count(*) from reference_atlases").fetchone()[0] == 0
    con.close()


@pytest.mark.slow
def test_atlas_features_end_to_end_beat_chance(tmp_path, e115):
    """atlas.stain, its fit and figures; then atlas.cnn added and fitted alone and joined."""
    ann, tree = e115
    out = tmp_path / "m"
    write_planted_manifest(out, ann, tree, "E11.5",
                           PlantedParams(n_genes=30, n_sections=4, **SMALL))
    db = tmp_path / "w.duckdb"
    assert invoke("init", "--db", db).exit_code == 0
    res = invoke("ingest", "dir", out, "--db", db, "--link")
    assert res.exit_code == 0, res.output
    res = invoke("featurize", "--extractor", "atlas", "--db", db, "--no-progress", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["finished"] == ["atlas.stain"]
    res = invoke("fit", "--features", "atlas.stain", "--stage", "E11.5", "--db", db, "--json")
    assert res.exit_code == 0, res.output
    run_id = json.loads(res.output)["run_ids"][0]
    con = duckdb.connect(str(db), read_only=True)
    n_sec, n_ok = con.execute("select count(*), count(*) filter (ok) "
                              "from section_alignments").fetchone()
    assert n_sec == 120 and n_ok >= 110
    dim, k = con.execute("select dim, json_array_length(params->'stats') from feature_sets "
                         "where name = 'atlas.stain'").fetchone()
    n_struct = con.execute("select count(*) from structures").fetchone()[0]
    assert dim == n_struct * k
    auc = con.execute("select avg(auc) from structure_auc where run_id = ? and auc is not null",
                      [run_id]).fetchone()[0]
    assert auc > 0.8
    # structures never seen on a registered section are skipped with that reason
    never = con.execute("select count(*) from run_tasks where run_id = ? and reason like "
                        "'never seen%'", [run_id]).fetchone()[0]
    seen0 = con.execute("select count(*) from feature_set_structures f join labels l "
                        "using (structure_id) where f.n_sections_seen = 0").fetchone()[0]
    assert (never > 0) == (seen0 > 0)
    con.close()
    # the report's atlas figures: a QC sheet with outlines and the painted section
    from ishwh.atlas.figures import write_figures  # noqa: PLC0415

    paths = write_figures(db, tmp_path / "figs", run_id, level=5)
    assert [p.name for p in paths] == ["registration_qc.png", "expression_on_section.png"]
    sheet = cv2.imread(str(paths[0]))
    green = (sheet[..., 1] > 120) & (sheet[..., 0] < 60) & (sheet[..., 2] < 60)
    assert green.sum() > 500   # outlines of the used sections are drawn
    res = invoke("report", "--out", tmp_path / "rep", "--db", db)
    assert res.exit_code == 0, res.output
    assert "Registration QC" in (tmp_path / "rep" / "report.md").read_text()
    # atlas.cnn, added to the same warehouse: the stain set is untouched
    before = _vectors(db, "atlas.stain")
    # --what only with atlas; an unknown kind is one line, nothing written
    err = _one_line_error(invoke("featurize", "--extractor", "atlas", "--what", "stain,fur",
                                 "--db", db))
    assert "fur" in err
    err = _one_line_error(invoke("featurize", "--extractor", "atlas", "--what", "cnn",
                                 "--layers", "blocks.99", "--db", db))
    assert "blocks.99" in err
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("select count(*) from feature_sets where name like 'atlas.cnn%'"
                       ).fetchone()[0] == 0
    con.close()
    res = invoke("featurize", "--extractor", "atlas", "--what", "stain,cnn", "--db", db,
                 "--no-progress", "--json")
    assert res.exit_code == 0, res.output
    got = json.loads(res.output)
    assert got["written"] == {"atlas.stain": 0, "atlas.cnn": 30}
    assert set(got["finished"]) == {"atlas.stain", "atlas.cnn"}
    assert _vectors(db, "atlas.stain") == before      # untouched by adding cnn
    con = duckdb.connect(str(db), read_only=True)
    dim, params = con.execute("select dim, params from feature_sets "
                              "where name = 'atlas.cnn'").fetchone()
    params = json.loads(params)
    assert dim == n_struct * 33 and len(params["projection"]["components"]) == 16
    assert 0.5 < params["projection"]["explained"] <= 1.0
    con.close()
    aucs = {}
    for feats in ("atlas.cnn", "atlas.stain+atlas.cnn"):
        res = invoke("fit", "--features", feats, "--stage", "E11.5", "--db", db, "--json")
        assert res.exit_code == 0, res.output
        run_id = json.loads(res.output)["run_ids"][0]
        con = duckdb.connect(str(db), read_only=True)
        aucs[feats] = con.execute("select avg(auc) from structure_auc where run_id = ? and "
                                  "auc is not null", [run_id]).fetchone()[0]
        dim = con.execute("select f.dim from runs r join feature_sets f using (feature_set_id) "
                          "where run_id = ?", [run_id]).fetchone()[0]
        con.close()
    assert dim == n_struct * (33 + 5)
    assert aucs["atlas.cnn"] > 0.7 and aucs["atlas.stain+atlas.cnn"] > 0.7, aucs
    err = _one_line_error(invoke("fit", "--features", "atlas.cnn+grid+bow", "--stage", "E11.5",
                                 "--db", db))
    assert "one global set" in err


def _vectors(db, name: str) -> list:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("select experiment_id, vec from experiment_features join "
                           "feature_sets using (feature_set_id) where name = ? order by 1",
                           [name]).fetchall()
    finally:
        con.close()


# ----------------------------------------------------------------- atlas.cnn


def test_cnn_pooling_is_the_mean_of_the_cells_under_each_mask():
    """The (leaf x cell) count matrix times the map equals averaging every mask pixel's cell
    scores, computed here pixel by pixel from the upsampled map."""
    import scipy.sparse as sp  # noqa: PLC0415

    from ishwh.atlas.cnn_features import StructureCNN, pool_experiment  # noqa: PLC0415

    m = StructureCNN()
    rng = np.random.default_rng(0)
    hf, wf, c = 5, 6, m.channels
    m.set_projection({"mean": rng.normal(size=c).tolist(),
                      "components": rng.normal(size=(3, c)).tolist()})
    fmap = rng.normal(size=(hf, wf, c)).astype(np.float32)
    s = m.stride
    lab = rng.integers(0, 4, size=(hf * s, wf * s))          # leaf indices, 0 = background
    lab[:, :s] = 0
    # structures: 0 = leaf 1, 1 = leaves 1 + 2, 2 = leaf 3, 3 = nothing
    sub = sp.csr_matrix(np.array([[0, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]]))
    area, sums = m.section_sums(fmap, lab, 4, sub)
    up = np.repeat(np.repeat(fmap, s, 0), s, 1)               # (h, w, C): each pixel's cell
    proj = (up - np.asarray(m.projection["mean"])) @ np.asarray(m.projection["components"]).T
    for si, leaves in enumerate([[1], [1, 2], [3]]):
        mask = np.isin(lab, leaves)
        assert area[si] == mask.sum()
        np.testing.assert_allclose(sums[si] / area[si], proj[mask].mean(0), rtol=1e-4, atol=1e-4)
    assert area[3] == 0
    # over sections: max of the per-section means, area-weighted mean; unseen -> 0, not seen
    a2, s2 = area * 0.5, sums * 0.5 + 1.0
    out, seen = pool_experiment([area, a2], [sums, s2], min_pixels=1)
    k = sums.shape[1]
    np.testing.assert_allclose(out[0, :k], np.maximum(sums[0] / area[0], s2[0] / a2[0]),
                               rtol=1e-5)
    np.testing.assert_allclose(out[0, k:2 * k], (sums[0] + s2[0]) / (area[0] + a2[0]),
                               rtol=1e-5)
    assert seen.tolist() == [2, 2, 2, 0] and not out[3].any()
    assert out[0, -1] == 1.0     # seen on both sections


def test_unseen_structures_take_their_nearest_seen_ancestor():
    from ishwh.atlas.features import fill_unseen  # noqa: PLC0415

    # 0 root (seen) -> 1 (unseen) -> 2 (unseen); 0 -> 3 (seen) -> 4 (unseen); 5 lone (unseen)
    parent = np.array([-1, 0, 1, 0, 3, -1])
    seen = np.array([True, False, False, True, False, False])
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    x[~seen, 1] = 0.0                    # column 1 plays "seen": kept
    out = fill_unseen(x, seen, parent, keep=[1])
    assert out[:, 0].tolist() == [0, 0, 0, 6, 6, 10]
    assert out[:, 1].tolist() == x[:, 1].tolist()


# ----------------------------------------------------------------- non-rigid refinement


def test_nonrigid_step_undoes_the_specimen_displacement(tmp_path, e115):
    """Sections of a specimen warped away from the reference (a smooth displacement, known):
    the displacement grid must raise fine-structure Dice over the affine alone, and survive
    the round trip through section_alignments."""
    from ishwh.atlas import alignments  # noqa: PLC0415
    from ishwh.atlas.accuracy import StructureDice  # noqa: PLC0415

    ref, pa_, sections = _planted(e115, seed=5, per_gene=4, warp_px=1.5)
    scorer = StructureDice(pa_.sub, pa_.leaf_ids, pa_.level, min_pixels=30)
    models = {"affine": RegistrationModel(ref, refine=False), "grid": RegistrationModel(ref)}
    dice = {name: [] for name in models}
    found = []
    for gray, p, true_lab, _ in sections:
        for name, model in models.items():
            al = model.register(gray, p)
            assert al.ok
            pred = project_labels(ref.slice_labels(al.slice_index), al.affine, gray.shape,
                                  displacement=al.displacement)
            dice[name] += [d for lv, d in scorer.score(pred, true_lab) if lv >= 3]
            if name == "grid":
                found.append(al)
    assert all(a.displacement is not None and a.displacement.shape == (6, 6, 2) for a in found)
    assert np.mean(dice["grid"]) > np.mean(dice["affine"]) + 0.03, (
        np.mean(dice["grid"]), np.mean(dice["affine"]))
    # stored and read back: the same projection
    db = tmp_path / "w.duckdb"
    warehouse.init(db)
    with warehouse.connect(db) as con:
        with warehouse.transaction(con):
            alignments.insert(con, [alignments.row(7, "E11.5", found[0], {"x": 1})])
        back = alignments.load(con, [7])[7]
    assert back.method.endswith("+dis-flow-grid") and back.ok
    k = back.slice_index
    half = project_index(ref.slice_index_labels(k), back.affine, (105, 100), 0.5,
                         back.displacement)
    full = project_index(ref.slice_index_labels(k), found[0].affine, (210, 200), 1.0,
                         found[0].displacement)
    assert (half > 0).sum() > 100
    assert (half == full[::2, ::2]).mean() > 0.97     # the grid scales with the image


def test_a_section_at_another_scale_than_its_stage_is_not_used(e115):
    """The stage's scale comes from a sample of its sections; a section placed at a very
    different scale matched the wrong thing and gets a low quality, even with a good Dice.
    Brain-only sections keep the whole-tissue reading at an embryo stage."""
    ref, _, sections = _planted(e115, seed=4)
    model = RegistrationModel(ref)
    sample = [(gray, p) for gray, p, *_ in sections]
    prior = model.calibrate(sample)
    assert prior is not None and not model.surroundings
    gray, p = sample[3]
    assert model.register(gray, p).ok
    big = np.full((420, 400), 250, np.uint8)         # the same section shown 1.9x larger
    up = cv2.resize(gray, None, fx=1.9, fy=1.9, interpolation=cv2.INTER_LINEAR)
    h, w = min(420, up.shape[0]), min(400, up.shape[1])
    big[:h, :w] = up[:h, :w]
    al = model.register(big, p)
    assert al.scale > 1.5 * prior and not al.ok and al.quality < model.min_quality


def test_sections_with_float_pixels_are_read_as_ingest_reads_them(tmp_path):
    """A float TIFF (OpenCV's 8-bit decoders refuse it) falls back to ingest's whole decode,
    for the local engine and the Ray read tasks alike (`atlas.runner.read_gray/read_color`)."""
    from ishwh.atlas.runner import read_color, read_gray  # noqa: PLC0415
    from ishwh.images import read_rgb  # noqa: PLC0415

    path = str(tmp_path / "float.tif")
    rgb = np.random.default_rng(0).random((40, 60, 3)).astype(np.float32)
    assert cv2.imwrite(path, rgb[..., ::-1])
    assert cv2.imread(path, cv2.IMREAD_GRAYSCALE) is None
    want = read_rgb(path)
    assert np.array_equal(read_color(path), want[..., ::-1])
    assert np.array_equal(read_gray(path), cv2.cvtColor(want, cv2.COLOR_RGB2GRAY))
    data = np.fromfile(path, np.uint8)
    assert np.array_equal(read_gray("name", data), read_gray(path))
