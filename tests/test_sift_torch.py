"""The torch dense SIFT against OpenCV's: descriptors, words, a featurize run, and the
refusal to mix the two in one feature set. Runs on the CPU (the GPU path is the same code)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from ishwh import warehouse
from ishwh.errors import InvalidInput
from ishwh.features import bow as bowmod
from ishwh.features import featurize
from ishwh.features.sift_torch import TorchDenseSift, _fast_atan2, dense_sift_torch, gaussian_taps
from ishwh.synth import ingest_synthetic

sys.path.insert(0, str(Path(__file__).parent))
from test_featurize import section_image  # noqa: E402

ALLEN_JPEG = "images/Prox1_P56_sagittal_ISH_downsample2.jpg"


def synthetic_warehouse(db: Path, genes: int = 3) -> Path:
    """A tiny synthetic atlas (demo preset, one stage): real rendered JPEG sections."""
    warehouse.init(db)
    ingest_synthetic(db, "demo", seed=0, progress=False, genes=genes, stages=("E13.5",),
                     workers=1)
    return db


@pytest.fixture(scope="module")
def synthetic_sections(tmp_path_factory) -> list[str]:
    db = synthetic_warehouse(tmp_path_factory.mktemp("synth") / "wh.duckdb")
    with warehouse.connect(db, read_only=True) as con:
        rel = [r[0] for r in con.execute(
            "select image_path from sections order by section_id").fetchall()]
    return [str(warehouse.images_dir(db) / p) for p in rel]


def agreement(a: list[np.ndarray], b: list[np.ndarray]) -> tuple[int, float]:
    """(largest difference of a component, share of identical components) over all sizes."""
    x = np.concatenate(a).astype(np.int64)
    y = np.concatenate(b).astype(np.int64)
    assert x.shape == y.shape
    d = np.abs(x - y)
    return int(d.max(initial=0)), float((d == 0).mean())


def assert_same_as_opencv(images: list[np.ndarray]
                          ) -> tuple[list[list[np.ndarray]], list[list[np.ndarray]]]:
    """OpenCV's and the torch descriptors of ``images`` (checked to agree)."""
    ref = [bowmod.dense_sift(g) for g in images]
    got = [dense_sift_torch(g) for g in images]
    for r, g in zip(ref, got, strict=True):
        assert [x.shape for x in r] == [x.shape for x in g]
        assert [x.dtype for x in g] == [np.uint8] * len(g)
        for x, y in zip(r, g, strict=True):  # flat patches: the same all-zero descriptors
            np.testing.assert_array_equal(~x.any(1), ~y.any(1))
    worst, same = agreement([x for r in ref for x in r], [x for g in got for x in g])
    # Measured: max 1, 99.998% identical (float rounding at k + 0.5 only).
    assert worst <= 1 and same >= 0.9999, (worst, same)
    return ref, got


def test_blur_taps_and_orientations_are_opencvs():
    sigma = float(np.sqrt(np.float32(1.6) ** 2 - np.float32(0.5) ** 2, dtype=np.float32))
    np.testing.assert_array_equal(gaussian_taps(),
                                  cv2.getGaussianKernel(13, sigma).ravel().astype(np.float32))
    rng = np.random.default_rng(0)
    x = (rng.normal(size=20_000) * 50).astype(np.float32)
    y = (rng.normal(size=20_000) * 50).astype(np.float32)
    x[:50] = 0
    y[25:75] = 0
    ref = cv2.phase(x, y, angleInDegrees=True).ravel()  # OpenCV's fastAtan2
    got = _fast_atan2(torch.from_numpy(y), torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4)
    # atan2 itself differs by up to ~0.01 degree: the polynomial is what makes bins agree
    assert np.abs(np.degrees(np.arctan2(y, x)) % 360 - ref).max() > 1e-3


