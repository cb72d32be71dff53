"""`ishwh featurize`: every extractor on a small real warehouse (real PNGs, real DuckDB)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from ishwh import loader, store, warehouse
from ishwh.errors import InvalidInput, NotFound
from ishwh.features import (
    DEFAULT_LAYERS,
    BowFeatures,
    CNNFeatures,
    GridFeatures,
    bow_dim,
    featurize,
)
from ishwh.features import bow as bowmod
from ishwh.features.cnn import decode_for_cnn, pool_sections
from ishwh.images import store_array

GRID = (5, 4, 3)


def section_image(rng: np.random.Generator, w: int, h: int, gray: bool = False) -> np.ndarray:
    """An ISH-like section: light noisy background, a tissue ellipse, dark stained blobs.

    The left strip is perfectly flat, so some SIFT descriptors are all zeros.
    """
    img = np.full((h, w, 3), 235, np.uint8)
    img = cv2.add(img, rng.integers(0, 12, (h, w, 3), dtype=np.uint8))
    cv2.ellipse(img, (w // 2, h // 2), (w // 3, h // 3), 0, 0, 360, (200, 190, 180), -1)
    for _ in range(int(rng.integers(3, 9))):
        c = (int(rng.integers(w // 4, 3 * w // 4)), int(rng.integers(h // 4, 3 * h // 4)))
        r = int(rng.integers(4, max(5, w // 12)))
        col = tuple(int(v) for v in rng.integers(30, 120, 3))
        cv2.circle(img, c, r, col, -1)
    img[:, : w // 3] = 240
    if gray:
        return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    return img


def make_warehouse(db: Path, n_exp: int = 4, n_sec: int = 3, size: tuple[int, int] = (320, 240),
                   stages: tuple[str, ...] = ("E13.5",), seed: int = 0, grids: bool = True,
                   positions: bool = True) -> list[int]:
    """Fill an initialised warehouse with experiments, PNG sections and grids; return ids."""
    rng = np.random.default_rng(seed)
    root = warehouse.images_dir(db)
    genes, exps, secs, grid_rows = [], [], [], []
    eid = 100
    for stage in stages:
        for _ in range(n_exp):
            eid += 1
            genes.append({"gene_id": eid, "acronym": f"G{eid}", "name": None, "entrez_id": None})
            exps.append({"experiment_id": eid, "gene_id": eid, "stage": stage,
                         "plane": "sagittal", "source": "test"})
            for k in range(n_sec):
                gray = (k % 2 == 1)
                img = section_image(rng, *size, gray=gray)
                rgb = img if img.ndim == 3 else np.repeat(img[:, :, None], 3, axis=2)
                st = store_array(rgb, root)
                secs.append({"section_id": eid * 100 + k, "experiment_id": eid,
                             "section_number": k + 1, "image_path": st.relpath,
                             "width": st.width, "height": st.height,
                             "position": (k + 0.5) / n_sec if positions else None,
                             "sha256": st.sha256})
            energy = rng.random(int(np.prod(GRID))).astype(np.float32)
            energy[:: 7] = -1.0
            grid_rows.append({"experiment_id": eid, "nx": GRID[0], "ny": GRID[1], "nz": GRID[2],
                              "spacing_um": 200.0, "energy": energy.tolist()})
    batch = loader.Batch(genes=genes, experiments=exps, sections=secs,
                         expression_grids=grid_rows if grids else None)
    with warehouse.connect(db) as con:
        loader.load(con, batch)
    return [e["experiment_id"] for e in exps]


def read_set(db: Path, name: str) -> tuple[np.ndarray, np.ndarray, int, bool]:
    with warehouse.connect(db, read_only=True) as con:
        ids, x = store.read_experiment_features(con, name)
        dim, fin = con.execute("select dim, finished_at is not null from feature_sets "
                               "where name = ?", [name]).fetchall()[0]
    return ids, x, dim, fin


# --------------------------------------------------------------------------- extractors alone


def test_cnn_transformer_dims_and_pooling():
    ext = CNNFeatures(layers=["blocks.3", "blocks.5"], pools=("max", "mean"), device="cpu").fit()
    assert ext.dims_ == {"blocks.3": 80 * 15 * 15, "blocks.5": 192 * 8 * 8}
    rng = np.random.default_rng(1)
    exps = [[section_image(rng, 200, 150) for _ in range(3)],
            [section_image(rng, 200, 150, gray=True)]]
    out = ext.transform(exps)
    assert out[("blocks.3", "max")].shape == (2, 18000)
    assert out[("blocks.5", "mean")].shape == (2, 12288)
    # max >= mean element-wise; a one-section experiment has max == mean
    assert np.all(out[("blocks.3", "max")] >= out[("blocks.3", "mean")] - 1e-5)
    np.testing.assert_allclose(out[("blocks.5", "max")][1], out[("blocks.5", "mean")][1],
                               rtol=1e-6, atol=1e-6)
    small = CNNFeatures(layers=["blocks.3"], spatial=4, device="cpu").fit()
    assert small.dims_ == {"blocks.3": 80 * 4 * 4}


def test_cnn_truncated_pass_equals_full_pass():
    """Stopping after the deepest requested layer changes nothing in the outputs."""
    import torch

    ext = CNNFeatures(layers=["blocks.2"], device="cpu").fit()
    x = np.random.default_rng(0).integers(0, 255, (2, 231, 231, 3), dtype=np.uint8)
    trunc = ext.section_features(x)["blocks.2"]
    got = {}
    h = ext.model_.blocks[2].register_forward_hook(lambda m, i, o: got.setdefault("o", o))
    ext.tap_.close()
    try:
        xx = torch.as_tensor(x).permute(0, 3, 1, 2).float()
        xx = ((xx - ext._mean) / ext._std).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            ext.model_(xx)
    finally:
        h.remove()
    np.testing.assert_allclose(trunc, got["o"].contiguous().flatten(1).numpy(), rtol=1e-5,
                               atol=1e-5)


def test_bundled_weights_classify_a_natural_image():
    """The ImageNet weights loaded by position recognise scikit-learn's china.jpg."""
    from sklearn.datasets import load_sample_image

    from ishwh.features.cnn import prepare_rgb

    # ImageNet-1k indices of building classes that fit a photo of a Chinese temple/palace.
    plausible = {497: "church", 698: "palace", 538: "dome", 663: "monastery", 668: "mosque",
                 442: "bell cote", 832: "stupa", 483: "castle", 873: "triumphal arch"}
    try:
        from torchvision.models._meta import _IMAGENET_CATEGORIES as names

        assert all(names[i] == n for i, n in plausible.items())
    except ImportError:  # pragma: no cover - private torchvision table moved
        pass
    ext = CNNFeatures(layers=["blocks.1"], device="cpu").fit()
    prob = ext.predict_imagenet(prepare_rgb(load_sample_image("china.jpg"), 231)[None])[0]
    top5 = set(np.argsort(-prob)[:5].tolist())
    assert len(top5 & set(plausible)) >= 2, top5
    assert prob[list(plausible)].sum() > 0.3


