"""``atlas.cnn``: the backbone's feature maps pooled inside each structure's projected mask.

Per registered section the image is read at ``INPUT_SIZE`` pixels on the long side (aspect
kept; padded with the background level to a multiple of the layer's stride), one forward
pass of the global features' backbone (``efficientnet_lite0``, bundled ImageNet weights) runs
as far as ``LAYER``, and the map's C channels are reduced to ``N_COMPONENTS`` principal
components (fitted once per feature set on tissue cells of a sample of sections and stored
in the set's params, so every later vector uses the same projection). The slice's structure
ids are projected at the network input's resolution; a (leaf label x map cell) pixel-count
matrix times the flattened map gives every leaf's summed features in one product, and the
sparse subtree matrix adds leaves up into every structure of the ontology: a structure's
value on a section is the area-weighted mean of the map cells its mask covers.

Pooled over the experiment's sections (those showing at least ``MIN_PIXELS`` pixels of the
structure): ``max`` of the per-section means (the paper's section pooling) and the
area-weighted ``mean`` over all those sections (so a structure seen large on one section and
as a sliver on another is dominated by the large view); and ``seen``, the fraction of the
sections that showed it. A structure no section showed takes its nearest shown ancestor's
numbers (``features.fill_unseen``; ``seen`` stays 0). 2 x ``N_COMPONENTS`` + 1 numbers per
structure.

Dims and bytes: 33 floats per structure = 141 KB per experiment for the paper's 1,071
structures, 283 MB per stage of 2,000 experiments (the global CNN set, 12,288 dims, is 98 MB).
All 80 channels of blocks.3 with both poolings would be 686 KB per experiment (1.4 GB per
stage) and give each structure's logistic regression 160 columns for a few hundred
training experiments; 16 components keep 80-90 % of the variance of tissue cells (recorded in
the set's params as ``explained``).
"""

from __future__ import annotations

import cv2
import numpy as np
import scipy.sparse as sp
import torch

from ishwh.atlas.register import tissue_mask
from ishwh.device import resolve_device
from ishwh.features.backbone import IMAGENET_MEAN, IMAGENET_STD, LayerTap, load_backbone

LAYER = "blocks.3"        # 80 channels, stride 16
INPUT_SIZE = 320          # long side (pixels) of the network input
N_COMPONENTS = 16
POOLS = ("max", "mean")
MIN_PIXELS = 12           # at the network input's resolution: fewer = not seen on a section
SAMPLE_SECTIONS = 48      # sections whose tissue cells fit the projection
SAMPLE_CELLS = 20_000


def set_name(layer: str = LAYER) -> str:
    """``atlas.cnn`` for the default layer, ``atlas.cnn.<layer>`` for another."""
    return "atlas.cnn" if layer == LAYER else f"atlas.cnn.{layer}"


def stat_names(n_components: int = N_COMPONENTS) -> list[str]:
    return [f"{p}_pc{i}" for p in POOLS for i in range(n_components)] + ["seen"]


def prepare_input(bgr: np.ndarray, input_size: int, stride: int) -> tuple[np.ndarray, float]:
    """A BGR section -> (RGB network input (h', w', 3), scale from the full image).
    Aspect kept (``input_size`` pixels on the long side); padded (bottom, right) with the
    frame's median to a multiple of ``stride``. The image alone decides it, so the Ray
    engine's read tasks make the input and its actors only run the network."""
    h, w = bgr.shape[:2]
    f = input_size / max(h, w)
    nh, nw = max(1, round(h * f)), max(1, round(w * f))
    img = cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_AREA if f < 1 else
                     cv2.INTER_LINEAR)
    ph, pw = (-nh) % stride, (-nw) % stride
    if ph or pw:
        frame = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
        fill = [float(v) for v in np.median(frame, axis=0)]
        img = cv2.copyMakeBorder(img, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=fill)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB), f