def test_descriptors_equal_opencv_on_synthetic_sections(synthetic_sections):
    full = [bowmod.read_gray(p, 1) for p in synthetic_sections[:12]]
    reduced = [bowmod.read_gray(p) for p in synthetic_sections[:12]]
    rng = np.random.default_rng(1)
    flat = [section_image(rng, 320, 240, gray=True) for _ in range(3)]  # flat left third
    assert sum(int((~d.any(1)).sum()) for d in bowmod.dense_sift(flat[0])) > 0
    # smaller than one step: one keypoint in the middle, at a half pixel (rounded to even)
    tiny = [full[0][:11, :13], full[0][:5, :4], full[0][40:55, 100:109]]
    assert_same_as_opencv(full + reduced + flat + tiny)


def test_descriptors_and_words_equal_opencv_on_the_allen_image(allen_data):
    path = allen_data / ALLEN_JPEG
    if not path.exists():
        pytest.skip(f"{path} not present")
    gray = bowmod.read_gray(str(path))  # 745 x 472 after the x4 reduction
    (ref,), (got,) = assert_same_as_opencv([gray])
    # Words: a codebook learnt from OpenCV descriptors assigns (nearly) every torch
    # descriptor the same word. Measured: 100% of 1,363 per scale here (and of 11,650 with
    # the synthetic sections and the x2 image).
    centers = []
    for r, g in zip(ref, got, strict=True):
        c, _ = bowmod.fit_codebook(bowmod.nonzero(r), 100, 1, 0)
        centers.append(c)
        same = (bowmod.assign(r, c) == bowmod.assign(g, c)).mean()
        assert same >= 0.99, same
    # Counting on the device equals the numpy counting of the same descriptors.
    sift = TorchDenseSift(device="cpu")
    on_dev = sift.codebooks(centers)
    np.testing.assert_array_equal(sift.section_counts(None, on_dev, got),
                                  bowmod.section_counts(got, centers))
    counts = sift.section_counts(gray, on_dev)
    ref_counts = bowmod.section_counts(ref, centers)
    assert np.abs(counts - ref_counts).sum() <= 0.01 * ref_counts.sum()
    # a flat image: every descriptor is zero, counted in the extra bin
    blank = sift.section_counts(np.full((60, 80), 240, np.uint8), on_dev).reshape(3, 101)
    assert blank[:, :100].sum() == 0 and (blank[:, 100] == 20).all()


