"""CNN feature sets in the warehouse: the plan (set names, parameters, chunks, what is
missing), the section loop (decoding in worker processes, the network here), and the
per-chunk write. The extractor itself is :class:`ishwh.features.cnn.CNNFeatures`; the Ray
engine (:mod:`ishwh.ray.featurize`) shares the plan and the finish."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ishwh import store, warehouse
from ishwh.errors import InvalidInput
from ishwh.features import sets
from ishwh.features.backbone import bundled_weights_path, weights_digest
from ishwh.features.cnn import (
    DEFAULT_IMAGE_SIZE,
    DEFAULT_LAYERS,
    CNNFeatures,
    pool_sections,
    resolve_device,
)
from ishwh.features.imageio import decode_batch, ordered_map
from ishwh.features.options import DEFAULT_CHUNK, FeaturizeOptions, FeaturizeResult
from ishwh.features.sets import Section


def cnn_set_name(backbone: str, layer: str, pool: str, image_size: int = DEFAULT_IMAGE_SIZE,
                 spatial: int | None = None) -> str:
    """``<backbone>.<layer>.<pool>``; non-default input size / spatial grid add a suffix."""
    name = f"{backbone}.{layer}.{pool}"
    if spatial is not None:
        name += f".s{spatial}"
    if image_size != DEFAULT_IMAGE_SIZE:
        name += f".{image_size}px"
    return name


@dataclass
class CnnPlan:
    """What a CNN run has to do; the local and the Ray engine share it (and its sets)."""

    ext: CNNFeatures
    names: dict[tuple[str, str], str]  # (layer, pool) -> set name
    fsids: dict[str, int]
    chunks: list[list[int]]  # the scope cut into chunks (the unit of commit / partition)
    todo: dict[int, dict[str, set[int]]]  # chunk -> set name -> experiments it lacks
    params: dict[str, dict]  # set name -> its feature_sets params
    started: float
    failed: set[int] = field(default_factory=set)


def cnn_plan(con, opts: FeaturizeOptions, result: FeaturizeResult,
             before_write: Callable[[list[int]], None] | None = None) -> CnnPlan | None:
    """The CNN sets, chunks and missing pairs; ``None`` when there is nothing to do (then
    no network is loaded). ``before_write(scope ids)`` runs before the network is loaded and
    any set is created (the Ray engine connects and checks its workers there)."""
    layers = list(dict.fromkeys(opts.layers or DEFAULT_LAYERS))
    pools = list(dict.fromkeys(opts.pools))
    backbone, size, spatial = opts.backbone, opts.image_size, opts.spatial
    names = {(lay, p): cnn_set_name(backbone, lay, p, size, spatial) for lay in layers
             for p in pools}
    result.names = list(names.values())
    _, scope = sets.scope(con, opts.stages)
    weights = Path(opts.weights) if opts.weights else None
    if weights is not None and not weights.is_file():
        raise InvalidInput(f"weights file {weights} does not exist")

    # Nothing to do? Answer without loading a network.
    existing = {n: sets.existing_set(con, n) for n in names.values()}
    scope_ids = [int(e) for e in scope.column("experiment_id").to_pylist()] if scope else []
    if all(existing.values()):
        have = sets.done(con, [v[0] for v in existing.values()])
        if all(set(scope_ids) <= have[v[0]] for v in existing.values()):
            result.finished = [n for n, v in existing.items() if v[2] is not None]
            return None

    t0 = time.perf_counter()
    if before_write is not None:
        before_write(scope_ids)
    device = opts.device
    resolve_device(device)
    digest = weights_digest(weights if weights is not None else bundled_weights_path())
    # CPU: small batches keep the activations in cache (batch 4 is ~1.5x faster per image
    # than 16 for efficientnet_lite0); GPU: large batches.
    batch_size = opts.batch_size or (128 if resolve_device(device).type == "cuda" else 4)
    ext = CNNFeatures(backbone=backbone, layers=layers, pools=pools, image_size=size,
                      spatial=spatial, weights=str(weights) if weights else None, device=device,
                      batch_size=batch_size).fit()
    params = {name: {"backbone": backbone, "layer": lay, "pool": p, "image_size": size,
                     "spatial": spatial, "weights_sha256": digest}
              for (lay, p), name in names.items()}
    fsids: dict[str, int] = {}
    for (lay, _), name in names.items():
        fsids[name] = sets.ensure_set(con, name, "cnn", ext.dims_[lay], params[name])

    chunks = sets.chunks(scope_ids, opts.chunk_size or DEFAULT_CHUNK)
    have = sets.done(con, list(fsids.values()))
    # For each chunk that lacks something: which (set, experiment) pairs to write.
    todo: dict[int, dict[str, set[int]]] = {}
    for c, ids in enumerate(chunks):
        need = {n: set(ids) - have[f] for n, f in fsids.items()}
        if any(need.values()):
            todo[c] = need
    return CnnPlan(ext, names, fsids, chunks, todo, params, t0)


def cnn_finish(con, plan: CnnPlan, result: FeaturizeResult) -> None:
    """``finished_at`` on the sets that now hold every experiment that can have them."""
    result.finished = sets.finish(con, plan.fsids, sets.eligible(con), plan.failed)


def run_cnn(con, db_path: Path, opts: FeaturizeOptions, result: FeaturizeResult) -> None:
    """Compute the missing CNN vectors of the sets ``opts`` names."""
    plan = cnn_plan(con, opts, result)
    if plan is None:
        return
    if plan.todo:
        chunk_of = {e: c for c in plan.todo for e in plan.chunks[c]}
        secs = sets.sections(con, warehouse.images_dir(db_path),
                             [e for c in sorted(plan.todo) for e in plan.chunks[c]])
        workers = sets.default_workers() if opts.workers is None else opts.workers
        result.timings["setup"] = time.perf_counter() - plan.started
        t1 = time.perf_counter()
        with sets.cpu_threads(plan.ext.device_.type, workers):
            _cnn_loop(con, plan, secs, chunk_of, opts, result, workers)
        result.timings["compute"] = time.perf_counter() - t1
    cnn_finish(con, plan, result)


def cnn_batches(sections: Sequence[Section], chunk_of: dict[int, int], batch_size: int
                ) -> tuple[list[list[int]], list[int]]:
    """Batches of section indices that never cross a chunk; and each batch's chunk."""
    batches, owner = [], []
    start = 0
    while start < len(sections):
        c = chunk_of[sections[start].experiment_id]
        end = start
        while end < len(sections) and chunk_of[sections[end].experiment_id] == c:
            end += 1
        for b in range(start, end, batch_size):
            batches.append(list(range(b, min(b + batch_size, end))))
            owner.append(c)
        start = end
    return batches, owner


