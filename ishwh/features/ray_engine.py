"""Where the Ray engine was: it is :mod:`ishwh.ray` now (kept for the pipeline's hook)."""

from ishwh.ray.cluster import RayOptions, import_ray
from ishwh.ray.featurize import run_cnn
from ishwh.ray.partitions import staging_dir

__all__ = ["RayOptions", "import_ray", "run_cnn", "staging_dir"]
