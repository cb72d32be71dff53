"""Registration of section images to their stage's reference slices (OpenCV only).

For a section at ``position`` p the candidate slices are those near ``Reference.slice_of(p)``
(every slice of the tissue range when p is unknown). Both sides are reduced to a tissue
mask at a small working size (``WORK`` pixels on the long side; masks, not stain: expression
differs from gene to gene, the outline of the tissue does not). For each candidate slice an
initial similarity comes from image moments (centroid, area ratio -> scale, principal axis ->
angle), then ``cv2.findTransformECC`` refines it (affine) on blurred masks; the candidate
with the best Dice of the two masks wins; a displacement grid then refines it (``nonrigid``).
``quality`` is that Dice, times the agreement of the section's scale with the stage's (set
by :meth:`RegistrationModel.calibrate`); below ``min_quality`` a section is marked not ok
and its features are left out (never silently used). At embryo stages the image mask is the
brain found inside the tissue (:func:`brain_mask`), not the whole section.

The stored transform ``A`` (2x3) carries slice pixels (column = axis 0, row = axis 1) to
full-size image pixels: ``image (x, y) = A @ (col, row, 1)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ishwh.atlas import nonrigid
from ishwh.atlas.reference import Reference
from ishwh.vocab import EMBRYO_STAGES

WORK = 192           # working size (long side, pixels) of the masks
SEARCH = 3           # candidate slices on each side of the position's slice
SEARCH_STEP = 1
ECC_ITERATIONS = 40  # affine ECC steps per candidate
MIN_QUALITY = 0.80   # Dice below this: the section is not used
SCALE_TOLERANCE = 1.3   # a scale within this factor of the stage's agrees with it
CALIBRATION = 24     # sections of a stage that set its scale prior
METHOD = "mask-moments+ecc-affine"
METHOD_NONRIGID = f"{METHOD}+{nonrigid.METHOD}"
FILL_HOLES = False


@dataclass
class Alignment:
    slice_index: int
    affine: np.ndarray      # (2, 3): slice pixels -> full-size image pixels
    quality: float          # Dice of the tissue masks at the working size
    ok: bool
    angle_deg: float
    scale: float
    displacement: np.ndarray | None = None   # (gh, gw, 2) full-size px; see nonrigid.py
    method: str = METHOD


def _h(m: np.ndarray) -> np.ndarray:
    return np.vstack([m, [0.0, 0.0, 1.0]])


def _resize_matrix(s: float) -> np.ndarray:
    """Pixel-centre mapping of a resize by factor ``s``: x' = (x + 0.5) s - 0.5."""
    return np.array([[s, 0, 0.5 * s - 0.5], [0, s, 0.5 * s - 0.5], [0, 0, 1.0]])


def _fill(mask: np.ndarray, holes: bool = FILL_HOLES) -> np.ndarray:
    """Close small gaps (and, with ``holes``, fill holes) of a 0/1 mask. Ventricles are
    holes on both sides (no tissue, no label), so by default they stay: they are landmarks."""
    m = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE,
                         cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
    if not holes:
        return m
    h, w = m.shape
    pad = np.zeros((h + 2, w + 2), np.uint8)
    pad[1:-1, 1:-1] = m
    flood = pad.copy()
    cv2.floodFill(flood, None, (0, 0), 1)
    holes = (flood == 0)
    pad[holes] = 1
    return pad[1:-1, 1:-1]