def _cnn_loop(con, plan: CnnPlan, sections: list[Section], chunk_of: dict[int, int],
              opts: FeaturizeOptions, result: FeaturizeResult, workers: int) -> None:
    ext = plan.ext
    batches, owner = cnn_batches(sections, chunk_of, ext.batch_size)
    last_batch_of = {c: i for i, c in enumerate(owner)}
    jobs = (([(i, sections[i].path, sections[i].width, sections[i].height) for i in batch],
             ext.image_size) for batch in batches)
    # Per experiment: the rows of each layer (section order), filled batch by batch.
    rows: dict[int, dict[str, list[np.ndarray]]] = {}
    # Decoding runs ahead in worker processes while the network works on this batch.
    with sets.progress_phase(opts.progress, "featurize cnn", len(sections)) as advance, \
            closing(ordered_map(decode_batch, jobs, workers)) as decoded:
        for b, (idx, imgs, errors) in enumerate(decoded):
            for i, msg in errors:
                sets.unreadable(sections[i], msg, opts.on_error, result, opts.progress)
            if imgs is not None:
                feats = ext.section_features(imgs)
                for j, i in enumerate(idx):
                    per = rows.setdefault(sections[i].experiment_id, {})
                    for lay, v in feats.items():
                        per.setdefault(lay, []).append(v[j])
            advance(len(idx) + len(errors))
            c = owner[b]
            if last_batch_of[c] == b:
                write_cnn_chunk(con, plan, c, rows, result)
                for e in plan.chunks[c]:
                    rows.pop(e, None)


def write_cnn_chunk(con, plan: CnnPlan, c: int, rows: dict[int, dict[str, list[np.ndarray]]],
                    result: FeaturizeResult) -> None:
    """Pool the section rows of chunk ``c`` per experiment and write its missing vectors in
    one transaction (an experiment with no row at all fails, named in ``result``)."""
    ids, need = plan.chunks[c], plan.todo[c]
    sets.no_section_read(ids, rows, set(), plan.failed, result)
    with warehouse.transaction(con):
        for (lay, p), name in plan.names.items():
            write = [e for e in ids if e in need[name] and e in rows]
            if not write:
                continue
            x = np.stack([pool_sections(np.stack(rows[e][lay]), p) for e in write])
            store.write_experiment_features(con, plan.fsids[name], write, x)
            result.written[name] = result.written.get(name, 0) + len(write)