def read_bow(db: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    with warehouse.connect(db, read_only=True) as con:
        vecs = con.execute("select vec from experiment_features order by experiment_id"
                           ).fetchall()
        cbs = con.execute("select centers from codebooks order by stage, scale").fetchall()
        params = con.execute("select params from feature_sets where name like 'bow%'").fetchall()
    return (np.array([v[0] for v in vecs], np.float32), np.array([c[0] for c in cbs]),
            json.loads(params[0][0]))


SMALL = {"n_words": 32, "n_init": 1}


def test_featurize_with_torch_sift_matches_opencv(tmp_path):
    dbs = {}
    for impl, workers in (("opencv", 0), ("torch", 1)):
        db = synthetic_warehouse(tmp_path / f"{impl}.duckdb")
        res = featurize(db, extractor="bow", device="cpu", workers=workers,
                               progress=False, bow={**SMALL, "sift": impl})
        assert res.written == {"bow.w32": 3} and res.finished == ["bow.w32"]
        dbs[impl] = read_bow(db)
    (xo, co, po), (xt, ct, pt) = dbs["opencv"], dbs["torch"]
    assert (po["sift"], pt["sift"], po["upright"]) == ("opencv", "torch", True)
    # Codebooks learnt from nearly identical descriptors: here the same up to float noise,
    # and the word counts identical (allowed: 1% of their mass moved). k-means can diverge
    # though (500 words on a few thousand descriptors did, from 11 components off by 1):
    # one more reason never to mix the two in a set.
    assert np.abs(co - ct).max() < 0.5
    assert np.abs(xo - xt).sum() <= 0.01 * xo.sum()
    # With the same (stored) codebooks, the torch path counts the same words: the OpenCV
    # set's vectors are recomputed by the torch path from its codebooks.
    db = tmp_path / "opencv.duckdb"
    with warehouse.connect(db) as con:
        con.execute("update feature_sets set params = ? where name like 'bow%'",
                    [json.dumps({**po, "sift": "torch"})])
        con.execute("delete from experiment_features")
        con.execute("delete from section_features")
    res = featurize(db, extractor="bow", device="cpu", workers=0, progress=False,
                           bow={**SMALL, "sift": "torch"})
    assert res.written == {"bow.w32": 3}
    x2, c2, _ = read_bow(db)
    np.testing.assert_array_equal(c2, co)
    np.testing.assert_array_equal(x2, xo)  # measured: identical


def test_a_set_keeps_its_sift_and_refuses_the_other(tmp_path):
    db = synthetic_warehouse(tmp_path / "wh.duckdb", genes=2)
    opts = dict(extractor="bow", device="cpu", workers=0, progress=False)
    featurize(db, **opts, bow={**SMALL, "sift": "torch"})
    x1 = read_bow(db)[0]
    with warehouse.connect(db) as con:  # drop one experiment: the next run recomputes it
        eid = con.execute("select min(experiment_id) from experiment_features").fetchall()[0][0]
        con.execute("delete from experiment_features where experiment_id = ?", [eid])
        con.execute("delete from section_features where section_id in (select section_id "
                    "from sections where experiment_id = ?)", [eid])
    # --device cpu on a torch set: it goes on with torch (on the CPU), nothing mixed
    res = featurize(db, **opts, bow=SMALL)
    assert res.written == {"bow.w32": 1}
    x2, _, p = read_bow(db)
    assert p["sift"] == "torch"
    np.testing.assert_array_equal(x2, x1)
    with pytest.raises(InvalidInput, match=r"sift 'torch' \(now 'opencv'\)") as err:
        featurize(db, **opts, bow={**SMALL, "sift": "opencv"})
    assert "--sift auto" in err.value.hint
    # a set made before the keypoints were upright (no "upright", no "sift") is refused
    with warehouse.connect(db) as con:
        params = {k: v for k, v in p.items() if k not in ("upright", "sift")}
        con.execute("update feature_sets set params = ? where name like 'bow%'",
                    [json.dumps(params)])
    with pytest.raises(InvalidInput, match=r"upright None \(now True\)") as err:
        featurize(db, **opts, bow=SMALL)
    assert "older ishwh" in err.value.hint


def test_an_opencv_set_refuses_the_torch_sift(tmp_path):
    db = synthetic_warehouse(tmp_path / "wh.duckdb", genes=2)
    opts = dict(extractor="bow", device="cpu", workers=0, progress=False)
    featurize(db, **opts, bow=SMALL)
    assert read_bow(db)[2]["sift"] == "opencv"
    with pytest.raises(InvalidInput, match=r"sift 'opencv' \(now 'torch'\)") as err:
        featurize(db, **opts, bow={**SMALL, "sift": "torch"})
    assert "--sift auto" in err.value.hint


def test_cli_sift_option(tmp_path):
    from typer.testing import CliRunner

    from cli.app import app

    db = synthetic_warehouse(tmp_path / "wh.duckdb")
    runner = CliRunner()
    res = runner.invoke(app, ["featurize", "-e", "bow", "--sift", "torch", "--device", "cpu",
                              "--workers", "0", "--db", str(db), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["finished"] == ["bow"]
    assert read_bow(db)[2]["sift"] == "torch"
    bad = runner.invoke(app, ["featurize", "-e", "cnn", "--sift", "torch", "--db", str(db)])
    assert bad.exit_code != 0 and "--extractor bow only" in bad.output
    bad = runner.invoke(app, ["featurize", "-e", "bow", "--sift", "vlfeat", "--db", str(db)])
    assert bad.exit_code != 0 and "auto, opencv or torch" in bad.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_bow_on_cuda_without_a_gpu_is_refused(tmp_path):
    db = tmp_path / "wh.duckdb"
    warehouse.init(db)
    with pytest.raises(InvalidInput, match="no CUDA GPU"):
        featurize(db, extractor="bow", device="cuda", progress=False)
