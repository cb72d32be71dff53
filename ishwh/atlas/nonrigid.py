"""Non-rigid refinement of a section's affine placement: a coarse grid of displacements.

After the affine step the reference slice sits on the section up to the specimen's own
deformation (each brain differs from the reference a little, smoothly). This step measures
that deformation with dense optical flow (OpenCV's DIS) between the section and a
*rendering* of the placed reference slice, and keeps it as a coarse grid.

The rendering: each reference label painted with the mean gray value the section shows
under it (the background with the section's background level). So the rendering has the
section's own contrasts: tissue against background, the ventricles, and every structure
whose stain differs from its neighbours' (expression differs from gene to gene; the
rendering adapts to each). The flow is trusted only where the rendering has edges (its
gradient magnitude is the weight); the grid value of a cell is the weighted mean flow
around it, shrunk towards zero where little edge evidence lies (``SHRINK``).

The displacement grid ``D`` (gh, gw, 2), in pixels of the full-size image, acts through
``cv2.resize(D, (w, h), INTER_CUBIC)``: the field ``u`` over an image of any size (scaled
by that size over the full size). Image pixel ``p`` shows reference slice point
``A^-1 (p + u(p))`` (``A`` the stored 2x3 affine). The grid is small (6 x 6 x 2 floats:
288 bytes per section) and independent of the image size.
"""

from __future__ import annotations

import cv2
import numpy as np

GRID = (6, 6)        # control points (rows, columns) over the image
ITERATIONS = 2       # render -> flow -> grid rounds
SHRINK = 0.5         # weight of a zero displacement, in units of the mean edge weight
MAX_DISP = 0.06      # |u| limit, fraction of the image's long side (larger is a failure)
METHOD = "dis-flow-grid"
FINEST_SCALE = 1     # DIS works down to half the working size


def field(displacement: np.ndarray, shape: tuple[int, int], scale: float = 1.0) -> np.ndarray:
    """(h, w, 2) float32 displacement over an image of ``shape`` reduced by ``scale``."""
    h, w = shape
    d = np.asarray(displacement, dtype=np.float32)
    return cv2.resize(d * np.float32(scale), (w, h), interpolation=cv2.INTER_CUBIC)


def sample_maps(affine3: np.ndarray, shape: tuple[int, int],
                displacement: np.ndarray | None, scale: float = 1.0
                ) -> tuple[np.ndarray, np.ndarray]:
    """cv2.remap maps: for each image pixel, the slice point it shows. ``affine3`` (3x3)
    carries slice pixels to the pixels of this (possibly reduced) image."""
    h, w = shape
    inv = np.linalg.inv(affine3)
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    if displacement is not None:
        u = field(displacement, shape, scale)
        gx = gx + u[..., 0]
        gy = gy + u[..., 1]
    mx = (inv[0, 0] * gx + inv[0, 1] * gy + inv[0, 2]).astype(np.float32)
    my = (inv[1, 0] * gx + inv[1, 1] * gy + inv[1, 2]).astype(np.float32)
    return mx, my


def warp_labels(src: np.ndarray, affine3: np.ndarray, shape: tuple[int, int],
                displacement: np.ndarray | None, scale: float = 1.0) -> np.ndarray:
    """Labels (uint8/uint16/float32) of a slice as seen on the image (0 outside)."""
    mx, my = sample_maps(affine3, shape, displacement, scale)
    return cv2.remap(src, mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                     borderValue=0)


class FlowRefiner:
    """Fits the displacement grid of one section at the working size."""

    def __init__(self, grid: tuple[int, int] = GRID, iterations: int = ITERATIONS,
                 shrink: float = SHRINK):
        self.grid = grid
        self.iterations = iterations
        self.shrink = shrink
        # the fast preset at half the working size, no variational refinement: the grid
        # averages the flow over large cells anyway (a third of the time of "medium")
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
        dis.setFinestScale(FINEST_SCALE)
        dis.setVariationalRefinementIterations(0)
        self.dis = dis

    def params(self) -> dict:
        return {"grid": list(self.grid), "iterations": self.iterations, "shrink": self.shrink,
                "method": METHOD}

    def refine(self, gray: np.ndarray, tissue: np.ndarray, slice_idx: np.ndarray,
               affine3: np.ndarray) -> np.ndarray | None:
        """Displacement grid (gh, gw, 2) in pixels of ``gray`` (the working image), or None
        when there is nothing to measure. ``slice_idx``: the slice's label indices (uint16),
        ``affine3``: slice pixels -> working-image pixels (3x3)."""
        h, w = gray.shape
        img = cv2.GaussianBlur(gray, (0, 0), 1.0)
        img_f = img.astype(np.float32)
        grid = np.zeros((*self.grid, 2), np.float32)
        bg = img_f[tissue == 0]
        bg_level = float(np.median(bg)) if bg.size else 255.0
        limit = MAX_DISP * max(h, w)
        for _ in range(self.iterations):
            lab = warp_labels(slice_idx, affine3, (h, w), grid)
            render = self._render(lab, img_f, tissue, bg_level)
            if render is None:
                return None
            flow = self.dis.calc(img, render, None)
            gm = cv2.magnitude(cv2.Sobel(render, cv2.CV_32F, 1, 0, ksize=3),
                               cv2.Sobel(render, cv2.CV_32F, 0, 1, ksize=3))
            wgt = cv2.GaussianBlur(gm, (0, 0), 2.0)
            step = self._fit(flow, wgt)
            grid = grid + step
            norm = np.sqrt((grid ** 2).sum(-1, keepdims=True))
            grid = np.where(norm > limit, grid * (limit / np.maximum(norm, 1e-6)), grid)
        return grid

    @staticmethod
    def _render(lab: np.ndarray, img: np.ndarray, tissue: np.ndarray,
                bg_level: float) -> np.ndarray | None:
        """Each label painted with the section's mean gray under it (uint8)."""
        n = int(lab.max()) + 1
        inside = (tissue > 0) & (lab > 0)
        if not inside.any():
            return None
        li = lab[inside].astype(np.int64)
        cnt = np.bincount(li, minlength=n)
        tot = np.bincount(li, weights=img[inside], minlength=n)
        mean = np.where(cnt > 0, tot / np.maximum(cnt, 1), float(img[inside].mean()))
        mean[0] = bg_level
        return np.clip(mean[lab], 0, 255).astype(np.uint8)

    def _fit(self, flow: np.ndarray, wgt: np.ndarray) -> np.ndarray:
        """Weighted mean flow per grid cell (the area under each control point), shrunk to
        zero where the edge weight is small."""
        gh, gw = self.grid
        wsum = cv2.resize(wgt, (gw, gh), interpolation=cv2.INTER_AREA)
        fx = cv2.resize(flow[..., 0] * wgt, (gw, gh), interpolation=cv2.INTER_AREA)
        fy = cv2.resize(flow[..., 1] * wgt, (gw, gh), interpolation=cv2.INTER_AREA)
        lam = self.shrink * float(wgt.mean()) + 1e-6
        out = np.stack([fx, fy], -1) / (wsum[..., None] + lam)
        return out.astype(np.float32)
