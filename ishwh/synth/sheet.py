"""A contact sheet of synthetic sections (``docs/contact_sheet.png``): several genes and
stages from lateral to medial, and a row that shows each nuisance on its own."""

from __future__ import annotations

import os
from dataclasses import replace

import cv2
import numpy as np

from ishwh.synth import expression as ex
from ishwh.synth.generate import Atlas
from ishwh.synth.params import resolve
from ishwh.synth.render import Nuisance, render_section


def _caption(img: np.ndarray, text: str) -> np.ndarray:
    band = np.full((18, img.shape[1], 3), 255, np.uint8)
    cv2.putText(band, text, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (40, 40, 40), 1,
                cv2.LINE_AA)
    return np.vstack([band, img])


def _clean(w: int, h: int) -> Nuisance:
    return Nuisance(np.array([[1.0, 0, 0], [0, 1.0, 0]]), np.ones((h, w), np.float32), None,
                    None, [], np.zeros((0, 2)), np.zeros(3, np.float32))


def contact_sheet(path: str | os.PathLike, preset: str = "demo", seed: int = 0,
                  n_genes: int = 3, n_cols: int = 5) -> np.ndarray:
    """Write the contact sheet PNG; return the image (RGB)."""
    atlas = Atlas(resolve(preset, workers=1), seed)
    p = atlas.params
    w, h = p.image_size
    rows = []
    for stage in p.stages:
        # the genes with the most expressed structures at this stage show the stain best
        scored = []
        for g in range(min(p.n_genes, 30)):
            exp = atlas.experiment(stage, g)
            scored.append(((exp.pattern > 0).sum(), g, exp))
        picks = [t for t in sorted(scored, key=lambda t: (-t[0], t[1]))][: n_genes - 1]
        picks.append(min(scored, key=lambda t: (t[0], t[1])))  # and one mostly undetected
        for _, g, exp in picks:
            secs = exp.sections
            idx = np.linspace(0, len(secs) - 1, n_cols).round().astype(int)
            tiles = [_caption(secs[i].rgb, f"{atlas.gene_symbols[g]} {stage} #{secs[i].number}"
                              f" pos {secs[i].position:.2f}") for i in idx]
            rows.append(np.hstack(tiles))
    # the nuisance gallery: one medial section of the last stage, one nuisance at a time
    stage = p.stages[-1]
    anat = atlas.anatomy(stage)
    g = picks[0][1]
    prof = ex.profile(atlas.gene(g), stage, anat, atlas.subtrees)
    k = anat.slice_index(0.8)
    lab = anat.labels[k]
    e, d = ex.fields(prof, lab, anat.xx, anat.yy, anat.depth_of_slice(k))
    cells = atlas.cells()
    base = _clean(w, h)
    yn, xn = cells.yn, cells.xn
    variants = {
        "clean": base,
        "rotation/shift/scale": replace(base, matrix=_affine(w, h, 9.0, 0.9, (18, -10))),
        "uneven illumination": replace(base, illum=(1.0 - 0.16 * (xn + 0.5) - 0.25 *
                                                    (xn**2 + yn**2)).astype(np.float32)),
        "tear": replace(base, tear=[np.array([[90, 40], [120, 80], [135, 120], [150, 170]],
                                             np.int32)]),
        "fold": replace(base, fold=[np.array([[60, 150], [140, 120], [230, 110]], np.int32)]),
        "bubble + dust": replace(base, bubbles=[(200, 80, 22)],
                                 specks=np.array([[30.0, 20.0], [290.0, 180.0], [250, 30]])),
    }
    tiles = []
    for name, nz in variants.items():
        rgb, _ = render_section(lab, e, d, anat.tone, cells, (w, h), nz,
                                np.random.default_rng(0), contrast=p.stain_contrast, gain=1.0,
                                bg_stain=0.03)
        tiles.append(_caption(rgb, name))
    strength = [
        _caption(render_section(lab, e, d, anat.tone, cells, (w, h), base,
                                np.random.default_rng(0), contrast=p.stain_contrast, gain=gain,
                                bg_stain=bg)[0], f"gain {gain}, background stain {bg}")
        for gain, bg in ((0.5, 0.0), (1.5, 0.12))
    ]
    gallery = np.hstack(tiles[:4])
    gallery2 = np.hstack(tiles[4:] + strength)
    width = max(r.shape[1] for r in rows + [gallery])

    def pad(r: np.ndarray) -> np.ndarray:
        return np.hstack([r, np.full((r.shape[0], width - r.shape[1], 3), 255, np.uint8)])

    sheet = np.vstack([pad(r) for r in rows + [gallery, gallery2]])
    from PIL import Image  # noqa: PLC0415

    # a 256-colour palette keeps the PNG small enough for a repository (noise is costly)
    Image.fromarray(sheet).quantize(256, dither=Image.Dither.NONE).save(path, optimize=True)
    return sheet


def _affine(w: int, h: int, angle: float, scale: float, shift: tuple[int, int]) -> np.ndarray:
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    m[:, 2] += shift
    return m