def test_unknown_layer_and_backbone_without_weights():
    with pytest.raises(InvalidInput, match="unknown layer"):
        CNNFeatures(layers=["blocks.99"], device="cpu").fit()
    with pytest.raises(InvalidInput, match="no bundled weights"):
        CNNFeatures(backbone="resnet18", device="cpu").fit()


def test_other_backbone_with_weights_file(tmp_path):
    import timm
    import torch

    m = timm.create_model("resnet18", pretrained=False)
    torch.save(m.state_dict(), tmp_path / "r18.pth")
    ext = CNNFeatures(backbone="resnet18", layers=["layer2"], weights=str(tmp_path / "r18.pth"),
                      device="cpu", image_size=64).fit()
    assert ext.dims_ == {"layer2": 128 * 8 * 8}


def test_bow_and_grid_transformers():
    rng = np.random.default_rng(3)
    imgs = [cv2.resize(section_image(rng, 320, 240, gray=True), (80, 60)) for _ in range(12)]
    bw = BowFeatures(n_words=10, max_descriptors=2000).fit(imgs)
    assert [c.shape for c in bw.codebooks_] == [(10, 128)] * 3
    x = bw.transform([(imgs[:3], [0.05, 0.5, 0.95], [1, 2, 3]), (imgs[3:4], [None], [1])])
    assert x.shape == (2, bow_dim(10)) == (2, 11 * 3 * 7)
    per = x[0].reshape(7, 33)
    assert per[0].sum() > 0 and per[3].sum() > 0 and per[6].sum() > 0
    assert per[1].sum() == 0  # an empty interval is zeros
    # counts per scale add up to the number of keypoints, zero descriptors included
    assert per[0][:11].sum() == per[0][11:22].sum() == per[0][22:].sum()
    assert bow_dim() == 10_521
    # a flat image gives all-zero descriptors: they land in the extra bin of each scale
    blank = bw.section_counts(np.full((60, 80), 240, np.uint8))
    assert blank.reshape(3, 11)[:, :10].sum() == 0 and (blank.reshape(3, 11)[:, 10] > 0).all()
    g = GridFeatures().fit([np.zeros(GRID)])
    e = np.array([[-1.0, 0.5, np.nan, 2.0]])
    np.testing.assert_array_equal(GridFeatures().fit(e).transform(e), [[0, 0.5, 0, 2]])
    assert g.dim_ == 60


