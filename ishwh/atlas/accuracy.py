"""Registration accuracy against a known truth: Dice of projected structure masks.

A structure's mask on a section is every pixel whose label lies in its subtree. Given the
labels a registration projects onto the image and the true labels there, the Dice of every
structure comes from one joint histogram of (projected leaf, true leaf) pairs and the
(structures x leaves) subtree matrix, so all levels are scored at once.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


class StructureDice:
    """Dice of every structure's mask, for one ontology and one set of leaf labels."""

    def __init__(self, subtree: sp.spmatrix, leaf_ids: np.ndarray, level: np.ndarray,
                 min_pixels: int = 50):
        self.sm = (sp.csr_matrix(subtree).toarray() > 0).astype(np.float64)   # (S, L)
        self.leaf_ids = np.asarray(leaf_ids)
        self.level = np.asarray(level)
        self.min_pixels = min_pixels

    def score(self, pred_labels: np.ndarray, true_labels: np.ndarray
              ) -> list[tuple[int, float]]:
        """``(level, dice)`` of every structure covering >= ``min_pixels`` true pixels."""
        n_l = self.leaf_ids.size
        p_i = np.searchsorted(self.leaf_ids, pred_labels).clip(0, n_l - 1)
        t_i = np.searchsorted(self.leaf_ids, true_labels).clip(0, n_l - 1)
        both = np.bincount((p_i * n_l + t_i).ravel(),
                           minlength=n_l * n_l).reshape(n_l, n_l).astype(np.float64)
        ap, at = self.sm @ both.sum(1), self.sm @ both.sum(0)
        inter = ((self.sm @ both) * self.sm).sum(1)
        return [(int(self.level[s]), float(2 * inter[s] / (ap[s] + at[s])))
                for s in np.flatnonzero(at >= self.min_pixels)]
