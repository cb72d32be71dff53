"""Anatomy of one stage: a 3-D label volume of sagittal slices across one hemisphere.

A brain-shaped body (a smooth union of ellipsoid lobes, shaped per stage, embryo stages
with large ventricles and the surrounding embryo tissue) is warped by smooth 3-D noise and
recursively partitioned: each structure's children are additively weighted Voronoi cells of
the parent's voxels (star-shaped around their seed, hence contiguous in the unwarped space;
the warp is smooth, so boundaries look organic and stay contiguous). Deeper levels give
smaller regions. Labels: 0 background, 1 non-brain embryo tissue, 2 + s structure s.

Coordinates (in units of the section width): x anterior→posterior, y dorsal→ventral,
d = distance from the midline; section position p in 0..1 runs lateral (0) to medial (1).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ishwh.synth.ontology import Ontology
from ishwh.synth.params import EMBRYO_STAGES

HALF_WIDTH = 0.26  # hemisphere half-width (midline to lateral edge) in section widths

# Lobes per stage: (cx, cy, rx, ry, rz) in section widths; cy within 0..height/width.
_LOBES = {
    "E11.5": [(0.32, 0.30, 0.14, 0.13, 0.22), (0.50, 0.17, 0.13, 0.10, 0.18),
              (0.68, 0.28, 0.10, 0.15, 0.15), (0.76, 0.45, 0.06, 0.10, 0.09),
              (0.42, 0.36, 0.08, 0.08, 0.12)],
    "E13.5": [(0.33, 0.27, 0.18, 0.15, 0.25), (0.48, 0.35, 0.10, 0.09, 0.16),
              (0.60, 0.19, 0.14, 0.11, 0.19), (0.74, 0.31, 0.12, 0.12, 0.15),
              (0.82, 0.45, 0.06, 0.09, 0.09)],
    "E15.5": [(0.36, 0.26, 0.22, 0.17, 0.28), (0.55, 0.31, 0.13, 0.11, 0.19),
              (0.70, 0.22, 0.10, 0.10, 0.20), (0.78, 0.36, 0.12, 0.09, 0.14),
              (0.13, 0.34, 0.06, 0.06, 0.10)],
    "E18.5": [(0.40, 0.29, 0.29, 0.22, 0.30), (0.09, 0.36, 0.07, 0.08, 0.12),
              (0.60, 0.36, 0.16, 0.15, 0.22), (0.78, 0.27, 0.11, 0.13, 0.24),
              (0.81, 0.44, 0.16, 0.09, 0.15), (0.94, 0.49, 0.06, 0.06, 0.09)],
    # Postnatal brains (the unannotated stages): the same lobes as E18.5, but the cortex
    # (forebrain) and the cerebellum keep growing while the midbrain and the olfactory bulb
    # take a smaller share of the frame (which widens with SECTION_WIDTH_UM).
    "P4": [(0.40, 0.29, 0.30, 0.23, 0.31), (0.09, 0.37, 0.065, 0.075, 0.11),
           (0.60, 0.37, 0.15, 0.14, 0.21), (0.79, 0.27, 0.12, 0.14, 0.25),
           (0.81, 0.45, 0.15, 0.085, 0.14), (0.94, 0.50, 0.055, 0.055, 0.08)],
    "P14": [(0.40, 0.28, 0.31, 0.24, 0.32), (0.09, 0.37, 0.06, 0.07, 0.10),
            (0.60, 0.38, 0.14, 0.13, 0.20), (0.79, 0.27, 0.13, 0.15, 0.26),
            (0.81, 0.46, 0.14, 0.08, 0.14), (0.94, 0.50, 0.05, 0.05, 0.08)],
    "P28": [(0.40, 0.28, 0.32, 0.24, 0.32), (0.09, 0.37, 0.06, 0.07, 0.10),
            (0.60, 0.38, 0.14, 0.13, 0.20), (0.79, 0.26, 0.14, 0.16, 0.27),
            (0.81, 0.46, 0.14, 0.08, 0.14), (0.94, 0.50, 0.05, 0.05, 0.08)],
}
# Embryo stages: ventricles (hollow, white) and the surrounding embryo tissue.
_VENTRICLES = {
    "E11.5": [(0.32, 0.29, 0.09, 0.08, 0.12), (0.51, 0.17, 0.07, 0.05, 0.08),
              (0.68, 0.27, 0.05, 0.09, 0.05)],
    "E13.5": [(0.33, 0.26, 0.12, 0.09, 0.13), (0.60, 0.18, 0.08, 0.06, 0.08),
              (0.74, 0.31, 0.06, 0.07, 0.05)],
    "E15.5": [(0.37, 0.25, 0.13, 0.08, 0.12), (0.70, 0.21, 0.05, 0.04, 0.06)],
}
_EMBRYO = [(0.50, 0.31, 0.45, 0.25, 0.50), (0.32, 0.50, 0.24, 0.09, 0.42),
           (0.84, 0.52, 0.14, 0.08, 0.30)]


@dataclass
class StageAnatomy:
    stage: str
    labels: np.ndarray     # (Z, h, w) int16; 0 background, 1 embryo tissue, 2 + s structure s
    positions: np.ndarray  # (Z,) section position (0 lateral .. 1 medial) of each slice
    xx: np.ndarray         # (h, w) x coordinate of each pixel
    yy: np.ndarray         # (h, w) y coordinate
    tone: np.ndarray       # (S + 2,) tissue density per label (how dark unstained tissue is)
    centroid: np.ndarray   # (S, 3) centre of each structure (subtree) in (x, y, d)
    radius: np.ndarray     # (S,) rms radius of each structure (subtree)
    samples: np.ndarray    # (S, 4, 3) random interior points (centres of regional blobs)
    voxels: np.ndarray     # (S,) voxels of each structure's subtree
    has_embryo: bool

    def depth_of_slice(self, k: int) -> float:
        return float((1.0 - self.positions[k]) * HALF_WIDTH)

    def slice_index(self, position: float) -> int:
        z = len(self.positions)
        return int(np.clip(round(position * z - 0.5), 0, z - 1))


def _lobes_value(lobes, x, y, d, sharp: float = 8.0) -> np.ndarray:
    """Smooth union of ellipsoids: < 1 inside."""
    acc = np.zeros(np.broadcast(x, y, d).shape, dtype=np.float32)
    for cx, cy, rx, ry, rz in lobes:
        f = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 + (d / rz) ** 2
        acc += np.exp(-sharp * (f - 1.0)).astype(np.float32)
    return 1.0 - np.log(acc + 1e-12) / sharp


def _smooth_noise(rng: np.random.Generator, shape, coarse=(4, 6, 8)) -> np.ndarray:
    """Low-frequency noise in about -1..1: a coarse random grid, upsampled (bicubic within
    a slice, smoothstep between slices; much faster than a 3-D spline zoom)."""
    g = rng.standard_normal(coarse).astype(np.float32)
    z, h, w = shape
    planes = np.stack([cv2.resize(p, (w, h), interpolation=cv2.INTER_CUBIC) for p in g])
    t = np.linspace(0, coarse[0] - 1, z)
    i0 = np.minimum(np.floor(t).astype(int), coarse[0] - 2) if coarse[0] > 1 else np.zeros(z, int)
    f = (t - i0).astype(np.float32)
    f = f * f * (3 - 2 * f)
    if coarse[0] == 1:
        return np.repeat(planes, z, axis=0)
    return planes[i0] * (1 - f)[:, None, None] + planes[i0 + 1] * f[:, None, None]


def smooth_displacement(anat: StageAnatomy, amplitude: float, rng: np.random.Generator,
                        coarse: tuple[int, int] = (3, 5)
                        ) -> tuple[np.ndarray, np.ndarray] | None:
    """A smooth 2-D displacement of one specimen's anatomy against the stage's (in pixels of
    the label maps), or None for ``amplitude`` 0.

    Each experiment is another animal: brains differ in shape, and sections are cut at a
    slightly different angle, so a small structure sits a little elsewhere in every specimen
    while large ones still overlap. The displacement is low-frequency noise (a ``coarse``
    grid of normal values, bicubic) with standard deviation ``amplitude`` section widths.
    The same function places an annotator's mental atlas on a section (finer ``coarse``).
    """
    if amplitude <= 0:
        return None
    h, w = anat.xx.shape
    disp = []
    for _ in range(2):
        g = rng.standard_normal(coarse).astype(np.float32)
        disp.append(cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC) * (amplitude * w))
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return gx + disp[0], gy + disp[1]


def remap_labels(lab: np.ndarray, maps: tuple[np.ndarray, np.ndarray] | None,
                 border: int = cv2.BORDER_CONSTANT) -> np.ndarray:
    """A label map displaced by ``maps`` (from :func:`smooth_displacement`; None: as is)."""
    if maps is None:
        return lab
    return cv2.remap(lab, maps[0], maps[1], cv2.INTER_NEAREST, borderMode=border, borderValue=0)


def warp_slice(anat: StageAnatomy, k: int, maps: tuple[np.ndarray, np.ndarray] | None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels and (x, y) coordinates of slice ``k`` as found in a warped specimen."""
    lab = anat.labels[k]
    if maps is None:
        return lab, anat.xx, anat.yy
    mx, my = maps
    w = lab.shape[1]
    lab = remap_labels(lab, maps)
    # the expression pattern (blob centres, gradients) moves with the anatomy
    xx = (mx + 0.5) / w
    yy = (my + 0.5) / w  # y is in section widths too
    return lab, xx.astype(np.float32), yy.astype(np.float32)


