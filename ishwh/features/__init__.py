"""Feature extraction: CNN transfer features, dense-SIFT bag of words, expression grids.

``featurize(db_path, extractor=...)`` fills ``feature_sets`` / ``experiment_features``;
the extractors themselves (:class:`CNNFeatures`, :class:`BowFeatures`, :class:`GridFeatures`)
are plain scikit-learn-style transformers that know nothing about the warehouse.
"""

from ishwh.features.backbone import DEFAULT_BACKBONE, LayerTap, load_backbone
from ishwh.features.bow import BowFeatures, bow_dim
from ishwh.features.cnn import DEFAULT_IMAGE_SIZE, DEFAULT_LAYERS, CNNFeatures
from ishwh.features.grid import GridFeatures
from ishwh.features.pipeline import FeaturizeResult, cnn_set_name, featurize, featurize_report

__all__ = [
    "DEFAULT_BACKBONE",
    "DEFAULT_IMAGE_SIZE",
    "DEFAULT_LAYERS",
    "BowFeatures",
    "CNNFeatures",
    "FeaturizeResult",
    "GridFeatures",
    "LayerTap",
    "bow_dim",
    "cnn_set_name",
    "featurize",
    "featurize_report",
    "load_backbone",
]