def test_interval_assignment():
    np.testing.assert_array_equal(bowmod.interval_index([0.0, 0.14, 0.15, 0.5, 1.0], [1] * 5),
                                  [0, 0, 1, 3, 6])
    # any missing position: by section-number order
    np.testing.assert_array_equal(bowmod.interval_index([None] * 7, [7, 6, 5, 4, 3, 2, 1]),
                                  [6, 5, 4, 3, 2, 1, 0])
    np.testing.assert_array_equal(bowmod.interval_index([0.1, None], [1, 2]), [0, 3])


# --------------------------------------------------------------------------- the pipeline


def test_featurize_cnn_writes_sets_and_reruns_do_nothing(db_path):
    ids = make_warehouse(db_path)
    names = featurize(db_path, layers=["blocks.2", "blocks.3"], pools=("max", "mean"),
                      device="cpu", workers=1, progress=False, chunk_size=3).names
    assert names == ["efficientnet_lite0.blocks.2.max", "efficientnet_lite0.blocks.2.mean",
                     "efficientnet_lite0.blocks.3.max", "efficientnet_lite0.blocks.3.mean"]
    got_ids, x, dim, finished = read_set(db_path, "efficientnet_lite0.blocks.3.max")
    assert got_ids.tolist() == ids and x.shape == (4, 18000) == (4, dim) and finished
    assert read_set(db_path, "efficientnet_lite0.blocks.2.mean")[2] == 40 * 29 * 29
    # the warehouse pipeline equals the plain transformer on the same decoded images
    ext = CNNFeatures(layers=["blocks.3"], pools=("max",), device="cpu").fit()
    with warehouse.connect(db_path, read_only=True) as con:
        rows = con.execute("select image_path, width, height from sections where "
                           "experiment_id = ? order by section_number", [ids[0]]).fetchall()
    root = warehouse.images_dir(db_path)
    imgs = np.stack([decode_for_cnn(root / p, 231, w, h) for p, w, h in rows])
    ref = pool_sections(ext.section_features(imgs)["blocks.3"], "max")
    np.testing.assert_allclose(x[0], ref, rtol=1e-4, atol=1e-4)
    again = featurize(db_path, layers=["blocks.2", "blocks.3"], pools=("max", "mean"),
                             device="cpu", progress=False)
    assert again.written == {} and len(again.finished) == 4
    with warehouse.connect(db_path, read_only=True) as con:
        assert con.execute("select count(*) from experiment_features").fetchall()[0][0] == 16


