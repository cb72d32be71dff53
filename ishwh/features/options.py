"""What a ``featurize`` call is asked (:class:`FeaturizeOptions`) and what it did
(:class:`FeaturizeResult`). The runners (:mod:`.cnn_runner`, :mod:`.bow_runner`,
:mod:`.grid_runner`) read the one; they fill the other."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ishwh.errors import InvalidInput
from ishwh.features.backbone import DEFAULT_BACKBONE
from ishwh.features.cnn import DEFAULT_IMAGE_SIZE, POOLS
from ishwh.progress import Progress

EXTRACTORS = ("cnn", "bow", "grid", "atlas")
ENGINES = ("local", "ray")
ON_ERROR = ("skip", "fail")
DEFAULT_CHUNK = 16  # experiments per commit (~250 sections of the real atlas)


@dataclass(frozen=True)
class FeaturizeOptions:
    """The options of one ``featurize`` call (see :func:`ishwh.features.featurize`).

    extractor: ``cnn``, ``bow``, ``grid`` or ``atlas``.
    layers: CNN module names (default :data:`ishwh.features.DEFAULT_LAYERS`); a
        comma-separated string is split.
    pools: pooling over the sections of an experiment: ``max`` and/or ``mean``.
    stages: restrict to these stages (default: all).
    device: ``auto``, ``cpu`` or ``cuda``.
    batch_size, workers: images per forward pass; decoding processes (0 = in-process).
    weights: weights file for the backbone (default: the bundled efficientnet_lite0 ones).
    image_size: network input side (the paper's 231).
    on_error: ``fail`` (stop at an unreadable image; committed chunks are kept) or ``skip``.
    backbone, spatial: the CNN backbone; a spatial grid of pooled cells (default: none).
    chunk_size: experiments per commit (default :data:`DEFAULT_CHUNK`).
    bow: bag-of-words parameters (``n_words``, ``step``, ``sift``, ...).
    atlas: structure-feature parameters: ``what`` (``stain`` and/or ``cnn``; default stain).
    engine: ``local`` or ``ray`` (every extractor on a Ray cluster; ``ray``: its
        :class:`~ishwh.ray.RayOptions` or their dict).
    progress: where phases and skipped images are reported (not part of what is computed).
    """

    extractor: str = "cnn"
    layers: Sequence[str] | None = None
    pools: Sequence[str] = ("max",)
    stages: Sequence[str] | None = None
    device: str = "auto"
    batch_size: int | None = None
    workers: int | None = None
    weights: str | os.PathLike | None = None
    image_size: int = DEFAULT_IMAGE_SIZE
    on_error: str = "fail"
    backbone: str = DEFAULT_BACKBONE
    spatial: int | None = None
    chunk_size: int | None = None
    bow: dict | None = None
    atlas: dict | None = None
    engine: str = "local"
    ray: Any = None
    progress: Progress | None = field(default=None, compare=False, repr=False)

    def checked(self) -> FeaturizeOptions:
        """These options validated and normalised (lists, Ray options); raises
        :class:`~ishwh.errors.InvalidInput` naming the bad parameter before any work."""
        from ishwh.device import resolve_device  # noqa: PLC0415

        if self.extractor not in EXTRACTORS:
            raise InvalidInput(f"extractor must be one of {', '.join(EXTRACTORS)}, "
                               f"got {self.extractor!r}", param="extractor")
        if self.engine not in ENGINES:
            raise InvalidInput(f"engine must be local or ray, got {self.engine!r}",
                               param="engine")
        ray = self.ray
        if self.engine == "ray":
            from ishwh.ray import RayOptions, import_ray  # noqa: PLC0415

            import_ray()  # says how to install Ray before any work
            ray = ray if isinstance(ray, RayOptions) else RayOptions(**(ray or {}))
            ray.check()
        elif ray is not None:
            raise InvalidInput("Ray options apply to the Ray engine only", param="ray")
        if self.on_error not in ON_ERROR:
            raise InvalidInput(f"on_error must be skip or fail, got {self.on_error!r}",
                               param="on_error")
        pools = [self.pools] if isinstance(self.pools, str) else list(self.pools)
        bad = [p for p in pools if p not in POOLS]
        if bad or not pools:
            raise InvalidInput(f"pool must be max and/or mean, got {', '.join(bad) or 'nothing'}",
                               param="pool")
        layers = self.layers
        if isinstance(layers, str):
            layers = [x.strip() for x in layers.split(",") if x.strip()]
        for label, v in (("batch_size", self.batch_size), ("chunk_size", self.chunk_size)):
            if v is not None and v < 1:
                raise InvalidInput(f"{label} must be >= 1, got {v}", param=label)
        if self.workers is not None and self.workers < 0:
            raise InvalidInput(f"workers must be >= 0, got {self.workers}", param="workers")
        if self.image_size < 32:
            raise InvalidInput(f"image_size must be >= 32, got {self.image_size}",
                               param="image_size")
        if self.spatial is not None and self.spatial < 1:
            raise InvalidInput(f"spatial must be >= 1, got {self.spatial}", param="spatial")
        if self.extractor in ("cnn", "bow"):
            resolve_device(self.device)  # reject --device cuda without a GPU before any work
        return dataclasses.replace(self, pools=pools, layers=layers, ray=ray)


@dataclass
class FeaturizeResult:
    """What a featurize call did: the feature sets, rows written, problems met."""

    names: list[str]
    written: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    # stages a set could not be made for, and why (bag of words: too few descriptors)
    skipped: dict[str, str] = field(default_factory=dict)
    # seconds: "setup" (loading the network, codebooks...) and "compute" (the section loop)
    timings: dict[str, float] = field(default_factory=dict)
    # engine ray: partitions "total", "computed" (this run) and "reused" (a killed run's)
    # and "first_sections" (sections of the first partition back; timings["first_partition"])
    partitions: dict[str, int] = field(default_factory=dict)

