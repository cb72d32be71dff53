"""Grid baseline: the coarse 3-D expression grid of an experiment, flattened.

Allen's grid files store ``-1`` for voxels without data (outside the section stack or
masked). Like Allen's own analyses we treat them as missing and give them 0 (no measured
expression), so they do not pull a linear classifier in either direction; any other
negative or NaN value is treated the same way. Order: x fastest (as stored), length
nx*ny*nz. All experiments of one feature set must share one grid shape.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin


def clean_energy(energy: np.ndarray) -> np.ndarray:
    """One flattened grid with missing voxels (-1, negative, NaN) set to 0, as float32."""
    x = np.asarray(energy, dtype=np.float32).reshape(-1).copy()
    x[~(x >= 0)] = 0.0  # also catches NaN
    return x


class GridFeatures(BaseEstimator, TransformerMixin):
    """Flatten expression grids of one shape into a feature matrix.

    Parameters
    ----------
    shape: the (nx, ny, nz) every grid must have; ``None`` = learn it in :meth:`fit`.
    """

    def __init__(self, shape: tuple[int, int, int] | None = None):
        self.shape = shape

    def fit(self, X: Sequence[np.ndarray], y=None) -> GridFeatures:  # noqa: N803
        """Learn the grid length from the first grid (or from ``shape``)."""
        if self.shape is not None:
            self.dim_ = int(np.prod(self.shape))
        else:
            if len(X) == 0:
                raise ValueError("no grids to fit on")
            self.dim_ = int(np.asarray(X[0]).size)
        return self

    def transform(self, X: Sequence[np.ndarray]) -> np.ndarray:  # noqa: N803
        """Grids -> (n, nx*ny*nz) float32 matrix."""
        if not hasattr(self, "dim_"):
            raise RuntimeError("GridFeatures is not fitted: call fit() first")
        out = np.zeros((len(X), self.dim_), dtype=np.float32)
        for i, g in enumerate(X):
            v = clean_energy(g)
            if v.size != self.dim_:
                raise ValueError(f"grid {i} has {v.size} voxels, expected {self.dim_}")
            out[i] = v
        return out