def test_featurize_default_layers_and_stage_filter(db_path):
    make_warehouse(db_path, n_exp=2, n_sec=2, stages=("E13.5", "P4"))
    res = featurize(db_path, stages=["P4"], device="cpu", workers=0, progress=False)
    assert res.names == [f"efficientnet_lite0.{layer}.max" for layer in DEFAULT_LAYERS]
    assert all(v == 2 for v in res.written.values())
    assert res.finished == []  # E13.5 still missing
    res = featurize(db_path, device="cpu", workers=0, progress=False)
    assert all(v == 2 for v in res.written.values()) and res.finished == res.names
    with pytest.raises(NotFound, match="stage E11.5"):
        featurize(db_path, stages=["E11.5"], progress=False)


def test_featurize_bow_default_dims(db_path):
    ids = make_warehouse(db_path, n_exp=4, n_sec=3, size=(512, 384), grids=False)
    # default dims; one k-means restart instead of three keeps the test short
    names = featurize(db_path, extractor="bow", workers=0, progress=False, bow={"n_init": 1}).names
    assert names == ["bow"]
    got, x, dim, finished = read_set(db_path, "bow")
    assert got.tolist() == ids and x.shape == (4, 10_521) and dim == 10_521 and finished
    with warehouse.connect(db_path, read_only=True) as con:
        cb = con.execute("select stage, scale, n_words, len(centers) from codebooks "
                         "order by scale").fetchall()
        n_sec = con.execute("select count(*), min(len(vec)) from section_features").fetchall()
    assert cb == [("E13.5", s, 500, 500 * 128) for s in range(3)]
    assert n_sec == [(12, 1503)]
    # three sections at positions 1/6, 1/2, 5/6 -> intervals 1, 3, 5 filled, others zero
    per = x[0].reshape(7, 1503)
    assert [bool(per[i].any()) for i in range(7)] == [False, True, False, True, False, True,
                                                       False]
    assert per[1].sum() > 0


def test_featurize_bow_small_codebook_resumes_with_stored_codebooks(db_path):
    make_warehouse(db_path, n_exp=3, n_sec=2, grids=False, positions=False)
    opts = dict(extractor="bow", workers=1, progress=False, chunk_size=1,
                bow={"n_words": 16, "max_descriptors": 3000})
    featurize(db_path, **opts)
    _, x1, dim, _ = read_set(db_path, "bow.w16")
    assert dim == 17 * 3 * 7
    with warehouse.connect(db_path) as con:  # drop one experiment: a resume recomputes it
        con.execute("delete from experiment_features where experiment_id = 102").fetchall()
        con.execute("delete from section_features where section_id in (10200, 10201)"
                    ).fetchall()
    res = featurize(db_path, **opts)
    assert res.written == {"bow.w16": 1}
    np.testing.assert_array_equal(read_set(db_path, "bow.w16")[1], x1)
    # another number of words is another set; other parameters must match the set's
    with pytest.raises(InvalidInput, match=r"other parameters: .*max_descriptors 3000 "
                                           r"\(now 2000\)"):
        featurize(db_path, extractor="bow", progress=False,
                  bow={"n_words": 16, "max_descriptors": 2000})


def test_featurize_grid(db_path):
    ids = make_warehouse(db_path, n_exp=3, n_sec=1)
    assert featurize(db_path, extractor="grid", progress=False).names == ["grid"]
    got, x, dim, finished = read_set(db_path, "grid")
    assert got.tolist() == ids and dim == 60 and x.shape == (3, 60) and finished
    assert (x >= 0).all() and (x[:, ::7] == 0).all()


def test_featurize_grid_without_grids(db_path):
    make_warehouse(db_path, n_exp=1, n_sec=1, grids=False)
    with pytest.raises(NotFound, match="no expression grids"):
        featurize(db_path, extractor="grid", progress=False)


