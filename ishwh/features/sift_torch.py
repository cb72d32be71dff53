"""Dense SIFT in torch: OpenCV's SIFT descriptor on the dense grid of :func:`bow.dense_sift`.

The bag-of-words baseline computes SIFT descriptors with OpenCV on the CPU. This module
computes the *same* descriptors with tensor operations, so that they can run on a GPU (and
batch many sections), and a codebook learnt from OpenCV descriptors assigns the same words.

What OpenCV does (``cv::SIFT::compute`` with the grid's keypoints: octave 0, upright, size
``s``; opencv ``sift.dispatch.cpp`` and ``sift.simd.hpp``), and how it is reproduced here:

* base image: ``float(gray)`` blurred by a Gaussian of sigma ``sqrt(1.6^2 - 0.5^2)``
  (13 taps, border reflect-101); no x2 upsampling since the keypoints are in octave 0. The
  blur repeats OpenCV's float arithmetic (summation order, fused multiply-adds) and is bit
  for bit the same as the x86-64 AVX2 build's: in a flat area its last bits are the only
  gradients, and SIFT scales whatever it finds there to a full-size descriptor.
* gradients at every pixel not on the image border: ``dx = I(y, x+1) - I(y, x-1)``,
  ``dy = I(y-1, x) - I(y+1, x)``, magnitude ``sqrt(dx^2 + dy^2)`` and orientation by
  OpenCV's ``fastAtan2`` polynomial (bit for bit, not ``atan2``, which differs by up to
  0.01 degree); the magnitude is split linearly between the two nearest of 8 orientation
  bins -> 8 orientation maps.
* ``calcSIFTDescriptor`` with angle 0: a pixel at offset ``(i, j)`` from the keypoint adds
  ``mag * W * tri(rbin - a) * tri(cbin - b)`` to spatial cell ``(a, b)`` (4 x 4 cells), with
  ``rbin = i / hw + 1.5``, ``cbin = j / hw + 1.5``, ``hw = 1.5 * s`` and the Gaussian
  ``W = exp(-((i/hw)^2 + (j/hw)^2) / 8)``. Upright, this kernel is separable:
  ``K_ab(i, j) = [g(i) tri(rbin_i - a)] [g(j) tri(cbin_j - b)]``, so every descriptor of the
  grid is two strided 1-D correlations of the orientation maps (along x, then along y,
  evaluated only at the keypoint centres), done as products with banded matrices. The bin
  coordinates are computed in float32 as OpenCV does, so the same pixels land in the same
  cells with the same weights.
* the 128 values are clipped at 0.2 of their norm, scaled to norm 512 and rounded to uint8
  (round half to even, as ``cvRound``); a flat patch gives all zeros.

Where it can differ from OpenCV: the descriptor sums run in another order (and ``exp`` of a
sum is taken as a product of two ``exp``), so a value within float rounding of ``k + 0.5``
may round the other way: a component may differ by 1. Measured on the Allen image and
synthetic sections: 99.998% of the components identical, none off by more than 1, and a
codebook learnt from OpenCV descriptors assigns every torch descriptor the same word. Another
OpenCV build (ARM NEON, no AVX2) rounds its blur differently, which shows in flat areas.

On a GPU, cuBLAS may use TF32 for float32 products (when a program allowed it); TF32 is
switched off while the descriptors are computed: its 10-bit mantissa would make many more
components differ.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch

from ishwh.features.bow import SIFT_SIZES, STEP, keypoint_grid

_F32 = np.float32
# OpenCV's fastAtan2 (degrees): a 7th-order polynomial in min(|x|,|y|) / max(|x|,|y|), its
# coefficients float32 products exactly as OpenCV's mathfuncs_core defines them.
_ATAN_P = tuple(float(_F32(_F32(c) * _F32(180 / np.pi))) for c in (
    0.9997878412794807, -0.3258083974640975, 0.1555786518463281, -0.04432655554792128))
_DBL_EPS_F32 = float(_F32(np.finfo(np.float64).eps))
_N_ORI = 8
_D = 4


def grid_points(h: int, w: int, step: int = STEP) -> tuple[np.ndarray, np.ndarray]:
    """Keypoint centres (rows, columns) of :func:`bow.keypoint_grid` as integer pixels.

    OpenCV rounds a keypoint to the nearest pixel (``cvRound``: half to even), which matters
    for the one-keypoint fallback of an image smaller than one step.
    """
    ys, xs = keypoint_grid(h, w, step)
    return np.rint(ys).astype(np.int64), np.rint(xs).astype(np.int64)


def gaussian_taps() -> np.ndarray:
    """The 13 taps of the base-image blur, as OpenCV's ``getGaussianKernel`` builds them."""
    sigma = float(np.sqrt(max(_F32(1.6) * _F32(1.6) - _F32(0.5) * _F32(0.5), _F32(0.01)),
                          dtype=_F32))
    n = int(np.floor(sigma * 4 * 2 + 1 + 0.5)) | 1
    x = np.arange(n, dtype=np.float64) - (n - 1) * 0.5
    k = np.exp(-0.5 / (sigma * sigma) * x * x)
    return (k / k.sum()).astype(_F32)


