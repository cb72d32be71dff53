"""Expert-style annotations derived from the truth, with realistic annotator noise.

The annotator looks at the sections of an experiment (only structures that appear in a
present section can be annotated; the others are unknown, NULL, like Allen's empty calls).
Per structure (its whole subtree) she judges the stained area fraction, how dark and how
dense the stained cells are, and the pattern. Noise: faint expression is often called
"undetected", a few percent of calls are missed, the calls are made consistent up the
hierarchy (a parent is expressed when any child is), as in the real annotations, and a few
percent of the sub-structures of an expressed structure are over-called.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ishwh.synth.expression import FULL, GRADIENT

VISIBLE = 0.03      # expected stain per pixel below which nothing is seen
MIN_AREA = 0.04     # stained area fraction needed to call a structure expressed
FAINT = 0.25        # perceived intensity below which a call is "faint"
SMALL_MISS = 0.25   # extra chance to miss a structure seen in very few pixels ...
SMALL_PIXELS = 300  # ... decaying with the pixels seen (at half image resolution)


class SectionStats:
    """Running per-label sums over the sections an annotator sees."""

    def __init__(self, n_labels: int):
        self.n = n_labels
        self.npix = np.zeros(n_labels)
        self.cov = np.zeros(n_labels)
        self.sum_e = np.zeros(n_labels)
        self.sum_d = np.zeros(n_labels)

    def add(self, labels: np.ndarray, e: np.ndarray, d: np.ndarray) -> None:
        lab = labels.ravel()
        vis = (e * d).ravel() > VISIBLE
        self.npix += np.bincount(lab, minlength=self.n)
        self.cov += np.bincount(lab, weights=vis, minlength=self.n)
        self.sum_e += np.bincount(lab, weights=e.ravel() * vis, minlength=self.n)
        self.sum_d += np.bincount(lab, weights=d.ravel() * vis, minlength=self.n)


CONFUSE_PIXELS = 150  # structures seen in about this many pixels or fewer get confused


def confusable(parent: np.ndarray) -> list[np.ndarray]:
    """Per structure, the structures an annotator may take it for: its siblings and cousins
    (same grandparent), never an ancestor or descendant."""
    children: dict[int, list[int]] = {}
    for s, p in enumerate(parent):
        children.setdefault(int(p), []).append(s)
    out = []
    for s, p in enumerate(parent):
        if p < 0:  # a top-level structure is never mistaken
            out.append(np.zeros(0, dtype=np.int64))
            continue
        g = int(parent[p])
        aunts = children.get(g, []) if g >= 0 else [int(p)]
        near = [c for a in aunts for c in children.get(a, []) if c != s]
        out.append(np.asarray(near, dtype=np.int64))
    return out


def confuse(stats: SectionStats, partners: list[np.ndarray], rate: float,
            rng: np.random.Generator) -> None:
    """The annotator takes a small structure for a sibling or cousin: the stain she sees in
    the one is booked to the other (per-pixel rates swapped, in place). Chance ``rate`` x
    exp(-pixels seen / CONFUSE_PIXELS), so it hits the smallest structures; their common
    ancestor keeps its stain, hence coarse calls and hierarchy consistency are untouched."""
    if rate <= 0:
        return
    npix = stats.npix[2:]
    u = rng.random((2, len(npix)))
    per = [a[2:] / np.maximum(npix, 1) for a in (stats.cov, stats.sum_e, stats.sum_d)]
    for s in np.flatnonzero((npix > 0) & (u[0] < rate * np.exp(-npix / CONFUSE_PIXELS))):
        near = partners[s]
        near = near[npix[near] > 0]
        if len(near) == 0:
            continue
        t = int(near[int(u[1, s] * len(near))])
        for arr in per:
            arr[s], arr[t] = arr[t], arr[s]
    for arr, rates in zip((stats.cov, stats.sum_e, stats.sum_d), per, strict=True):
        arr[2:] = rates * npix


def annotate(stats: SectionStats, subtree: sp.csr_matrix, parent: np.ndarray,
             kind: np.ndarray, gain: float, flip_rate: float, faint_dropout: float,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pattern, intensity and density codes per structure (-1 = unknown/NULL): indices
    into :data:`ishwh.vocab.PATTERNS` and :data:`ishwh.vocab.GRADES`.

    ``kind`` is the pattern kind of the anchor expressing each structure's own label.
    """
    S = subtree.shape[0]
    npix = subtree @ stats.npix[2:]
    cov = subtree @ stats.cov[2:]
    sum_e = subtree @ stats.sum_e[2:]
    sum_d = subtree @ stats.sum_d[2:]
    seen = npix > 0
    frac = np.where(seen, cov / np.maximum(npix, 1), 0.0)
    mean_e = sum_e / np.maximum(cov, 1) * gain
    mean_d = sum_d / np.maximum(cov, 1)
    truth = seen & (frac >= MIN_AREA) & (cov >= 2) & (mean_e >= 0.06)
    called = truth.copy()
    u = rng.random((3, S))
    called &= ~((mean_e < FAINT) & (u[0] < faint_dropout))   # faint -> undetected
    # missed: a few percent, more often in small structures (few pixels to look at), so
    # fine levels are noisier than coarse ones, as in real annotations
    called &= ~(u[1] < flip_rate + SMALL_MISS * np.exp(-npix / SMALL_PIXELS))
    # perceived levels
    inten = np.where(mean_e < 0.35, 1, np.where(mean_e < 0.65, 2, 3))
    dval = mean_d * np.minimum(1.0, frac / 0.5)
    dens = np.where(dval < 0.3, 1, np.where(dval < 0.6, 2, 3))
    pat = np.where((frac >= 0.7) & (kind == FULL), 1, np.where(kind == GRADIENT, 3, 2))
    # hierarchy: a parent is expressed when a child is (children come after parents)
    for s in range(S - 1, -1, -1):
        p = parent[s]
        if p >= 0 and called[s] and not called[p] and seen[p]:
            called[p] = True
            inten[p], dens[p], pat[p] = inten[s], 1, 2
    # spurious calls, after the roll-up so they stay consistent with it: a sub-region of an
    # expressed parent over-called (or, rarely, a top-level structure)
    parent_called = np.array([called[p] if p >= 0 else False for p in parent])
    rate = np.where(parent_called, flip_rate, np.where(parent < 0, flip_rate / 3, 0.0))
    spurious = seen & ~called & (u[2] < rate)
    called |= spurious
    inten[spurious], dens[spurious], pat[spurious] = 1, 1, 2
    pattern = np.where(called, pat, 0)
    intensity = np.where(called, inten, 0)
    density = np.where(called, dens, 0)
    for arr in (pattern, intensity, density):
        arr[~seen] = -1
    return pattern.astype(np.int8), intensity.astype(np.int8), density.astype(np.int8)


def gene_tasks(n_tasks: int, n_programs: int, rng: np.random.Generator) -> list[np.ndarray]:
    """GO-like tasks: each is tied to 1-3 expression programs."""
    return [rng.choice(n_programs, size=int(rng.integers(1, 4)), replace=False)
            for _ in range(n_tasks)]


def gene_task_labels(programs: list[int], tasks: list[np.ndarray], rng: np.random.Generator,
                     flip: float = 0.05) -> np.ndarray:
    """0/1 per task: the gene uses one of the task's programs, with a few curation errors."""
    lab = np.array([bool(set(programs) & set(t.tolist())) for t in tasks])
    return lab ^ (rng.random(len(tasks)) < flip)