def test_bad_images_fail_or_skip(db_path):
    ids = make_warehouse(db_path, n_exp=4, n_sec=2)
    root = warehouse.images_dir(db_path)
    with warehouse.connect(db_path, read_only=True) as con:
        path = dict(con.execute("select section_id, image_path from sections").fetchall())
    p_trunc, p_garbage, p_third = path[10400], path[10300], path[10301]
    data = (root / p_trunc).read_bytes()
    (root / p_trunc).write_bytes(data[: len(data) // 2])  # truncated PNG, experiment 104
    (root / p_garbage).write_bytes(b"not an image at all")  # experiment 103, section 10300
    (root / p_third).write_bytes(b"")  # experiment 103 has no readable section left
    opts = dict(layers=["blocks.1"], device="cpu", workers=1, progress=False, chunk_size=1)
    with pytest.raises(InvalidInput, match=r"experiment 103, section 10300 .*: not a readable PNG"):
        featurize(db_path, **opts)
    # the chunks before the bad image were committed and stay
    got, _, _, finished = read_set(db_path, "efficientnet_lite0.blocks.1.max")
    assert got.tolist() == ids[:2] and not finished
    res = featurize(db_path, on_error="skip", **opts)
    assert res.written == {"efficientnet_lite0.blocks.1.max": 1}  # 104 (one good section)
    text = "\n".join(res.problems)
    assert "experiment 104, section 10400" in text and "truncated" in text
    assert str(root / p_trunc) in text
    assert "experiment 103: no readable section" in text
    got, _, _, finished = read_set(db_path, "efficientnet_lite0.blocks.1.max")
    assert got.tolist() == [101, 102, 104] and finished  # 103 cannot have a vector


def test_bad_arguments_rejected_before_work(db_path):
    make_warehouse(db_path, n_exp=1, n_sec=1)
    with pytest.raises(InvalidInput, match="pool"):
        featurize(db_path, pools=("median",), progress=False)
    with pytest.raises(InvalidInput, match="extractor"):
        featurize(db_path, extractor="sift", progress=False)
    with pytest.raises(InvalidInput, match="on_error"):
        featurize(db_path, on_error="ignore", progress=False)
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(InvalidInput, match="no CUDA"):
            featurize(db_path, device="cuda", progress=False)


# --------------------------------------------------------------------------- CLI


def test_cli_featurize_help():
    from cli.app import app

    res = CliRunner().invoke(app, ["featurize", "--help"])
    assert res.exit_code == 0
    for opt in ("--extractor", "--layers", "--pool", "--stage", "--device", "--batch-size",
                "--workers", "--weights", "--on-error", "--db"):
        assert opt in res.output


def test_cli_featurize_grid_json_and_error(db_path):
    from cli.app import app

    make_warehouse(db_path, n_exp=2, n_sec=1)
    res = CliRunner().invoke(app, ["featurize", "-e", "grid", "--db", str(db_path), "--json",
                                   "--no-progress"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["names"] == ["grid"] and out["written"] == {"grid": 2}
    res = CliRunner().invoke(app, ["featurize", "--pool", "median", "--db", str(db_path)])
    assert res.exit_code == 1 and "pool must be max and/or mean" in res.output
    assert "Traceback" not in res.output


@pytest.mark.parametrize("kind", ["float32 tiff", "1x1 png", "3x2 16-bit png"])
def test_featurizers_read_every_image_ingest_accepts(tmp_path, kind):
    """Ingest decodes any pixel type (images.read_rgb); the featurizers' fast decoders must
    read the same files (they fall back to the whole decode) instead of failing the job."""
    from ishwh.images import read_rgb

    rng = np.random.default_rng(3)
    if kind == "float32 tiff":
        path, img = tmp_path / "f.tif", rng.random((40, 30)).astype(np.float32)
    elif kind == "1x1 png":
        path, img = tmp_path / "one.png", np.full((1, 1), 90, np.uint8)
    else:
        path, img = tmp_path / "tiny16.png", rng.integers(0, 65535, (2, 3, 3), dtype=np.uint16)
    assert cv2.imwrite(str(path), img)
    want = read_rgb(path)                     # what ingest accepted
    got = decode_for_cnn(path, 32)
    assert got.shape == (32, 32, 3) and got.dtype == np.uint8
    ref = cv2.resize(want, (32, 32), interpolation=cv2.INTER_AREA)
    # OpenCV's 8-bit decode of 16-bit pixels shifts (>> 8) where ingest rounds (/ 257)
    assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1
    gray = bowmod.read_gray(str(path))
    h, w = want.shape[:2]
    assert gray.dtype == np.uint8 and gray.shape == (max(1, h // 4), max(1, w // 4))