class StructureCNN:
    """One backbone layer's map per section, and its pooling inside structure masks."""

    def __init__(self, layer: str = LAYER, device: str = "auto", input_size: int = INPUT_SIZE,
                 projection: dict | None = None):
        self.layer, self.input_size = layer, input_size
        self.device = resolve_device(device)
        model, _ = load_backbone()
        self.model = model.to(self.device, memory_format=torch.channels_last)
        self.tap = LayerTap(self.model, [layer])
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1) * 255.0
        self._std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1) * 255.0
        probe = self._forward(np.zeros((1, 64, 64, 3), np.uint8))
        self.stride = 64 // probe.shape[1]
        self.channels = probe.shape[3]
        self.set_projection(projection)

    def set_projection(self, projection: dict | None) -> None:
        self.projection = projection
        if projection is not None:
            self._mu = np.asarray(projection["mean"], np.float32)
            self._w = np.asarray(projection["components"], np.float32).T   # (C, D)

    # ------------------------------------------------------------------ maps

    def prepare(self, bgr: np.ndarray) -> tuple[np.ndarray, float]:
        """A BGR section -> (RGB network input (h', w', 3), scale from the full image):
        :func:`prepare_input` at this network's input size and stride."""
        return prepare_input(bgr, self.input_size, self.stride)

    def _forward(self, images: np.ndarray) -> np.ndarray:
        """(n, h, w, 3) uint8 -> (n, hf, wf, C) float32 maps of the layer."""
        x = torch.as_tensor(images).to(self.device).permute(0, 3, 1, 2).float()
        x = ((x - self._mean) / self._std).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            m = self.tap(x)[self.layer]
        return m.float().permute(0, 2, 3, 1).contiguous().cpu().numpy()

    def maps(self, images: list[np.ndarray], batch_size: int = 8) -> list[np.ndarray]:
        """Network inputs (any sizes) -> their (hf, wf, C) maps; same-size inputs batched."""
        out: list[np.ndarray | None] = [None] * len(images)
        by_shape: dict[tuple, list[int]] = {}
        for i, im in enumerate(images):
            by_shape.setdefault(im.shape, []).append(i)
        for idx in by_shape.values():
            for b in range(0, len(idx), batch_size):
                part = idx[b:b + batch_size]
                for i, m in zip(part, self._forward(np.stack([images[i] for i in part])),
                                strict=True):
                    out[i] = m
        return out  # type: ignore[return-value]

    def project(self, fmap: np.ndarray) -> np.ndarray:
        """(hf, wf, C) -> (hf * wf, D) principal-component scores of every cell."""
        flat = fmap.reshape(-1, fmap.shape[-1])
        return (flat - self._mu) @ self._w

    # ------------------------------------------------------------------ pooling

    def cell_index(self, shape: tuple[int, int]) -> np.ndarray:
        """(h', w') map cell of every input pixel, row-major over the (hf, wf) map."""
        h, w = shape
        s = self.stride
        wf = -(-w // s)
        return (np.arange(h)[:, None] // s) * wf + np.arange(w)[None, :] // s

    def section_sums(self, fmap: np.ndarray, labels: np.ndarray, n_ids: int,
                     sub: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        """A section's map and label *indices* at the network input (0 = background) ->
        ((S,) pixels, (S, D) summed component scores) per structure of ``sub`` (S, L)."""
        proj = self.project(fmap)                                   # (HW, D)
        hw = proj.shape[0]
        key = labels.ravel().astype(np.int64) * hw + self.cell_index(labels.shape).ravel()
        counts = np.bincount(key, minlength=n_ids * hw).reshape(n_ids, hw).astype(np.float32)
        counts[0] = 0.0                                             # background
        return sub @ counts.sum(1), sub @ (counts @ proj)

    # ------------------------------------------------------------------ projection

    def fit_projection(self, images: list[np.ndarray], seed: int = 0) -> dict:
        """PCA of the tissue cells (>= half tissue) of the inputs' maps."""
        rows = []
        for im, fmap in zip(images, self.maps(images), strict=True):
            tissue = tissue_mask(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY)).astype(np.float32)
            hf, wf = fmap.shape[:2]
            frac = cv2.resize(tissue, (wf, hf), interpolation=cv2.INTER_AREA)
            rows.append(fmap.reshape(-1, fmap.shape[-1])[frac.ravel() >= 0.5])
        x = np.concatenate(rows) if rows else np.zeros((0, self.channels), np.float32)
        if x.shape[0] < N_COMPONENTS + 1:
            x = np.concatenate([fm.reshape(-1, fm.shape[-1]) for fm in self.maps(images)])
        rng = np.random.default_rng(seed)
        if x.shape[0] > SAMPLE_CELLS:
            x = x[rng.choice(x.shape[0], SAMPLE_CELLS, replace=False)]
        mu = x.mean(0)
        _, sv, vt = np.linalg.svd(x - mu, full_matrices=False)
        var = sv ** 2
        k = min(N_COMPONENTS, vt.shape[0])
        comps = vt[:k]
        # sign: each component's largest loading positive (deterministic across BLAS builds)
        comps = comps * np.sign(comps[np.arange(k), np.abs(comps).argmax(1)])[:, None]
        return {"mean": [round(float(v), 6) for v in mu],
                "components": [[round(float(v), 6) for v in c] for c in comps],
                "explained": round(float(var[:k].sum() / max(var.sum(), 1e-12)), 4),
                "cells": int(x.shape[0]), "sections": len(images)}


def pool_experiment(area: list[np.ndarray], sums: list[np.ndarray], min_pixels: int = MIN_PIXELS
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Sections' (S,) pixels and (S, D) sums -> ((S, 2D + 1) [max | area-weighted mean |
    fraction of the sections that showed it], (S,) sections that showed each structure)."""
    a = np.stack(area)                                   # (n, S)
    s = np.stack(sums)                                   # (n, S, D)
    seen = a >= min_pixels
    mean_sec = np.where(seen[..., None], s / np.maximum(a, 1.0)[..., None], -np.inf)
    mx = mean_sec.max(0)
    any_seen = seen.any(0)
    mx[~any_seen] = 0.0
    tot = np.where(seen, a, 0.0).sum(0)
    mean = np.where(seen[..., None], s, 0.0).sum(0) / np.maximum(tot, 1.0)[:, None]
    return (np.concatenate([mx, mean, seen.mean(0)[:, None]], axis=1).astype(np.float32),
            seen.sum(0))
