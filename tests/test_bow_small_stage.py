"""Bag of words on a manifest with one large and one tiny stage: the tiny stage is skipped and
named, the set is finished for the large one, and fit works there (and names the skip)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from cli.app import app
from ishwh import warehouse
from ishwh.features import bow as bowmod
from ishwh.features import featurize
from ishwh.progress import Recorder

pytestmark = pytest.mark.slow  # end to end: ingest, SIFT, k-means, fit (~20 s)
runner = CliRunner()
N_GENES = 30          # large stage E13.5: 30 experiments x 2 sections of 256 x 192 px
WORDS = 24


def _image(rng: np.random.Generator, w: int, h: int, bright_left: bool) -> np.ndarray:
    """Blobs on a dark background (textured: real SIFT descriptors); some genes brighter on
    the left half, which is what the 'F' structure's label follows."""
    img = np.zeros((h, w), np.uint8)
    for _ in range(25):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        gain = 1.6 if bright_left and x < w // 2 else 1.0
        cv2.circle(img, (x, y), int(rng.integers(3, 12)), int(min(255, rng.integers(60, 160)
                                                                * gain)), -1)
    return cv2.GaussianBlur(img, (5, 5), 1.5)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bigsmall")
    (folder / "img").mkdir()
    rng = np.random.default_rng(3)
    (folder / "structures.csv").write_text(
        "structure_id,acronym,name,parent_id,level\n1,Br,brain,,1\n2,F,forebrain,1,2\n"
        "3,M,midbrain,1,2\n")
    sections = ["gene,stage,experiment_id,section_number,image"]
    annotations = ["experiment_id,structure,pattern,intensity,density"]
    for g in range(N_GENES):
        on = g % 2 == 0
        for s in (1, 2):
            name = f"img/g{g}_{s}.png"
            cv2.imwrite(str(folder / name), _image(rng, 256, 192, on))
            sections.append(f"G{g},E13.5,{100 + g},{s},{name}")
        annotations.append(f"{100 + g},F,{'full' if on else 'undetected'},,")
        annotations.append(f"{100 + g},M,{'regional' if g % 3 else 'undetected'},,")
    # the tiny stage: one experiment, one 48 x 40 section -> one keypoint per SIFT size
    cv2.imwrite(str(folder / "img/tiny.png"), _image(rng, 48, 40, False))
    sections.append("G0,E11.5,900,1,img/tiny.png")
    (folder / "sections.csv").write_text("\n".join(sections) + "\n")
    (folder / "annotations.csv").write_text("\n".join(annotations) + "\n")
    return folder


@pytest.fixture(scope="module")
def featurized(manifest, tmp_path_factory):
    db = tmp_path_factory.mktemp("bigsmall_db") / "wh.duckdb"
    warehouse.init(db)
    res = runner.invoke(app, ["ingest", "dir", str(manifest), "--db", str(db)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["featurize", "--extractor", "bow", "--words", str(WORDS),
                              "--workers", "0", "--no-progress", "--db", str(db)])
    return db, res


def _q(db, sql, params=None):
    with warehouse.connect(db, read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def test_featurize_finishes_and_names_the_tiny_stage(featurized):
    db, res = featurized
    assert res.exit_code == 0, res.output
    name = f"bow.w{WORDS}"
    assert f"{name}: {N_GENES} new experiment vector(s), finished" in res.output
    assert "stage E11.5 skipped" in res.output and "a 24-word codebook" in res.output
    # one keypoint per SIFT size in the tiny section: the count said is the true one
    ys, xs = bowmod.keypoint_grid(40 // 4, 48 // 4)
    assert len(ys) * len(xs) == 1 and "codebook: 1 at keypoint size 8, 1 at" in res.output
    assert _q(db, "select stage, status, reason is not null from feature_set_stages "
                  "order by stage") == [("E11.5", "skipped", True), ("E13.5", "finished", False)]
    assert _q(db, "select count(*) from experiment_features") == [(N_GENES,)]
    assert _q(db, "select distinct stage from codebooks") == [("E13.5",)]
    assert _q(db, "select finished_at is not null from feature_sets where name = ?",
              [name]) == [(True,)]


def test_fit_works_on_the_large_stage_and_names_the_skipped_one(featurized):
    db, _ = featurized
    res = runner.invoke(app, ["fit", "--features", f"bow.w{WORDS}", "--stage", "E13.5",
                              "--db", str(db), "--json"])
    assert res.exit_code == 0, res.output
    (run,) = json.loads(res.stdout)["run_ids"]
    assert _q(db, "select count(*) > 0 from predictions where run_id = ?", [run]) == [(True,)]
    res = runner.invoke(app, ["fit", "--features", f"bow.w{WORDS}", "--stage", "E11.5",
                              "--db", str(db)])
    assert res.exit_code == 1
    lines = [x for x in res.output.splitlines() if x.startswith("Error")]
    assert len(lines) == 1 and "skipped that stage" in lines[0] and "E11.5" in lines[0]
    assert "codebook: 1 at keypoint size 8" in lines[0]


def test_rerun_retries_only_the_skipped_stage(featurized):
    db, _ = featurized
    said = Recorder()
    res = featurize(db, extractor="bow", workers=0, progress=said,
                           bow={"n_words": WORDS})
    assert res.written == {} and list(res.skipped) == ["E11.5"]
    # the skip is said through the progress protocol (the CLI's bar prints it)
    assert [m for m in said.messages if "stage E11.5 skipped" in m] == [
        f"bow.w{WORDS}: stage E11.5 skipped: {res.skipped['E11.5']} "
        "(hint: it needs more (or larger) sections, or a smaller grid step)"]
    assert res.finished == [f"bow.w{WORDS}"]


def test_words_and_step_are_refused_when_they_make_no_sense(featurized):
    db, _ = featurized
    for extra, flag in ((["--words", "1"], "--words"), (["--step", "0"], "--step"),
                        (["--extractor", "grid", "--words", "8"], "--words")):
        args = ["featurize", "--no-progress", "--db", str(db), *extra]
        if "--extractor" not in extra:
            args += ["--extractor", "bow"]
        res = runner.invoke(app, args)
        assert res.exit_code == 1 and res.output.startswith(f"Error: {flag}"), res.output