def tissue_mask(gray: np.ndarray) -> np.ndarray:
    """0/1 tissue mask of a gray section image (tissue darker than a light background).

    The background level and its noise come from the image frame (sections do not touch
    every edge); tissue is what is clearly darker. Otsu would split stained from unstained
    tissue on a strongly expressing gene, so it is only the fallback for a dark frame.
    """
    blur = cv2.GaussianBlur(gray, (0, 0), 1.5)
    h, w = blur.shape
    b = max(2, min(h, w) // 20)
    frame = np.concatenate([blur[:b].ravel(), blur[-b:].ravel(), blur[:, :b].ravel(),
                            blur[:, -b:].ravel()]).astype(np.float32)
    bg = float(np.percentile(frame, 75))
    spread = float(np.percentile(frame, 75) - np.percentile(frame, 25))
    if bg > 128:
        cut = bg - max(8.0, 3.0 * spread)
        below = blur[blur < cut]
        if below.size:  # the edge lies halfway between background and typical tissue
            cut = 0.5 * (bg + float(np.median(below)))
        m = (blur < cut).astype(np.uint8)
    else:
        _, m = cv2.threshold(blur, 0, 1, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n > 2:  # keep the large pieces only (dust, labels and debris are small)
        big = stats[1:, cv2.CC_STAT_AREA] >= 0.05 * stats[1:, cv2.CC_STAT_AREA].max()
        m = np.isin(lab, 1 + np.flatnonzero(big)).astype(np.uint8)
    return _fill(m)


def brain_mask(gray: np.ndarray, tissue: np.ndarray) -> np.ndarray:
    """0/1 mask of the brain inside a section that also shows the surrounding embryo.

    Neural tissue is denser, hence darker, than the embryo's other tissue around it: the
    gray values are averaged over tissue only (a normalised blur of ~4 % of the long side,
    so cell texture and single stained cells average out), then split in two by Otsu's
    threshold over the tissue pixels; the darker class, its large pieces, is the brain.
    When the two classes do not differ (a brain-only section) the tissue mask is returned.
    """
    sigma = 0.04 * max(gray.shape)
    t = tissue.astype(np.float32)
    num = cv2.GaussianBlur(gray.astype(np.float32) * t, (0, 0), sigma)
    den = cv2.GaussianBlur(t, (0, 0), sigma)
    smooth = np.where(tissue > 0, num / np.maximum(den, 1e-3), 255.0)
    vals = smooth[tissue > 0]
    if vals.size < 50:
        return tissue
    v8 = np.clip(vals, 0, 255).astype(np.uint8)
    cut, _ = cv2.threshold(v8.reshape(-1, 1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    dark, light = vals[vals <= cut], vals[vals > cut]
    if dark.size < 0.1 * vals.size or light.size < 0.1 * vals.size or (
            float(np.median(light)) - float(np.median(dark)) < 4.0):
        return tissue
    m = ((smooth <= cut) & (tissue > 0)).astype(np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n > 2:
        big = stats[1:, cv2.CC_STAT_AREA] >= 0.15 * stats[1:, cv2.CC_STAT_AREA].max()
        m = np.isin(lab, 1 + np.flatnonzero(big)).astype(np.uint8)
    return _fill(m)


def _moments(mask: np.ndarray) -> tuple[float, float, float, float, float] | None:
    """(area, cx, cy, angle_rad of the principal axis, elongation) or None when empty."""
    mo = cv2.moments(mask, binaryImage=True)
    if mo["m00"] <= 0:
        return None
    cx, cy = mo["m10"] / mo["m00"], mo["m01"] / mo["m00"]
    a, b, c = mo["mu20"], mo["mu11"], mo["mu02"]
    angle = 0.5 * np.arctan2(2 * b, a - c)
    lam = np.sqrt(4 * b * b + (a - c) ** 2)
    elong = (a + c + lam) / max(a + c - lam, 1e-9)
    return mo["m00"], cx, cy, float(angle), float(elong)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 2.0 * int(np.logical_and(a, b).sum()) / s if s else 0.0


class RegistrationModel:
    """Working-size masks of one reference, and the search that places sections on it."""

    def __init__(self, ref: Reference, work: int = WORK, search: int = SEARCH,
                 min_quality: float = MIN_QUALITY, refine: bool = True,
                 surroundings: bool | None = None):
        self.ref = ref
        # sections may show the embryo around the brain (then match the brain inside the
        # tissue): at embryo stages ``calibrate`` decides from the sections, unless given
        self.surroundings = bool(surroundings)
        self._may_surround = (ref.stage in EMBRYO_STAGES) if surroundings is None else False
        self.scale_prior: float | None = None
        self._slices: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.refiner = nonrigid.FlowRefiner() if refine else None
        self.work = work
        self.search = search
        self.min_quality = min_quality
        nx, ny, _ = ref.annotation.shape
        self.ref_scale = work / max(nx, ny)
        self.ref_size = (max(1, round(nx * self.ref_scale)), max(1, round(ny * self.ref_scale)))
        lo, hi = ref.tissue_range
        present = (ref.annotation != 0)
        self._masks: dict[int, np.ndarray] = {}
        for k in range(lo, hi + 1):
            m = present[:, :, k].T.astype(np.uint8)
            self._masks[k] = _fill(cv2.resize(m, self.ref_size, interpolation=cv2.INTER_NEAREST))
        self._blur = {k: cv2.GaussianBlur(m.astype(np.float32), (0, 0), 2.0)
                      for k, m in self._masks.items()}
        self._mom = {k: _moments(m) for k, m in self._masks.items()}

    def params(self) -> dict:
        out = {"work": self.work, "search": self.search, "min_quality": self.min_quality,
               "surroundings": self.surroundings}
        if self.scale_prior is not None:
            out["scale_prior"] = round(self.scale_prior, 6)
            out["scale_tolerance"] = SCALE_TOLERANCE
        if self.refiner is not None:
            out["nonrigid"] = self.refiner.params()
        return out

    def candidates(self, position: float | None) -> list[int]:
        lo, hi = self.ref.tissue_range
        if position is None:
            return list(range(lo, hi + 1, max(1, (hi - lo) // 24)))
        k0 = self.ref.slice_of(position)
        ks = range(k0 - self.search, k0 + self.search + 1, SEARCH_STEP)
        return [k for k in ks if lo <= k <= hi and self._mom.get(k) is not None]

    def register(self, gray: np.ndarray, position: float | None) -> Alignment:
        """Place one section (gray uint8, full size) on the reference."""
        h, w = gray.shape[:2]
        s_img = self.work / max(h, w)
        small = cv2.resize(gray, (max(1, round(w * s_img)), max(1, round(h * s_img))),
                           interpolation=cv2.INTER_AREA)
        img_mask = tissue_mask(small)
        if self.surroundings:
            img_mask = brain_mask(small, img_mask)
        mi = _moments(img_mask)
        best: tuple[float, int, np.ndarray] | None = None
        if mi is not None:
            img_blur = cv2.GaussianBlur(img_mask.astype(np.float32), (0, 0), 2.0)
            scored = []
            for k in self.candidates(position):
                init = self._initial(mi, self._mom[k])
                scored.append((self._score(init, k, img_mask), k, init))
            scored.sort(key=lambda t: -t[0])
            for d0, k, init in scored[:2]:   # refine the two best starts only (speed)
                warp = self._refine(init, k, img_blur)
                d = self._score(warp, k, img_mask) if warp is not None else -1.0
                cand = (d, k, warp) if d >= d0 else (d0, k, init)
                if best is None or cand[0] > best[0]:
                    best = cand
        if best is None:
            k = self.ref.slice_of(0.5 if position is None else position)
            return Alignment(k, np.zeros((2, 3)), 0.0, False, 0.0, 0.0)
        d, k, a_work = best
        to_work = _h(a_work) @ _resize_matrix(self.ref_scale)   # slice px -> working px
        disp, method = None, METHOD
        if self.refiner is not None and d > 0:
            idx, present = self._slice(k)
            grid = self.refiner.refine(small, img_mask, idx, to_work)
            if grid is not None:
                warped = nonrigid.warp_labels(present, to_work, img_mask.shape, grid)
                d_nr = _dice(warped > 0, img_mask > 0)
                if d_nr >= d - 0.01:      # the tissue outlines must still agree
                    d, disp, method = d_nr, grid / s_img, METHOD_NONRIGID
        full = np.linalg.inv(_resize_matrix(s_img)) @ to_work
        lin = full[:2, :2]
        scale = float(np.sqrt(abs(np.linalg.det(lin))))
        angle = float(np.degrees(np.arctan2(lin[1, 0] - lin[0, 1], lin[0, 0] + lin[1, 1])))
        d *= self._scale_agreement(scale)
        return Alignment(k, full[:2], float(d), bool(d >= self.min_quality), angle, scale,
                         disp, method)

    def _scale_agreement(self, scale: float) -> float:
        """1 within ``SCALE_TOLERANCE`` of the stage's scale, falling off as its square
        beyond: one stage's sections share a pixel size and a specimen size, so a section
        placed at another scale matched the wrong thing (the embryo for the brain, the
        brain of a lateral section for a medial slice) however good its mask Dice."""
        if self.scale_prior is None or scale <= 0:
            return 1.0
        r = scale / self.scale_prior
        r = max(r, 1.0 / r)
        return 1.0 if r <= SCALE_TOLERANCE else (SCALE_TOLERANCE / r) ** 2

    def calibrate(self, sections: list[tuple[np.ndarray, float | None]]) -> float | None:
        """Set ``scale_prior`` to the median scale of these sections' confident placements
        (mask Dice >= ``min_quality``); None (no prior) when fewer than 5 are confident.
        The caller passes a fixed sample of the stage (the same on every run).

        At an embryo stage both readings are tried (whole tissue, brain inside the tissue)
        and the one whose sections agree best wins: more confident placements whose scale
        lies within ``SCALE_TOLERANCE`` of their median (a brain matched to a whole embryo
        lands at a scale that depends on how much embryo each section shows)."""
        best: tuple[int, bool, float | None] | None = None
        for mode in ((False, True) if self._may_surround else (self.surroundings,)):
            self.surroundings, self.scale_prior = mode, None
            scales = np.array([a.scale for a in (self.register(g, p) for g, p in sections)
                               if a.ok])
            prior = float(np.median(scales)) if scales.size >= 5 else None
            agree = 0 if prior is None else int(
                (np.abs(np.log(scales / prior)) <= np.log(SCALE_TOLERANCE)).sum())
            if best is None or agree > best[0]:
                best = (agree, mode, prior)
        _, self.surroundings, self.scale_prior = best
        return self.scale_prior

    def _slice(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Slice ``k`` as label indices and as a 0/1 mask (full reference resolution; kept)."""
        got = self._slices.get(k)
        if got is None:
            idx = self.ref.slice_index_labels(k)
            got = self._slices[k] = (idx, (idx > 0).astype(np.uint8))
        return got

    @staticmethod
    def _initial(mi, mr) -> np.ndarray:
        """Similarity (2x3, working ref px -> working image px) from moments."""
        ai, cxi, cyi, thi, ei = mi
        ar, cxr, cyr, thr, er = mr
        s = np.sqrt(ai / ar)
        dth = thi - thr
        dth = (dth + np.pi / 2) % np.pi - np.pi / 2    # principal axes have no direction
        if min(ei, er) < 1.3 or abs(dth) > np.radians(25):
            dth = 0.0                                  # round shapes: the axis is noise
        c, sn = s * np.cos(dth), s * np.sin(dth)
        rot = np.array([[c, -sn], [sn, c]])
        t = np.array([cxi, cyi]) - rot @ np.array([cxr, cyr])
        return np.hstack([rot, t[:, None]])

    def _score(self, a: np.ndarray, k: int, img_mask: np.ndarray) -> float:
        h, w = img_mask.shape
        proj = cv2.warpAffine(self._masks[k], a, (w, h), flags=cv2.INTER_NEAREST)
        return _dice(proj > 0, img_mask > 0)

    def _refine(self, a: np.ndarray, k: int, img_blur: np.ndarray) -> np.ndarray | None:
        """ECC (affine) on blurred masks. ECC's warp maps template (image) pixels to input
        (reference) pixels, so it starts from, and returns, the inverse of ``a``."""
        inv = cv2.invertAffineTransform(a).astype(np.float32)
        try:
            _, warp = cv2.findTransformECC(
                img_blur, self._blur[k], inv, cv2.MOTION_AFFINE,
                (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, ECC_ITERATIONS, 1e-4), None, 1)
        except cv2.error:
            return None
        return cv2.invertAffineTransform(warp).astype(np.float64)


def project_index(index_slice: np.ndarray, affine: np.ndarray, shape: tuple[int, int],
                  scale: float = 1.0, displacement: np.ndarray | None = None) -> np.ndarray:
    """A slice of label *indices* (0 = background; uint16 or int32) placed on an image of
    ``shape`` (h, w). ``scale`` < 1: the image was reduced by that factor from the size
    ``affine`` refers to. ``displacement``: the alignment's non-rigid grid (None: affine
    only). Pixels outside the slice are 0."""
    a = _h(affine)
    if scale != 1.0:
        a = _resize_matrix(scale) @ a
    h, w = shape
    src = index_slice if index_slice.dtype in (np.uint16, np.int32) else index_slice.astype(
        np.int32)
    if displacement is not None:
        if src.dtype == np.int32:     # remap has no 32-bit integer path; exact below 2^24
            return nonrigid.warp_labels(src.astype(np.float32), a, shape, displacement,
                                        scale).astype(np.int32)
        return nonrigid.warp_labels(src, a, shape, displacement, scale)
    return cv2.warpAffine(src, a[:2], (w, h), flags=cv2.INTER_NEAREST,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def project_labels(labels: np.ndarray, affine: np.ndarray, shape: tuple[int, int],
                   scale: float = 1.0, displacement: np.ndarray | None = None) -> np.ndarray:
    """Structure ids of a reference slice placed on an image of ``shape`` (h, w)."""
    ids = np.union1d([0], np.unique(labels)).astype(np.int64)   # 0 first: outside = 0
    idx = np.searchsorted(ids, labels)
    idx = idx.astype(np.uint16 if ids.size < 65536 else np.int32)
    return ids[project_index(idx, affine, shape, scale, displacement)]
