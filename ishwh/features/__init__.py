"""Feature extraction: CNN transfer features, dense-SIFT bag of words, expression grids.

``featurize(db_path, extractor=...)`` fills ``feature_sets`` / ``experiment_features``;
the extractors themselves (:class:`CNNFeatures`, :class:`BowFeatures`, :class:`GridFeatures`)
are plain scikit-learn-style transformers that know nothing about the warehouse.

Names are imported lazily: worker processes import ``ishwh.features.imageio`` / ``.bow``
without paying for torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "DEFAULT_BACKBONE": "backbone",
    "LayerTap": "backbone",
    "load_backbone": "backbone",
    "BowFeatures": "bow",
    "bow_dim": "bow",
    "DEFAULT_IMAGE_SIZE": "cnn",
    "DEFAULT_LAYERS": "cnn",
    "CNNFeatures": "cnn",
    "GridFeatures": "grid",
    "FeaturizeOptions": "options",
    "FeaturizeResult": "options",
    "cnn_set_name": "cnn_runner",
    "featurize": "pipeline",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'ishwh.features' has no attribute {name!r}")
    return getattr(importlib.import_module(f"ishwh.features.{_WHERE[name]}"), name)