def cell_kernel(size: float) -> np.ndarray:
    """``(4, 2R+1)`` weights: offset ``t - R`` -> its share in each of the 4 cells of one axis,
    times the axis' half of the descriptor's Gaussian window."""
    hw = _F32(3.0) * (_F32(size) * _F32(0.5))
    inv = _F32(1.0) / hw
    r = int(np.ceil(float(hw) * 2.5)) + 1
    off = np.arange(-r, r + 1)
    rot = off.astype(_F32) * inv
    cbin = (rot + _F32(_D // 2)) - _F32(0.5)
    ok = (cbin > -1) & (cbin < _D)
    c0 = np.floor(cbin)
    frac = (cbin - c0).astype(np.float64)
    g = np.exp(rot.astype(np.float64) ** 2 * -(1.0 / (_D * _D * 0.5)))
    k = np.zeros((_D, len(off)), np.float64)
    for b in range(_D):
        k[b] += np.where(ok & (c0 == b), g * (1 - frac), 0.0)
        k[b] += np.where(ok & (c0 + 1 == b), g * frac, 0.0)
    return k.astype(_F32)


def _fast_atan2(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """OpenCV's ``fastAtan2`` in degrees, [0, 360): bit for bit as its SIMD code (the
    polynomial by fused multiply-adds, here in float64 rounded to float32 at each step)."""
    ax, ay = x.abs(), y.abs()
    c = torch.minimum(ax, ay) / (torch.maximum(ax, ay) + _DBL_EPS_F32)
    c2 = (c * c).double()
    p1, p3, p5, p7 = _ATAN_P
    a = (c2 * p7 + p5).float().double()
    a = (a * c2 + p3).float().double()
    a = (a * c2 + p1).float() * c
    a = torch.where(ax >= ay, a, 90.0 - a)
    a = torch.where(x < 0, 180.0 - a, a)
    return torch.where(y < 0, 360.0 - a, a)


def _reflect101(n: int, r: int, device: torch.device) -> torch.Tensor:
    """Indices ``-r .. n-1+r`` mapped into ``0..n-1`` by OpenCV's BORDER_REFLECT_101."""
    idx = torch.arange(-r, n + r, device=device)
    if n == 1:
        return torch.zeros_like(idx)
    period = 2 * (n - 1)
    idx = idx.abs() % period
    return torch.where(idx >= n, period - idx, idx)


def _madd(acc: torch.Tensor, x: torch.Tensor, k: float, fused_until: int) -> torch.Tensor:
    """float32 ``acc + x * k``: rounded once (a fused multiply-add, done in float64) in the
    columns before ``fused_until``, twice (multiply, then add) in the others."""
    out = (acc.double() + x.double() * k).float()
    if fused_until < out.shape[-1]:
        out[..., fused_until:] = acc[..., fused_until:] + x[..., fused_until:] * k
    return out


def _blur(img: torch.Tensor, taps: np.ndarray) -> torch.Tensor:
    """(B, H, W) float32 blurred by the symmetric ``taps``, border reflect-101, with the
    arithmetic of OpenCV's float ``GaussianBlur`` (its x86-64 AVX2 build): along each row
    ``s = x[0] k[0]``, then ``s += x[t] k[t]`` for t = 1.. ; along each column, from the
    centre ``s = x[0] k[c]``, then ``s += (x[+t] + x[-t]) k[c+t]``; each ``+=`` a fused
    multiply-add in the SIMD lanes (4 floats wide along rows, 8 along columns), multiply
    then add in the few columns left over at the right edge.

    Exactness matters here: in a flat area the blur's last bits are the only "gradients",
    and SIFT normalises them to full-size descriptors.
    """
    r = (len(taps) - 1) // 2
    h, w = img.shape[1:]
    p = img.index_select(2, _reflect101(w, r, img.device))
    s = p[:, :, 0:w] * float(taps[0])
    for t in range(1, len(taps)):
        s = _madd(s, p[:, :, t:t + w], float(taps[t]), w - w % 4)
    p = s.index_select(1, _reflect101(h, r, img.device))
    out = p[:, r:r + h] * float(taps[r])
    for t in range(1, r + 1):
        out = _madd(out, p[:, r + t:r + t + h] + p[:, r - t:r - t + h], float(taps[r + t]),
                    w - w % 8)
    return out


def orientation_maps(base: torch.Tensor) -> torch.Tensor:
    """(B, H, W) base images -> (B, 8, H, W) gradient magnitude split over 8 orientations
    (zero on the 1-pixel image border, where OpenCV takes no gradient)."""
    b, h, w = base.shape
    maps = base.new_zeros((b, _N_ORI, h, w))
    if h < 3 or w < 3:
        return maps
    dx = base[:, 1:-1, 2:] - base[:, 1:-1, :-2]
    dy = base[:, :-2, 1:-1] - base[:, 2:, 1:-1]
    mag = torch.sqrt(dx * dx + dy * dy)
    obin = _fast_atan2(dy, dx) * float(_F32(_N_ORI) / _F32(360.0))
    o0 = torch.floor(obin)
    frac = obin - o0
    o0 = o0.long().remainder(_N_ORI)
    hi = mag * frac
    inner = maps[:, :, 1:-1, 1:-1]
    inner.scatter_add_(1, o0.unsqueeze(1), (mag - hi).unsqueeze(1))
    inner.scatter_add_(1, (o0 + 1).remainder(_N_ORI).unsqueeze(1), hi.unsqueeze(1))
    return maps


@functools.lru_cache(maxsize=64)
def pooling_matrix(size: float, n: int, centres: tuple[int, ...]) -> np.ndarray:
    """``(n, len(centres) * 4)`` float32: column ``k * 4 + b`` holds the weights of the
    pixels ``0..n-1`` of one axis in cell ``b`` of the keypoint at ``centres[k]``."""
    k = cell_kernel(size)
    r = (k.shape[1] - 1) // 2
    out = np.zeros((n, len(centres), _D), _F32)
    pix = np.arange(n)
    for i, c in enumerate(centres):
        off = pix - c
        ok = np.abs(off) <= r
        out[ok, i, :] = k[:, off[ok] + r].T
    return out.reshape(n, len(centres) * _D)


@functools.lru_cache(maxsize=64)
def _on_device(size: float, n: int, centres: tuple[int, ...], device: torch.device
               ) -> torch.Tensor:
    return torch.from_numpy(pooling_matrix(size, n, centres)).to(device)


def descriptors(maps: torch.Tensor, size: float, ys: np.ndarray, xs: np.ndarray
                ) -> torch.Tensor:
    """(B, 8, H, W) orientation maps -> (B, len(ys) * len(xs), 128) uint8 descriptors.

    The two strided correlations are products with banded matrices (pixels x cells): more
    multiply-adds than a convolution, but dense matrix products are what CPUs and GPUs do
    fastest, and they never copy the overlapping windows.
    """
    b, _, h, w = maps.shape
    ny, nx = len(ys), len(xs)
    kx = _on_device(size, w, tuple(int(x) for x in xs), maps.device)
    ky = _on_device(size, h, tuple(int(y) for y in ys), maps.device)
    t = maps @ kx                                       # (B, 8, H, nx*4c)
    t = ky.T @ t                                        # (B, 8, ny*4r, nx*4c)
    v = (t.reshape(b, _N_ORI, ny, _D, nx, _D).permute(0, 2, 4, 3, 5, 1)
         .reshape(b, ny * nx, _D * _D * _N_ORI))        # dst[(r*4 + c)*8 + o]
    nrm = torch.linalg.vector_norm(v, dim=2, keepdim=True)
    v = torch.minimum(v, nrm * 0.2)
    scale = 512.0 / torch.linalg.vector_norm(v, dim=2, keepdim=True).clamp_min(
        float(np.finfo(_F32).eps))
    return torch.round(v * scale).clamp_(0, 255).to(torch.uint8)


@contextmanager
def _full_fp32() -> Iterator[None]:
    """No TF32 in float32 matrix products while descriptors are computed (restored after)."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def dense_sift_tensors(gray: torch.Tensor, sizes: Sequence[int] = SIFT_SIZES,
                       step: int = STEP) -> list[torch.Tensor]:
    """(B, H, W) uint8/float images of one shape (on any device) -> one (B, n, 128) uint8
    tensor per size, keypoints in the order of :func:`bow.dense_sift`."""
    _, h, w = gray.shape
    ys, xs = grid_points(h, w, step)
    with torch.no_grad(), _full_fp32():
        maps = orientation_maps(_blur(gray.to(torch.float32), gaussian_taps()))
        return [descriptors(maps, float(s), ys, xs) for s in sizes]


def dense_sift_torch(gray: np.ndarray, sizes: Sequence[int] = SIFT_SIZES, step: int = STEP,
                     device: str | torch.device = "cpu") -> list[np.ndarray]:
    """Same contract as :func:`bow.dense_sift` (one (n, 128) uint8 array per size), in torch
    on ``device``."""
    return TorchDenseSift(sizes, step, device).descriptors(gray)


class TorchDenseSift:
    """Dense SIFT and word counting on one torch device: the pipeline's GPU path.

    ``descriptors(gray)`` has the contract of :func:`bow.dense_sift`;
    ``section_counts(gray, centers)`` that of :func:`bow.section_counts` (words assigned on the
    device, with codebooks put there once by :meth:`codebooks`).
    """

    def __init__(self, sizes: Sequence[int] = SIFT_SIZES, step: int = STEP,
                 device: str | torch.device = "cpu"):
        self.sizes = [int(s) for s in sizes]
        self.step = int(step)
        self.device = torch.device(device)

    def _tensors(self, gray: np.ndarray) -> list[torch.Tensor]:
        t = torch.from_numpy(np.ascontiguousarray(gray)).to(self.device).unsqueeze(0)
        return [d[0] for d in dense_sift_tensors(t, self.sizes, self.step)]

    def descriptors(self, gray: np.ndarray) -> list[np.ndarray]:
        """One (n, 128) uint8 array per size."""
        return [d.cpu().numpy() for d in self._tensors(gray)]

    def codebooks(self, centers: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """The codebooks (one (k, 128) array per size) as device tensors."""
        return [torch.from_numpy(np.asarray(c, np.float32)).to(self.device) for c in centers]

    def section_counts(self, gray: np.ndarray | None, centers: Sequence[torch.Tensor],
                       descs: Sequence[np.ndarray] | None = None) -> np.ndarray:
        """Word counts per size plus the count of all-zero descriptors, of image ``gray`` (or
        of descriptors ``descs`` already computed): ``((k + 1) * n_sizes,)`` float32."""
        per = (self._tensors(gray) if descs is None
               else [torch.from_numpy(d).to(self.device) for d in descs])
        parts = []
        with torch.no_grad(), _full_fp32():
            for d, c in zip(per, centers, strict=True):
                nz = (d != 0).any(dim=1)
                x = d[nz].to(torch.float32)
                words = ((c * c).sum(1)[None, :] - 2.0 * (x @ c.T)).argmin(1)
                counts = torch.bincount(words, minlength=len(c)).to(torch.float32)
                parts.append(torch.cat([counts, (~nz).sum().to(torch.float32).reshape(1)]))
        return torch.cat(parts).cpu().numpy()
