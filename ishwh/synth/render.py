"""Rendering a section as an ISH-like RGB image, with realistic nuisance.

Colour follows Beer-Lambert: unstained tissue absorbs a little (pale lilac, with a fine
texture of unstained cells, denser or paler by structure), the ISH precipitate absorbs a lot
(dark blue-purple). Stain is granular: cells are stained with a probability given by the
local density and as dark as the local intensity, over a faint diffuse haze. Nuisance:
rotation/scale/shift, uneven illumination, an off-white background with dust, tears, folds,
air bubbles, non-specific background stain and per-experiment staining strength.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

BACKGROUND = np.array([249.0, 249.0, 251.0], np.float32)
TISSUE_OD = np.array([0.135, 0.245, 0.180], np.float32)   # pale lilac (Prox1 P56 tissue)
EMBRYO_OD = np.array([0.080, 0.175, 0.120], np.float32)   # non-brain embryo tissue, paler
STAIN_OD = np.array([1.30, 1.55, 1.10], np.float32)       # dark blue-purple precipitate


@dataclass
class Cells:
    """Random cell positions and noise for one image size (shared by sections, shifted)."""

    ys: np.ndarray
    xs: np.ndarray
    u: np.ndarray        # each cell's threshold: stained when u < local density
    big: np.ndarray      # larger cells (drawn with a wider blob)
    nuclei: np.ndarray   # (2h, 2w) fine texture of unstained cells, about 0..1 (tiled)
    noise: np.ndarray    # (2h, 2w, 3) camera noise (tiled)
    xn: np.ndarray       # (h, w) x / w - 0.5
    yn: np.ndarray       # (h, w) y / h - 0.5


def make_cells(size: tuple[int, int], rng: np.random.Generator) -> Cells:
    w, h = size
    n = int(w * h / 4.5)
    ys = rng.integers(0, h, n)
    xs = rng.integers(0, w, n)
    imp = np.zeros((h, w), np.float32)
    m = int(w * h / 3)
    np.add.at(imp, (rng.integers(0, h, m), rng.integers(0, w, m)), rng.uniform(0.5, 1.0, m))
    nuclei = cv2.GaussianBlur(imp, (0, 0), 0.6)
    nuclei /= np.percentile(nuclei, 99) + 1e-6
    nuclei = np.clip(nuclei, 0, 1.5).astype(np.float32)
    noise = rng.normal(0, 2.0, (h, w, 3)).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # textures tiled 2x2, so a shifted window is a free slice instead of a copy (np.roll)
    return Cells(ys, xs, rng.random(n).astype(np.float32), rng.random(n) < 0.3,
                 np.tile(nuclei, (2, 2)), np.tile(noise, (2, 2, 1)), xx / w - 0.5, yy / h - 0.5)
@dataclass
class Nuisance:
    """Per-section nuisance draws (strength 0 gives a clean, aligned section)."""

    matrix: np.ndarray          # 2x3 affine (section placement on the slide)
    illum: np.ndarray           # (h, w) multiplicative illumination
    tear: list | None
    fold: list | None
    bubbles: list
    specks: np.ndarray
    bg_tint: np.ndarray


def draw_nuisance(size: tuple[int, int], strength: float, rng: np.random.Generator,
                  cells: Cells) -> Nuisance:
    w, h = size
    s = strength
    angle = rng.normal(0, 5.0 * s)
    scale = float(np.exp(rng.normal(0, 0.05 * s)))
    shift = rng.normal(0, 0.035 * s, 2) * (w, h)
    mat = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    mat[:, 2] += shift
    th = rng.uniform(0, 2 * np.pi)
    ramp = cells.xn * np.float32(np.cos(th)) + cells.yn * np.float32(np.sin(th)) + 0.5
    vign = cells.xn**2 + cells.yn**2
    illum = 1.0 - s * (np.float32(rng.uniform(0.0, 0.10)) * ramp
                       + np.float32(rng.uniform(0.0, 0.12)) * vign)

    def line(n_pts: int) -> list:
        p = np.array([rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h])
        ang = rng.uniform(0, 2 * np.pi)
        pts = [p.copy()]
        for _ in range(n_pts):
            ang += rng.normal(0, 0.35)
            p = p + rng.uniform(0.03, 0.07) * w * np.array([np.cos(ang), np.sin(ang)])
            pts.append(p.copy())
        return [np.array(pts, np.int32)]

    tear = line(int(rng.integers(3, 9))) if rng.random() < 0.22 * s else None
    fold = line(int(rng.integers(2, 6))) if rng.random() < 0.10 * s else None
    bubbles = [
        (int(rng.uniform(0, w)), int(rng.uniform(0, h)), int(rng.uniform(0.02, 0.07) * w))
        for _ in range(rng.poisson(0.25 * s))
    ]
    specks = rng.uniform(0, 1, (rng.poisson(1.0 * s), 2)) * (w, h)
    bg_tint = rng.normal(0, 1.5 * s, 3).astype(np.float32)
    return Nuisance(mat, illum.astype(np.float32), tear, fold, bubbles, specks, bg_tint)


def render_section(
    labels_half: np.ndarray, e_half: np.ndarray, d_half: np.ndarray, tone: np.ndarray,
    cells: Cells, size: tuple[int, int], nz: Nuisance, rng: np.random.Generator, *,
    contrast: float, gain: float, bg_stain: float, want_labels: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """One section image (h, w, 3) uint8, and its label map aligned to it (optional)."""
    w, h = size
    up = (w, h)
    tissue_half = (labels_half > 0).astype(np.float32)
    alpha = np.clip(cv2.resize(tissue_half, up, interpolation=cv2.INTER_LINEAR), 0, 1)
    tone_map = cv2.resize(tone[labels_half], up, interpolation=cv2.INTER_LINEAR)
    embryo = cv2.resize((labels_half == 1).astype(np.float32), up, interpolation=cv2.INTER_LINEAR)
    e = cv2.resize(e_half, up, interpolation=cv2.INTER_LINEAR)
    d = cv2.resize(d_half, up, interpolation=cv2.INTER_LINEAR)
    # shift the shared cell pattern so sections never repeat it exactly
    dy, dx = int(rng.integers(h)), int(rng.integers(w))
    cy = (cells.ys + dy) % h
    cx = (cells.xs + dx) % w
    nuclei = cells.nuclei[h - dy:2 * h - dy, w - dx:2 * w - dx]
    # granular stain: each cell stained when its threshold is under the local density
    ce, cd = e[cy, cx], d[cy, cx]
    val = np.where(cells.u < cd, ce, 0.0).astype(np.float32)
    stain = np.zeros((h, w), np.float32)
    small = ~cells.big
    stain[cy[small], cx[small]] = val[small]
    stain = cv2.GaussianBlur(stain, (0, 0), 0.55) * 2.2
    big_img = np.zeros((h, w), np.float32)
    big_img[cy[cells.big], cx[cells.big]] = val[cells.big]
    stain += cv2.GaussianBlur(big_img, (0, 0), 0.9) * 4.5
    stain = np.minimum(stain, 1.2) + 0.22 * e * d  # granules over a diffuse haze
    # optical density, channel by channel on 2-D maps (fast)
    rim = 4.0 * alpha * (1.0 - alpha)  # sections are a little darker at their cut edge
    tt = tone_map * (0.6 + 0.7 * nuclei) * (1.0 + 0.5 * rim)
    st = contrast * gain * stain + bg_stain * (0.6 + 0.4 * nuclei)
    if nz.fold is not None:  # a fold: two layers of tissue
        band = np.zeros((h, w), np.uint8)
        cv2.polylines(band, nz.fold, False, 1, thickness=max(3, w // 80))
        thick = 1.0 + 0.9 * band.astype(np.float32)
        tt *= thick
        st *= thick
    if nz.tear is not None:  # a tear: the tissue is missing along a jagged line
        cut = np.zeros((h, w), np.uint8)
        cv2.polylines(cut, nz.tear, False, 1, thickness=max(1, w // 200))
        alpha = alpha * (1.0 - cut.astype(np.float32))
    tt *= alpha
    st *= alpha
    te = tt * embryo
    bg = BACKGROUND + nz.bg_tint
    chans = [
        -(tt * TISSUE_OD[c] + te * (EMBRYO_OD[c] - TISSUE_OD[c]) + st * STAIN_OD[c])
        for c in range(3)
    ]
    img = cv2.exp(cv2.merge(chans))
    img *= bg
    # camera effects are applied in the slide frame before placement; nobody can tell
    img *= nz.illum[..., None]
    img += cells.noise[h - dy:2 * h - dy, w - dx:2 * w - dx]
    img = np.clip(img, 0, 255).astype(np.uint8)
    bg8 = tuple(int(v) for v in np.clip(np.rint(bg * nz.illum.mean()), 0, 255))
    img = cv2.warpAffine(img, nz.matrix, up, flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=bg8)
    for x, y, r in nz.bubbles:  # air bubbles: bright inside, a thin dark rim
        disk = np.zeros((h, w), np.uint8)
        cv2.circle(disk, (x, y), r, 1, -1)
        inside = disk.astype(bool)
        img[inside] = (0.55 * img[inside] + 0.45 * np.asarray(bg8)).astype(np.uint8)
        cv2.circle(img, (x, y), r, (150, 150, 160), 1)
    for x, y in nz.specks:  # dust on the slide
        cv2.circle(img, (int(x), int(y)), 1, (120, 110, 125), -1)
    rgb = img
    lab = None
    if want_labels:
        lab = cv2.resize(labels_half, up, interpolation=cv2.INTER_NEAREST)
        lab = cv2.warpAffine(lab, nz.matrix, up, flags=cv2.INTER_NEAREST,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return rgb, lab
