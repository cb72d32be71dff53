"""A check on real anatomy: sections rendered from a reference volume with planted expression.

Each gene expresses in a few anchor structures (any level; all of an anchor's voxels, or a
random part of its leaf labels) with its own intensity. A section of it is the reference
slice at the section's position (off by up to ``slice_jitter`` slices: the position is only
known roughly), warped by a small smooth displacement (each specimen differs), then rotated
by up to ``max_angle`` degrees, scaled by up to ``max_scale`` and shifted by up to
``max_shift`` of the image side. Labels: a structure is detected when at least
``detect_fraction`` of its voxels express; then a ``miss_rate`` of the positive calls is
missed (and ``false_rate`` of negatives called), as annotators do.

Used by ``benchmarks/atlas_real_anatomy.py`` (writes a manifest folder) and the tests.
"""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import scipy.sparse as sp


@dataclass
class PlantedParams:
    n_genes: int = 300
    n_sections: int = 6
    canvas: tuple[int, int] = (400, 420)     # image width, height
    max_angle: float = 10.0
    max_scale: float = 0.10
    max_shift: float = 0.05
    warp_px: float = 1.5
    slice_jitter: int = 2
    detect_fraction: float = 0.10
    miss_rate: float = 0.03
    false_rate: float = 0.005
    min_anchor_voxels: int = 200
    noise: float = 0.08


def true_affine(slice_shape: tuple[int, int], canvas: tuple[int, int], angle: float,
                scale: float, shift: tuple[float, float]) -> np.ndarray:
    """2x3: slice pixels (col, row) -> image pixels; rotation about the slice centre."""
    h, w = slice_shape
    cw, ch = canvas
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, scale)
    m[:, 2] += np.array([(cw - w) / 2 + shift[0], (ch - h) / 2 + shift[1]])
    return m


