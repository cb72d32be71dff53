"""CNN transfer features: images -> per-section layer activations -> one vector per experiment.

:class:`CNNFeatures` is a plain scikit-learn-style transformer (no DuckDB): ``fit`` loads the
backbone, :meth:`CNNFeatures.section_features` maps a batch of images to one flattened vector
per requested layer, and :meth:`CNNFeatures.transform` pools the sections of each experiment
(element-wise ``max`` or ``mean``, as in the paper).

Input: each section is resized (squashed, the whole section kept) to ``image_size`` x
``image_size`` (the paper's 231 by default), gray images are repeated over the three
channels, and ImageNet normalisation is applied. Large files are decoded at 1/2, 1/4 or 1/8
resolution when that still leaves at least ``image_size`` pixels (JPEG decodes such
reductions natively, several times faster).

Vector layout: the layer's feature map flattened channel-major (C, H, W), as in the paper.
``spatial=N`` first averages the map to an N x N grid (adaptive average pooling), which bounds
the size to C*N*N whatever the input size. The default (``None``) keeps the full map:
at 231 px, ``efficientnet_lite0`` gives blocks.2 = 40x29x29 (33,640), blocks.3 = 80x15x15
(18,000), blocks.4 = 112x15x15 (25,200), blocks.5 = 192x8x8 (12,288),
blocks.6 = 320x8x8 (20,480), conv_head = 1280x8x8 (81,920).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin

from ishwh.device import resolve_device  # noqa: F401  (re-exported)
from ishwh.features.backbone import (
    DEFAULT_BACKBONE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    LayerTap,
    load_backbone,
)
from ishwh.features.imageio import decode_for_cnn, looks_truncated  # noqa: F401 (re-export)

# The one place the default layers are defined. Chosen on the synthetic `demo` atlas (mean
# test AUC over 104 structure tasks, see docs/benchmarks_featurize.md): blocks.5 0.823,
# blocks.6 0.825, conv_head 0.815, blocks.4 0.814, blocks.2 0.794, blocks.3 0.789; blocks.5
# is within noise of the best with the fewest dims (12,288) and a shorter forward pass.
DEFAULT_LAYERS: tuple[str, ...] = ("blocks.5",)
DEFAULT_IMAGE_SIZE = 231
POOLS = ("max", "mean")

def prepare_rgb(rgb: np.ndarray, size: int) -> np.ndarray:
    """An in-memory (H, W) or (H, W, 3) image as the network's (size, size, 3) uint8 input."""
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    if rgb.dtype != np.uint8:
        rgb = cv2.normalize(rgb.astype(np.float32), None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return cv2.resize(rgb[:, :, :3], (size, size), interpolation=cv2.INTER_AREA)


def pool_sections(x: np.ndarray, pool: str) -> np.ndarray:
    """Pool the (n_sections, d) rows of one experiment into one (d,) vector."""
    if pool == "max":
        return x.max(axis=0)
    if pool == "mean":
        return x.astype(np.float64).mean(axis=0).astype(np.float32)
    raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")


class CNNFeatures(BaseEstimator, TransformerMixin):
    """Transfer features from chosen layers of an ImageNet CNN.

    Parameters
    ----------
    backbone: timm or torchvision model name.
    layers: module names (default :data:`DEFAULT_LAYERS`).
    pools: section pooling(s) used by :meth:`transform`: ``"max"`` and/or ``"mean"``.
    image_size: side of the square network input (the paper's 231).
    spatial: if set, average each feature map to ``spatial`` x ``spatial`` first.
    weights: weights file; ``None`` = the bundled efficientnet_lite0 ImageNet weights.
    device: ``auto``, ``cpu`` or ``cuda``; on CUDA the network runs in bf16, channels-last.
    batch_size: images per forward pass in :meth:`transform`.
    """

    def __init__(self, backbone: str = DEFAULT_BACKBONE, layers: Sequence[str] | None = None,
                 pools: Sequence[str] = ("max",), image_size: int = DEFAULT_IMAGE_SIZE,
                 spatial: int | None = None, weights: str | None = None, device: str = "auto",
                 batch_size: int = 32):
        self.backbone = backbone
        self.layers = layers
        self.pools = pools
        self.image_size = image_size
        self.spatial = spatial
        self.weights = weights
        self.device = device
        self.batch_size = batch_size

    # ------------------------------------------------------------------ fitting

    def _check_params(self) -> None:
        bad = [p for p in self.pools if p not in POOLS]
        if bad or not self.pools:
            raise ValueError(f"pools must be a non-empty subset of {POOLS}, got {self.pools!r}")
        if not isinstance(self.image_size, int) or self.image_size < 32:
            raise ValueError(f"image_size must be an integer >= 32, got {self.image_size!r}")
        if self.spatial is not None and (not isinstance(self.spatial, int) or self.spatial < 1):
            raise ValueError(f"spatial must be a positive integer or None, got {self.spatial!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size!r}")

    def fit(self, X=None, y=None) -> CNNFeatures:  # noqa: N803 - sklearn signature
        """Load the backbone and learn the output size of each layer (X is not used)."""
        self._check_params()
        self.layers_ = list(dict.fromkeys(self.layers or DEFAULT_LAYERS))
        self.device_ = resolve_device(self.device)
        model, self.weights_path_ = load_backbone(self.backbone, self.weights)
        self.half_ = self.device_.type == "cuda"
        if self.half_:
            model = model.to(self.device_, memory_format=torch.channels_last)
        else:
            # channels-last is ~3x faster for these depthwise convolutions on CPU (oneDNN).
            model = model.to(memory_format=torch.channels_last)
        self.model_ = model
        self.tap_ = LayerTap(model, self.layers_)
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device_).view(1, 3, 1, 1) * 255.0
        self._std = torch.tensor(IMAGENET_STD, device=self.device_).view(1, 3, 1, 1) * 255.0
        probe = np.zeros((1, self.image_size, self.image_size, 3), dtype=np.uint8)
        out = self.section_features(probe)
        self.dims_ = {layer: int(v.shape[1]) for layer, v in out.items()}
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "tap_"):
            raise RuntimeError("CNNFeatures is not fitted: call fit() first")

    # ------------------------------------------------------------------ transforming

    def section_features(self, images: np.ndarray | torch.Tensor) -> dict[str, np.ndarray]:
        """(n, S, S, 3) uint8 RGB images -> ``{layer: (n, d) float32}``, one forward pass."""
        self._check_fitted()
        x = torch.as_tensor(images)
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError("images must be an (n, size, size, 3) uint8 array")
        # NHWC uint8 -> NCHW float view whose memory is already channels-last.
        x = x.to(self.device_, non_blocking=True).permute(0, 3, 1, 2).float()
        x = (x - self._mean) / self._std
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            if self.half_:
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    maps = self.tap_(x)
            else:
                maps = self.tap_(x)
            out = {}
            for layer, m in maps.items():
                if self.spatial is not None:
                    m = torch.nn.functional.adaptive_avg_pool2d(m.float(), self.spatial)
                # .contiguous() first: flatten in (C, H, W) order whatever the memory format.
                out[layer] = m.float().contiguous().flatten(1).cpu().numpy()
        return out

    def transform(self, X: Sequence[Sequence[np.ndarray]]) -> dict[tuple[str, str], np.ndarray]:  # noqa: N803
        """Experiments (each a list of section images) -> ``{(layer, pool): (n_exp, d)}``."""
        self._check_fitted()
        out: dict[tuple[str, str], list[np.ndarray]] = {
            (lay, p): [] for lay in self.layers_ for p in self.pools
        }
        for sections in X:
            if len(sections) == 0:
                raise ValueError("an experiment has no sections")
            imgs = np.stack([prepare_rgb(s, self.image_size) for s in sections])
            parts: dict[str, list[np.ndarray]] = {lay: [] for lay in self.layers_}
            for start in range(0, len(imgs), self.batch_size):
                for lay, v in self.section_features(imgs[start:start + self.batch_size]).items():
                    parts[lay].append(v)
            for lay in self.layers_:
                feats = np.concatenate(parts[lay])
                for p in self.pools:
                    out[(lay, p)].append(pool_sections(feats, p))
        return {k: np.stack(v) for k, v in out.items()}

    def predict_imagenet(self, images: np.ndarray) -> np.ndarray:
        """ImageNet class probabilities of the full network (used to check the weights)."""
        self._check_fitted()
        x = torch.as_tensor(images).to(self.device_).permute(0, 3, 1, 2).float()
        x = ((x - self._mean) / self._std).contiguous(memory_format=torch.channels_last)
        self.tap_.close()  # the hooks would stop the pass early
        try:
            with torch.inference_mode():
                return self.model_(x).float().softmax(1).cpu().numpy()
        finally:
            self.tap_ = LayerTap(self.model_, self.layers_)
