"""``featurize``: the one entry point that moves sections and grids from the warehouse
through an extractor into ``feature_sets`` / ``experiment_features``.

The work per extractor lives in its runner: :mod:`.cnn_runner`, :mod:`.bow_runner`,
:mod:`.grid_runner` (structure features: :mod:`ishwh.atlas.runner`); what they share
(scope, set rows, chunks, sections) in :mod:`.sets`; the options and the result in
:mod:`.options`. The extractors (:mod:`.cnn`, :mod:`.bow`, :mod:`.grid`) know nothing
about DuckDB.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from ishwh import warehouse
from ishwh.errors import InvalidInput
from ishwh.features.bow_runner import SIFT_IMPLS, bow_set_name, run_bow
from ishwh.features.cnn_runner import CnnPlan, cnn_finish, cnn_plan, cnn_set_name, run_cnn
from ishwh.features.grid_runner import run_grid
from ishwh.features.options import (
    DEFAULT_CHUNK,
    ENGINES,
    EXTRACTORS,
    ON_ERROR,
    FeaturizeOptions,
    FeaturizeResult,
)
from ishwh.progress import Progress

__all__ = ["DEFAULT_CHUNK", "ENGINES", "EXTRACTORS", "ON_ERROR", "SIFT_IMPLS", "CnnPlan",
           "FeaturizeOptions", "FeaturizeResult", "bow_set_name", "cnn_finish", "cnn_plan",
           "cnn_set_name", "featurize"]


def featurize(db_path: str | os.PathLike, options: FeaturizeOptions | None = None, *,
              progress: Progress | None = None, **fields: Any) -> FeaturizeResult:
    """Compute (or finish) feature sets for the experiments of a warehouse.

    Parameters
    ----------
    db_path: the warehouse file.
    options: a :class:`~ishwh.features.options.FeaturizeOptions`; or its fields as keyword
        arguments (``featurize(db, extractor="bow", device="cpu")``), not both. In short:
        ``extractor`` ``cnn`` (one set per layer x pool, named ``<backbone>.<layer>.<pool>``),
        ``bow`` (set ``bow``, 10,521 dims; ``bow={"n_words": N, "step": S}`` makes
        ``bow.w<N>.s<S>``; a stage with fewer non-zero SIFT descriptors than words is skipped
        and named, see docs/bag_of_words.md), ``grid`` (set ``grid``, nx*ny*nz dims) or
        ``atlas`` (structure features); ``engine="ray"`` computes every set on a Ray
        cluster (:mod:`ishwh.ray.featurize`): same sets, same vectors as the local engine.
    progress: where to report phases and skipped images (:class:`ishwh.progress.Progress`;
        the command line passes a rich bar on stderr); None reports nothing.

    Returns what was done (:class:`FeaturizeResult`: the set names, rows written, problems).
    """
    if options is not None and fields:
        raise InvalidInput("give featurize either options or their fields, not both: "
                           + ", ".join(sorted(fields)), param="options")
    opts = options if options is not None else FeaturizeOptions(**fields)
    if progress is not None:
        opts = dataclasses.replace(opts, progress=progress)
    opts = opts.checked()
    result = FeaturizeResult(names=[])
    path = Path(db_path)
    with warehouse.connect(path) as con:
        if opts.ray is not None:  # the Ray engine (an optional extra): ishwh/ray/featurize.py
            from ishwh.ray.featurize import run as run_on_ray  # noqa: PLC0415

            run_on_ray(con, path, opts, result)
            return result
        if opts.extractor == "atlas":  # structure features: ishwh/atlas/runner.py
            from ishwh.atlas.runner import run_atlas as run  # noqa: PLC0415
        else:
            run = {"cnn": run_cnn, "bow": run_bow, "grid": run_grid}[opts.extractor]
        run(con, path, opts, result)
    return result