def build(ontology: Ontology, stage: str, size: tuple[int, int], n_slices: int,
          rng: np.random.Generator) -> StageAnatomy:
    """The label volume of ``stage`` at (n_slices, h, w) with ``size`` = (w, h)."""
    w, h = size
    aspect = h / w
    lobes = _LOBES.get(stage, _LOBES["E18.5"])
    embryo = stage in EMBRYO_STAGES
    positions = (np.arange(n_slices) + 0.5) / n_slices
    zs = (1.0 - positions) * HALF_WIDTH
    xs = (np.arange(w) + 0.5) / w
    ys = (np.arange(h) + 0.5) / h * aspect
    x = xs[None, None, :]
    y = ys[None, :, None]
    d = zs[:, None, None]
    shape = (n_slices, h, w)
    # organic outlines: warp the coordinates with smooth noise
    amp = 0.025
    wx = x + amp * _smooth_noise(rng, shape)
    wy = y + amp * _smooth_noise(rng, shape)
    wd = d + amp * _smooth_noise(rng, shape)
    body = _lobes_value(lobes, wx, wy, wd) + 0.06 * _smooth_noise(rng, shape, (3, 8, 12))
    brain = body < 1.0
    labels = np.zeros(shape, dtype=np.int16)
    if embryo:
        outer = _lobes_value(_EMBRYO, wx, wy, wd * 0.8, sharp=5.0)
        labels[outer < 1.0] = 1
        vent = _lobes_value(_VENTRICLES[stage], wx, wy, wd) < 1.0
        labels[vent] = 0
        brain &= ~vent
    # fine warp for the partition, so small structures get wiggly borders too
    fx = wx + 0.02 * _smooth_noise(rng, shape, (6, 12, 18))
    fy = wy + 0.02 * _smooth_noise(rng, shape, (6, 12, 18))
    idx = np.flatnonzero(brain)
    pts = np.stack(
        [np.broadcast_to(fx, shape).ravel()[idx], np.broadcast_to(fy, shape).ravel()[idx],
         np.broadcast_to(wd, shape).ravel()[idx]], axis=1
    ).astype(np.float32)
    lab = _partition(ontology, pts, rng)
    flat = labels.ravel()
    flat[idx] = (lab + 2).astype(np.int16)
    labels = flat.reshape(shape)
    _merge_fragments(labels)
    lab = labels.ravel()[idx].astype(np.int64) - 2
    # per-structure geometry over each subtree (unwarped coordinates)
    S = ontology.size
    raw = np.stack([np.broadcast_to(x, shape).ravel()[idx], np.broadcast_to(y, shape).ravel()[idx],
                    np.broadcast_to(d, shape).ravel()[idx]], axis=1)
    sub = ontology.subtree_matrix()
    cnt = sub @ np.bincount(lab, minlength=S).astype(np.float64)
    sums = np.stack([sub @ np.bincount(lab, weights=raw[:, c], minlength=S) for c in range(3)], 1)
    sq = sub @ np.bincount(lab, weights=(raw**2).sum(1), minlength=S)
    safe = np.maximum(cnt, 1)
    centroid = sums / safe[:, None]
    radius = np.sqrt(np.maximum(sq / safe - (centroid**2).sum(1), 1e-6))
    radius = np.maximum(radius, 0.01)
    samples = np.repeat(centroid[:, None, :], 4, axis=1)
    order = np.argsort(lab, kind="stable")
    starts = np.searchsorted(lab[order], np.arange(S + 1))
    children = ontology.children()
    for s in range(S):
        labs_in = [s]
        stack = list(children[s])
        while stack:
            c = stack.pop()
            labs_in.append(c)
            stack.extend(children[c])
        sizes = np.array([starts[t + 1] - starts[t] for t in labs_in], dtype=np.float64)
        if sizes.sum() == 0:
            continue
        pick = rng.choice(len(labs_in), size=4, p=sizes / sizes.sum())
        for j, t in enumerate(pick):
            lo, hi = starts[labs_in[t]], starts[labs_in[t] + 1]
            samples[s, j] = raw[order[rng.integers(lo, hi)]]
    tone = _tones(ontology, rng)
    return StageAnatomy(
        stage=stage, labels=labels, positions=positions,
        xx=np.broadcast_to(xs[None, :], (h, w)).astype(np.float32),
        yy=np.broadcast_to(ys[:, None], (h, w)).astype(np.float32),
        tone=tone, centroid=centroid.astype(np.float32), radius=radius.astype(np.float32),
        samples=samples.astype(np.float32), voxels=cnt.astype(np.int64), has_embryo=embryo,
    )


