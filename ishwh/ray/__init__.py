"""The Ray engine: ``featurize --engine ray`` and ``annotate --engine ray`` on a Ray cluster.

The science is the local engine's (the same extractor and scoring functions); this package
holds only the plumbing:

* :mod:`.cluster`: options, connecting (or starting a private local cluster), quiet Ray;
* :mod:`.sources`: reading section files on the workers (a shared folder or a URL);
* :mod:`.partitions`: partition files beside the warehouse and the Ray Data job that makes
  the missing ones (read tasks on CPUs, a pool of extractor actors);
* :mod:`.featurize`: each extractor (cnn, bow, grid, atlas) on that job;
* :mod:`.annotate`: stored models scored in Ray tasks.

Ray is an optional extra: nothing outside this package imports it, and this package imports
it only when a job runs (:func:`~.cluster.import_ray` says how to install it).
"""

from ishwh.ray.cluster import INSTALL_HINT, RayOptions, import_ray

__all__ = ["INSTALL_HINT", "RayOptions", "import_ray"]
