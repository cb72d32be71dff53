"""Bag-of-visual-words baseline: dense SIFT, k-means codebooks, sagittal intervals.

Following the paper's baseline:

* each section is read in gray at 1/4 resolution (``downsample=4``) and SIFT descriptors are
  computed on a dense grid (one keypoint every ``step`` = 16 px of the reduced image) at 3
  scales (keypoint sizes 8, 16 and 32 px), upright (angle 0): with OpenCV on the CPU, or with
  :mod:`.sift_torch` (the same descriptors up to float rounding) on a GPU;
* a descriptor that is all zeros (a flat patch, e.g. empty background) is not a word: it is
  counted in an extra bin;
* codebooks: per stage and per scale, k-means with ``n_words`` = 500 words on up to 100,000
  sampled non-zero descriptors, ``n_init`` = 3 random restarts, the lowest inertia kept
  (mini-batch k-means for pools above 20,000 descriptors, Lloyd's below; seeded; the
  warehouse stores the centres so features are reproducible);
* per section: 501 counts per scale (500 words + zero descriptors) -> 1,503 numbers;
* per experiment: sections are put into 7 sagittal intervals by their position (0..1,
  lateral to medial: interval = floor(7 * position), 1.0 in the last), or, when any position
  is missing, by section-number order (rank * 7 // n); section counts are averaged within
  each interval and the 7 intervals concatenated -> 7 x 1,503 = 10,521 numbers. An interval
  without sections is all zeros.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.cluster import KMeans, MiniBatchKMeans

from ishwh.errors import InvalidInput
from ishwh.features.imageio import imdecode, read_bytes

N_WORDS = 500
SIFT_SIZES: tuple[int, ...] = (8, 16, 32)
STEP = 16
DOWNSAMPLE = 4
N_INTERVALS = 7
MAX_DESCRIPTORS = 100_000
N_INIT = 3

_REDUCED_GRAY = {2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
                 8: cv2.IMREAD_REDUCED_GRAYSCALE_8}


def bow_dim(n_words: int = N_WORDS, n_scales: int = len(SIFT_SIZES),
            n_intervals: int = N_INTERVALS) -> int:
    """Length of an experiment vector: (n_words + 1) * n_scales * n_intervals (10,521)."""
    return (n_words + 1) * n_scales * n_intervals


def read_gray(path: str, downsample: int = DOWNSAMPLE, data: np.ndarray | None = None
              ) -> np.ndarray:
    """A section as a gray uint8 image reduced ``downsample`` times (JPEG: while decoding).
    ``data``: the file's bytes when already read (the Ray engine); ``path`` then names it."""
    data = read_bytes(path) if data is None else data
    flag = _REDUCED_GRAY.get(downsample)
    img = imdecode(path, data, flag if flag is not None else cv2.IMREAD_GRAYSCALE,
                   from_rgb=cv2.COLOR_RGB2GRAY, reduce=downsample if flag is not None else 1)
    if flag is None and downsample > 1:
        h, w = img.shape
        img = cv2.resize(img, (max(1, w // downsample), max(1, h // downsample)),
                         interpolation=cv2.INTER_AREA)
    return img


def keypoint_grid(h: int, w: int, step: int = STEP) -> tuple[np.ndarray, np.ndarray]:
    """Keypoint centres (rows, columns; float32) of the dense grid: one every ``step`` pixels
    from ``step // 2``; an image smaller than one step gets one keypoint in the middle."""
    ys = np.arange(step // 2, h, step, dtype=np.float32)
    xs = np.arange(step // 2, w, step, dtype=np.float32)
    if len(xs) == 0 or len(ys) == 0:
        return np.array([h / 2], np.float32), np.array([w / 2], np.float32)
    return ys, xs


def dense_sift(gray: np.ndarray, sizes: Sequence[int] = SIFT_SIZES, step: int = STEP
               ) -> list[np.ndarray]:
    """SIFT descriptors on a dense grid, one (n, 128) uint8 array per keypoint size.

    Keypoints are row by row, upright (angle 0; OpenCV's default angle -1 would turn every
    descriptor by 361 degrees).
    """
    ys, xs = keypoint_grid(*gray.shape[:2], step)
    sift = cv2.SIFT_create()
    out = []
    for size in sizes:
        kps = [cv2.KeyPoint(float(x), float(y), float(size), 0.0) for y in ys for x in xs]
        _, desc = sift.compute(gray, kps)
        if desc is None:
            desc = np.zeros((0, 128), np.float32)
        # OpenCV's SIFT values are integers 0..255 stored as float: keep them compact.
        out.append(np.clip(np.rint(desc), 0, 255).astype(np.uint8))
    return out


def nonzero(desc: np.ndarray) -> np.ndarray:
    """The descriptors that are not all zeros."""
    return desc[desc.any(axis=1)]


def fit_codebook(desc: np.ndarray, n_words: int = N_WORDS, n_init: int = N_INIT,
                 seed: int = 0) -> tuple[np.ndarray, float]:
    """k-means on (n, 128) descriptors with ``n_init`` restarts; (centres, lowest inertia)."""
    x = np.asarray(desc, dtype=np.float32)
    if len(x) < n_words:
        raise InvalidInput(
            f"only {len(x)} non-zero SIFT descriptors to build a {n_words}-word codebook",
            hint="featurize more sections of this stage, or use fewer words",
        )
    best: tuple[np.ndarray, float] | None = None
    for r in range(n_init):
        if len(x) <= 20_000:  # small pools: exact Lloyd k-means is fast enough
            km = KMeans(n_clusters=n_words, n_init=1, random_state=seed + r, max_iter=100)
        else:
            km = MiniBatchKMeans(n_clusters=n_words, n_init=1, random_state=seed + r,
                                 batch_size=4096, max_iter=100, max_no_improvement=10)
        km.fit(x)
        inertia = float(km.inertia_)
        if best is None or inertia < best[1]:
            best = (km.cluster_centers_.astype(np.float32), inertia)
    assert best is not None
    return best


class CodebookSample:
    """The descriptors a stage's codebooks are fitted on — the one sampling rule, used by
    ``featurize`` and by :class:`BowFeatures`.

    Sections are visited in a seeded random ``order``; each gives up to ``cap`` non-zero
    descriptors per scale (:func:`sample_nonzero`, seeded by its section id) until every scale
    holds ``max_descriptors``; then each scale's pool is cut to ``max_descriptors`` at random
    and k-means runs on it (:func:`fit_codebook`, seed ``seed + 1000 * scale``).
    """

    def __init__(self, n_sections: int, sizes: Sequence[int], max_descriptors: int =
                 MAX_DESCRIPTORS, seed: int = 0):
        self.sizes = list(sizes)
        self.max_descriptors = max_descriptors
        self.seed = seed
        self.rng = np.random.default_rng([seed, 7])
        self.order = self.rng.permutation(n_sections)
        self.cap = max(64, -(-4 * max_descriptors // max(1, n_sections)))
        self.pools: list[list[np.ndarray]] = [[] for _ in self.sizes]
        self.have = [0] * len(self.sizes)

    def add(self, sampled: Sequence[np.ndarray]) -> bool:
        """Add one section's sample (one array per scale); True once every scale has enough."""
        for s, d in enumerate(sampled):
            self.pools[s].append(d)
            self.have[s] += len(d)
        return min(self.have) >= self.max_descriptors

    def fit(self, n_words: int = N_WORDS, n_init: int = N_INIT) -> list[tuple[np.ndarray, float]]:
        """``(centres, inertia)`` per scale."""
        out = []
        for s, parts in enumerate(self.pools):
            pool = np.concatenate(parts) if parts else np.zeros((0, 128), np.uint8)
            if len(pool) > self.max_descriptors:
                pool = pool[np.sort(self.rng.choice(len(pool), self.max_descriptors,
                                                    replace=False))]
            try:
                out.append(fit_codebook(pool, n_words, n_init, self.seed + 1000 * s))
            except InvalidInput as exc:
                raise InvalidInput(f"SIFT scale {self.sizes[s]}: {exc.message}",
                                   hint=exc.hint) from exc
        return out


def assign(desc: np.ndarray, centers: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """Index of the nearest centre of each descriptor (squared Euclidean distance)."""
    x = np.asarray(desc, dtype=np.float32)
    c2 = (centers.astype(np.float32) ** 2).sum(1)
    out = np.empty(len(x), dtype=np.int64)
    for s in range(0, len(x), chunk):
        d = c2[None, :] - 2.0 * x[s:s + chunk] @ centers.T
        out[s:s + chunk] = d.argmin(1)
    return out


def section_counts(desc_per_scale: Sequence[np.ndarray], centers_per_scale: Sequence[np.ndarray]
                   ) -> np.ndarray:
    """Word counts per scale plus one count of zero descriptors: ((n_words+1)*n_scales,)."""
    parts = []
    for desc, centers in zip(desc_per_scale, centers_per_scale, strict=True):
        k = len(centers)
        is_nz = desc.any(axis=1)
        counts = np.zeros(k + 1, dtype=np.float32)
        if is_nz.any():
            counts[:k] = np.bincount(assign(desc[is_nz], centers), minlength=k)
        counts[k] = float((~is_nz).sum())
        parts.append(counts)
    return np.concatenate(parts)


def interval_index(positions: Sequence[float | None], section_numbers: Sequence[int],
                   n_intervals: int = N_INTERVALS) -> np.ndarray:
    """Sagittal interval (0..n_intervals-1) of each section of one experiment."""
    n = len(section_numbers)
    pos = [p for p in positions if p is not None and not np.isnan(p)]
    if n and len(pos) == n:
        p = np.asarray(positions, dtype=np.float64)
        return np.minimum((p * n_intervals).astype(np.int64), n_intervals - 1)
    rank = np.argsort(np.argsort(np.asarray(section_numbers), kind="stable"), kind="stable")
    return (rank * n_intervals) // max(n, 1)


def experiment_vector(counts: np.ndarray, intervals: np.ndarray,
                      n_intervals: int = N_INTERVALS) -> np.ndarray:
    """Average the section counts within each interval and concatenate (empty = zeros)."""
    d = counts.shape[1]
    out = np.zeros((n_intervals, d), dtype=np.float64)
    for i in range(n_intervals):
        rows = counts[intervals == i]
        if len(rows):
            out[i] = rows.astype(np.float64).mean(0)
    return out.reshape(-1).astype(np.float32)


class BowFeatures(BaseEstimator, TransformerMixin):
    """Dense-SIFT bag of words for experiments of ONE stage (no DuckDB).

    ``fit(X)`` builds one codebook per scale from gray images (already reduced);
    ``transform(X)`` maps experiments, each ``(gray_images, positions, section_numbers)``,
    to an (n, 10,521) matrix (with the default parameters).
    """

    def __init__(self, n_words: int = N_WORDS, sizes: Sequence[int] = SIFT_SIZES,
                 step: int = STEP, n_intervals: int = N_INTERVALS,
                 max_descriptors: int = MAX_DESCRIPTORS, n_init: int = N_INIT, seed: int = 0):
        self.n_words = n_words
        self.sizes = sizes
        self.step = step
        self.n_intervals = n_intervals
        self.max_descriptors = max_descriptors
        self.n_init = n_init
        self.seed = seed

    def fit(self, X: Sequence[np.ndarray], y=None) -> BowFeatures:  # noqa: N803
        """Build the codebooks from gray images ``X`` (image ``i`` sampled as section id
        ``i``), drawn as ``featurize`` draws them (:class:`CodebookSample`)."""
        X = list(X)  # noqa: N806
        sample = CodebookSample(len(X), self.sizes, self.max_descriptors, self.seed)
        for i in sample.order:
            descs = dense_sift(X[i], self.sizes, self.step)
            if sample.add(sample_nonzero(descs, self.seed, int(i), sample.cap)):
                break
        fitted = sample.fit(self.n_words, self.n_init)
        self.codebooks_ = [c for c, _ in fitted]
        self.inertia_ = [i for _, i in fitted]
        return self

    def section_counts(self, img: np.ndarray) -> np.ndarray:
        """The (n_words+1)*n_scales counts of one gray section image."""
        if not hasattr(self, "codebooks_"):
            raise RuntimeError("BowFeatures is not fitted: call fit() first")
        return section_counts(dense_sift(img, self.sizes, self.step), self.codebooks_)

    def transform(self, X) -> np.ndarray:  # noqa: N803
        """Experiments ``(gray_images, positions, section_numbers)`` -> (n, dim) matrix."""
        rows = []
        for images, positions, numbers in X:
            counts = np.stack([self.section_counts(im) for im in images])
            rows.append(experiment_vector(counts, interval_index(positions, numbers,
                                                                 self.n_intervals),
                                          self.n_intervals))
        return np.stack(rows)


# --------------------------------------------------------------------------- worker functions
# Run in spawned worker processes (see imageio.ordered_map); module state set by bow_setup.

_WORKER: dict = {}


def bow_setup(params: dict, centers: list[np.ndarray] | None) -> None:
    """Worker initialiser: the SIFT parameters and (for counting) the stage's codebooks."""
    _WORKER.clear()
    _WORKER.update(params=params, centers=centers)


def sample_nonzero(descs: Sequence[np.ndarray], seed: int, section_id: int, cap: int
                   ) -> list[np.ndarray]:
    """Up to ``cap`` random non-zero descriptors per scale of one section, seeded by
    (seed, section id) so that the sample depends neither on the worker nor on the order."""
    rng = np.random.default_rng([seed, section_id])
    out = []
    for d in descs:
        d = nonzero(d)
        if len(d) > cap:
            d = d[np.sort(rng.choice(len(d), cap, replace=False))]
        out.append(d)
    return out


def sample_job(job: tuple[str, int, int]):
    """Worker: :func:`sample_nonzero` of one section, and all its descriptors (the caller may
    keep them to count words without a second SIFT pass)."""
    path, section_id, cap = job
    p = _WORKER["params"]
    try:
        descs = dense_sift(read_gray(path, p["downsample"]), p["sizes"], p["step"])
    except Exception as exc:  # noqa: BLE001 - reported per section by the caller
        return None, str(getattr(exc, "message", exc))
    return (sample_nonzero(descs, p["seed"], section_id, cap), descs), None


def gray_job(path: str):
    """Worker: one section decoded in gray at reduced size (SIFT runs in the caller)."""
    try:
        return read_gray(path, _WORKER["params"]["downsample"]), None
    except Exception as exc:  # noqa: BLE001
        return None, str(getattr(exc, "message", exc))


def count_job(path: str):
    """Worker: the (n_words+1)*n_scales counts of one section."""
    p = _WORKER["params"]
    try:
        descs = dense_sift(read_gray(path, p["downsample"]), p["sizes"], p["step"])
    except Exception as exc:  # noqa: BLE001
        return None, str(getattr(exc, "message", exc))
    return section_counts(descs, _WORKER["centers"]), None