def _merge_fragments(labels: np.ndarray) -> None:
    """Give the stray specks of a structure (left by the warp and the non-convex parent) to
    the neighbouring structure they touch most, so every structure is one piece."""
    from scipy import ndimage  # noqa: PLC0415  (slow import; rendering workers skip it)

    objs = ndimage.find_objects(labels)
    for v in range(2, len(objs) + 1):
        sl = objs[v - 1]
        if sl is None:
            continue
        sl = tuple(slice(max(0, s.start - 1), s.stop + 1) for s in sl)
        sub = labels[sl]
        comp, n = ndimage.label(sub == v)
        if n <= 1:
            continue
        sizes = np.bincount(comp.ravel())
        sizes[0] = 0
        keep = int(np.argmax(sizes))
        for c in range(1, n + 1):
            if c == keep:
                continue
            frag = comp == c
            ring = ndimage.binary_dilation(frag) & ~frag
            near = sub[ring]
            near = near[(near >= 2) & (near != v)]
            if near.size:
                sub[frag] = np.bincount(near).argmax()


def _tones(ontology: Ontology, rng: np.random.Generator) -> np.ndarray:
    """Unstained tissue density per label: inherited down the tree with small changes, a few
    pale fibre-tract-like structures (so the anatomy shows through, as in real sections)."""
    S = ontology.size
    tone = np.ones(S + 2, dtype=np.float32)
    tone[0] = 0.0
    tone[1] = 0.42
    for s in range(S):  # graph order: parents first
        p = ontology.parent[s]
        base = 1.0 if p < 0 else tone[p + 2]
        t = base * rng.uniform(0.92, 1.08)
        if rng.random() < 0.06:
            t *= 0.75
        tone[s + 2] = np.clip(t, 0.45, 1.5)
    return tone