class PlantedAtlas:
    """Genes with planted expression over ``annotation`` (x, y, z) and its ontology."""

    def __init__(self, annotation: np.ndarray, structure_ids: np.ndarray, parent: np.ndarray,
                 level: np.ndarray, params: PlantedParams | None = None, seed: int = 0):
        from ishwh.atlas.features import subtree_matrix  # noqa: PLC0415

        self.p = params or PlantedParams()
        self.ann = annotation
        self.seed = seed
        self.leaf_ids, inv = np.unique(annotation, return_inverse=True)
        self.leaf_of_voxel = inv.reshape(annotation.shape)
        self.leaf_voxels = np.bincount(inv.ravel(), minlength=self.leaf_ids.size)
        self.ids = structure_ids
        self.level = level
        self.sub = sp.csr_matrix(subtree_matrix(structure_ids, parent, self.leaf_ids))
        self.voxels = np.asarray(self.sub @ self.leaf_voxels).ravel()
        has = np.flatnonzero((annotation != 0).any(axis=(0, 1)))
        self.lo, self.hi = int(has[0]), int(has[-1])
        self.anchors = np.flatnonzero((self.voxels >= self.p.min_anchor_voxels) & (level >= 1))
        self.anchor_levels = np.unique(level[self.anchors])

    def gene(self, g: int) -> tuple[np.ndarray, np.ndarray]:
        """(per leaf label expression 0..1 (L,), detected per structure (S,) after noise)."""
        expr, _, called = self.gene_truth(g)
        return expr, called

    def gene_truth(self, g: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(expression per leaf label (L,), the noise-free call per structure (S,), the
        annotators' call after missed and false calls (S,)). The noise-free call used as a
        score against the annotations is the oracle: the AUC that label noise leaves."""
        rng = np.random.default_rng([self.seed, 1, g])
        expr = np.zeros(self.leaf_ids.size)
        for _ in range(1 + rng.poisson(1.5)):
            lv = rng.choice(self.anchor_levels)
            s = rng.choice(self.anchors[self.level[self.anchors] == lv])
            leaves = self.sub[s].indices
            if rng.random() < 0.4 and leaves.size > 1:   # regional: part of its leaves
                leaves = rng.choice(leaves, max(1, leaves.size // 2), replace=False)
            expr[leaves] = np.maximum(expr[leaves], rng.uniform(0.35, 1.0))
        expr[self.leaf_ids == 0] = 0.0
        frac = np.asarray(self.sub @ (self.leaf_voxels * (expr > 0))).ravel() / np.maximum(
            self.voxels, 1)
        truth = frac >= self.p.detect_fraction
        flip = np.where(truth, rng.random(truth.size) < self.p.miss_rate,
                        rng.random(truth.size) < self.p.false_rate)
        return expr, truth, truth ^ flip

    def positions(self, g: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 2, g])
        n = self.p.n_sections
        return np.clip((np.arange(n) + 0.5 + rng.uniform(-0.3, 0.3, n)) / n, 0, 1)

    def section(self, g: int, i: int, expr: np.ndarray, position: float
                ) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
        """(rgb image, true labels on the image, true slice, true 2x3 affine)."""
        p = self.p
        rng = np.random.default_rng([self.seed, 3, g, i])
        k = int(round(self.lo + position * (self.hi - self.lo)))
        k = int(np.clip(k + rng.integers(-p.slice_jitter, p.slice_jitter + 1), self.lo, self.hi))
        leaf = self.leaf_of_voxel[:, :, k].T
        lab = self.ann[:, :, k].T
        h, w = lab.shape
        # specimen: smooth displacement
        disp = [cv2.resize(rng.standard_normal((4, 4)).astype(np.float32), (w, h),
                           interpolation=cv2.INTER_CUBIC) * p.warp_px for _ in range(2)]
        gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        mx, my = gx + disp[0], gy + disp[1]
        leaf = cv2.remap(leaf.astype(np.float32), mx, my, cv2.INTER_NEAREST).astype(np.int64)
        tissue = self.leaf_ids[leaf] != 0
        e = expr[leaf] * tissue
        texture = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 1.0)
        stain = cv2.GaussianBlur(e.astype(np.float32), (0, 0), 1.2) * (0.6 + 0.8 * texture)
        base = np.where(tissue, 1.0, 0.0).astype(np.float32)
        # rgb in 0..1 of the slice: background white, tissue light, stain purple-blue
        white = np.ones((h, w, 3), np.float32)
        tis = np.array([0.84, 0.80, 0.76], np.float32)
        ink = np.array([0.35, 0.25, 0.55], np.float32)
        tone = (0.94 + 0.12 * texture)[..., None]
        rgb = white * (1 - base[..., None]) + tis * tone * base[..., None]
        rgb = rgb * (1 - stain[..., None] * (1 - ink))
        angle = rng.uniform(-p.max_angle, p.max_angle)
        scale = 1 + rng.uniform(-p.max_scale, p.max_scale)
        shift = (rng.uniform(-1, 1) * p.max_shift * p.canvas[0],
                 rng.uniform(-1, 1) * p.max_shift * p.canvas[1])
        a = true_affine((h, w), p.canvas, angle, scale, shift)
        img = cv2.warpAffine(rgb, a, p.canvas, flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=(1.0, 1.0, 1.0))
        img = img + rng.normal(0, p.noise / 4, img.shape).astype(np.float32)
        img = np.clip(img * rng.uniform(0.92, 1.0), 0, 1)
        true_leaf = cv2.warpAffine(leaf.astype(np.float32), a, p.canvas, flags=cv2.INTER_NEAREST,
                                   borderValue=float(np.searchsorted(self.leaf_ids, 0)))
        true_lab = self.leaf_ids[true_leaf.astype(np.int64)]
        # the true map from the undisplaced slice is (a o displacement); a is its main part
        return (img * 255).astype(np.uint8), true_lab, k, a


def ontology_arrays(tree: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids in graph order, parent index or -1, st_level) of a nested Allen structure tree."""
    rows = []

    def walk(nodes, parent):
        for n in nodes:
            rows.append((int(n["id"]), parent, int(n["st_level"]), int(n["graph_order"])))
            walk(n.get("children") or [], int(n["id"]))
    walk(tree, None)
    rows.sort(key=lambda r: r[3])
    ids = np.array([r[0] for r in rows])
    pos = {s: i for i, s in enumerate(ids)}
    parent = np.array([pos.get(r[1], -1) if r[1] is not None else -1 for r in rows])
    return ids, parent, np.array([r[2] for r in rows])


def write_planted_manifest(out: Path, annotation: np.ndarray, tree: list, stage: str,
                           params: PlantedParams, seed: int = 0,
                           spacing_um: float | None = None, min_voxels: int = 100
                           ) -> PlantedAtlas:
    """A manifest folder (ontology.json, reference/<stage>.npz, sections.csv, images,
    annotations.csv) of ``params.n_genes`` planted genes; experiment ids 1,000,000 + g.

    Every structure of levels 1-10 with at least ``min_voxels`` voxels is annotated
    (detected: full/medium/medium, else undetected)."""
    out = Path(out)
    ids, parent, level = ontology_arrays(tree)
    pa_ = PlantedAtlas(annotation.astype(np.int32), ids, parent, level, params, seed)
    if out.exists():
        shutil.rmtree(out)
    (out / "images").mkdir(parents=True)
    (out / "reference").mkdir()
    (out / "ontology.json").write_text(json.dumps({"msg": tree}))
    extra = {} if spacing_um is None else {"spacing_um": np.float64(spacing_um)}
    np.savez_compressed(out / "reference" / f"{stage}.npz", annotation=annotation, **extra)
    annotated = np.flatnonzero((pa_.voxels >= min_voxels) & (level >= 1) & (level <= 10))
    with open(out / "sections.csv", "w", newline="") as fs, \
            open(out / "annotations.csv", "w", newline="") as fa:
        ws, wa = csv.writer(fs), csv.writer(fa)
        ws.writerow(["gene", "stage", "experiment_id", "section_number", "image", "position"])
        wa.writerow(["experiment_id", "structure", "pattern", "intensity", "density"])
        for g in range(params.n_genes):
            eid = 1_000_000 + g
            expr, calls = pa_.gene(g)
            for i, p in enumerate(pa_.positions(g)):
                img = pa_.section(g, i, expr, float(p))[0]
                name = f"images/g{g:04d}_{i}.png"
                cv2.imwrite(str(out / name), img[..., ::-1])
                ws.writerow([f"Gene{g:04d}", stage, eid, i + 1, name, f"{p:.4f}"])
            for s in annotated:
                call = ("full", "medium", "medium") if calls[s] else ("undetected",) * 3
                wa.writerow([eid, int(ids[s]), *call])
    return pa_