def _partition(ontology: Ontology, pts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Assign each brain voxel to a structure index, top-down through the tree."""
    children = ontology.children()
    tops = [i for i in range(ontology.size) if ontology.parent[i] < 0]
    lab = np.full(len(pts), -1, dtype=np.int64)
    sub = ontology.subtree_matrix()
    is_leaf = np.array([not c for c in children], dtype=float)
    n_leaves = np.asarray(sub @ is_leaf).ravel() + np.array([len(c) == 1 for c in children])
    _split(pts, np.arange(len(pts)), tops, lab, None, rng, n_leaves)
    max_depth = int(ontology.depth.max()) if ontology.size else 0
    for depth in range(max_depth + 1):
        nodes = [i for i in range(ontology.size) if ontology.depth[i] == depth and children[i]]
        if not nodes:
            continue
        order = np.argsort(lab, kind="stable")
        sorted_lab = lab[order]
        for n in nodes:
            lo, hi = np.searchsorted(sorted_lab, [n, n + 1])
            _split(pts, order[lo:hi], children[n], lab, n, rng, n_leaves)
    return lab


def _split(pts, members, kids, lab, own, rng, n_leaves) -> None:
    """Additively weighted Voronoi split of ``members`` among ``kids`` (+ ``own`` remainder
    when there are few children, so a single child never fills its parent)."""
    if len(members) == 0:
        return
    cells = list(kids) + ([own] if own is not None and len(kids) == 1 else [])
    m = len(cells)
    if m == 1:
        lab[members] = cells[0]
        return
    sub = pts[members]
    cand = sub[rng.choice(len(sub), size=min(len(sub), 48 * m), replace=False)]
    seeds = [cand[rng.integers(len(cand))]]
    dist = np.linalg.norm(cand - seeds[0], axis=1)
    for _ in range(1, min(m, len(cand))):
        # farthest-point-ish: the best of a few random candidates keeps sizes uneven
        trial = rng.choice(len(cand), size=min(6, len(cand)), replace=False)
        j = trial[np.argmax(dist[trial])]
        seeds.append(cand[j])
        dist = np.minimum(dist, np.linalg.norm(cand - cand[j], axis=1))
    seeds = np.array(seeds)
    # children in anterior-to-posterior order, so graph order follows the body axis
    seeds_order = np.argsort(seeds[:, 0])
    seeds = seeds[seeds_order]
    spread = float(np.sqrt(((sub - sub.mean(0)) ** 2).sum(1).mean()))
    # Target shares grow with the number of leaves under each cell, so deep subtrees get
    # room for all their structures; a few rounds adjust the additive weights towards them.
    if len(seeds) < m:  # a parent with fewer voxels than children: the last ones get none
        cells = cells[: len(seeds)]
        m = len(seeds)
    leaves = np.asarray([n_leaves[c] for c in kids] + [1] * (len(cells) - len(kids)),
                        dtype=float)[:m]
    target = leaves ** 0.85 * rng.uniform(0.75, 1.25, size=len(seeds))
    target /= target.sum()
    scale = spread / m ** (1 / 3)
    weights = np.zeros(len(seeds))
    d = np.sqrt(((sub[:, None, :] - seeds[None, :, :]) ** 2).sum(2))
    for _ in range(8):
        which = np.argmin(d - weights[None, :], axis=1)
        frac = np.bincount(which, minlength=len(seeds)) / len(sub)
        weights += 0.4 * scale * (np.log(target + 1e-3) - np.log(frac + 1e-3))
        weights -= weights.max()
    which = np.argmin(d - weights[None, :], axis=1)
    counts = np.bincount(which, minlength=len(seeds))
    for k in np.flatnonzero(counts == 0):  # never leave a structure without tissue
        n_take = max(1, int(target[k] * len(sub)))
        which[np.argsort(d[:, k])[:n_take]] = k
    lab[members] = np.asarray(cells)[which]
