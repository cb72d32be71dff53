"""``featurize --engine ray``: every extractor on the partition job of :mod:`.partitions`.

The science is the local engine's, called, not copied: the same plans (feature sets, their
parameters, chunks, what is missing; ``ishwh/features/*_runner.py``), the same extractors in
the actors (:class:`~ishwh.features.cnn.CNNFeatures` and
:func:`~ishwh.features.cnn.pool_sections`; dense SIFT and word counts of
:mod:`ishwh.features.bow` against the codebooks the local engine fits or stored;
:class:`~ishwh.features.grid.GridFeatures`), so the vectors equal the local engine's. Only
where the work runs differs; nothing reaches the warehouse before one final transaction
(bag of words: except each stage's codebooks, stored when made, as the local engine does).
Atlas (structure) features: the local plan (sets, projection, each stage's calibrated
registration model) on the driver; registration and structure pooling in the actors by
:meth:`~ishwh.atlas.runner.AtlasExtractor.compute`, the local engine's own chunk step.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import astuple, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ishwh import store, warehouse
from ishwh.progress import Progress, or_silent
from ishwh.ray.cluster import RayOptions, ray_session
from ishwh.ray.partitions import (
    Job,
    Partition,
    PartitionWorker,
    Section,
    read_partition,
    remove_partitions,
    run_job,
    staging_dir,
    take_problems,
    vectors_table,
)
from ishwh.ray.sources import image_name, image_root, preflight

# --------------------------------------------------------------------------- driver helpers


class _Cluster:
    """The connection of one job: made (and the workers' access to the images checked)
    only when the local engine's plan is about to write, so a job with nothing to do never
    starts Ray, and a bad address or unreadable images write nothing."""

    def __init__(self, stack: ExitStack, con: Any, opts: RayOptions, root: str | None):
        self.stack, self.con, self.opts, self.root = stack, con, opts, root
        self.ray: Any = None

    def connect(self, scope_ids: list[int]) -> None:
        from ishwh.features import sets  # noqa: PLC0415

        if self.ray is None:
            self.ray = self.stack.enter_context(ray_session(self.opts.address))
        if self.root is not None:
            first = sets.sections(self.con, Path("."), scope_ids[:1])
            if first:
                preflight(self.ray, self.root, first[0].path)


@contextmanager
def _cluster(con: Any, opts: Any, db_path: Path, images: bool = True
             ) -> Iterator[tuple[_Cluster, Progress]]:
    ray_opts: RayOptions = opts.ray
    root = image_root(db_path, ray_opts.images) if images else None
    with ExitStack() as stack:
        yield _Cluster(stack, con, ray_opts, root), or_silent(opts.progress)


def _sections_of(con: Any, root: str, experiments: dict[int, list[int]]
                 ) -> tuple[dict[int, list[Section]], Callable[[int, str], str]]:
    """Each partition's sections (paths relative to the image source), and how a skipped
    section is described (the local engine's words, the file as the workers name it)."""
    from ishwh.features import sets  # noqa: PLC0415

    rows = sets.sections(con, Path("."), [e for c in sorted(experiments)
                                          for e in experiments[c]])
    by_exp: dict[int, list[Section]] = {}
    by_id = {}
    for s in rows:
        by_exp.setdefault(s.experiment_id, []).append(Section(*astuple(s)))
        by_id[s.section_id] = s

    def describe(section_id: int, why: str) -> str:
        sec = by_id[section_id]
        return sets.problem(replace(sec, path=image_name(root, sec.path)), why)

    return {c: [s for e in ids for s in by_exp.get(e, [])]
            for c, ids in experiments.items()}, describe


def _gpus(ray: Any, opts: RayOptions) -> float:
    if opts.gpus_per_worker is not None:
        return opts.gpus_per_worker
    return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0


# --------------------------------------------------------------------------- CNN


class CnnWorker(PartitionWorker):
    """One :class:`CNNFeatures` network; per experiment, its sections pooled (max / mean)
    into one vector per (layer, pool) (columns ``v<k>`` in ``keys`` order)."""

    def __init__(self, cnn_params: dict, threads: int):
        import torch  # noqa: PLC0415

        from ishwh.features.cnn import CNNFeatures  # noqa: PLC0415

        torch.set_num_threads(max(1, threads))
        self.ext = CNNFeatures(**cnn_params).fit()
        self.keys = [(lay, p) for lay in self.ext.layers_ for p in self.ext.pools]

    def compute(self, part: Partition) -> dict[str, pa.Table]:
        from ishwh.features.cnn import pool_sections  # noqa: PLC0415

        ext = self.ext
        # Batches of consecutive sections of the partition, as the local engine forms them.
        idx = sorted(part.images)
        rows: dict[str, list[np.ndarray]] = {lay: [] for lay in ext.layers_}
        for b in range(0, len(idx), ext.batch_size):
            imgs = np.stack([part.images[i] for i in idx[b:b + ext.batch_size]])
            for lay, v in ext.section_features(imgs).items():
                rows[lay].append(v)
        feats = {lay: np.concatenate(v) for lay, v in rows.items() if v}
        pos = {i: k for k, i in enumerate(idx)}
        ok, vecs = [], [[] for _ in self.keys]
        for e in part.experiments:
            mine = [pos[i] for i in part.sections_of(e)]
            ok.append(bool(mine))
            for k, (lay, p) in enumerate(self.keys):
                vecs[k].append(pool_sections(feats[lay][mine], p) if mine
                               else np.zeros(ext.dims_[lay], np.float32))
        return {"experiments": vectors_table(part.experiments, ok,
                                             [np.stack(v) for v in vecs])}


def run_cnn(con: Any, db_path: Path, opts: dict, result: Any) -> None:
    """The CNN sets of the local engine's plan (:func:`~ishwh.features.cnn_runner.cnn_plan`),
    computed on Ray and ingested in one transaction. ``opts``: the
    :class:`~ishwh.features.options.FeaturizeOptions`, ``opts.ray`` a :class:`RayOptions`."""
    from ishwh.features import cnn_runner  # noqa: PLC0415

    ray_opts: RayOptions = opts.ray
    with _cluster(con, opts, db_path) as (cluster, progress):
        plan = cnn_runner.cnn_plan(con, opts, result, before_write=cluster.connect)
        if plan is None:
            return
        ext = plan.ext
        keys = [(lay, p) for lay in ext.layers_ for p in ext.pools]
        names = [plan.names[k] for k in keys]
        experiments = {c: plan.chunks[c] for c in sorted(plan.todo)}
        sections, describe = _sections_of(con, cluster.root, experiments)
        gpus = _gpus(cluster.ray, ray_opts)
        device = "cuda" if gpus > 0 else "cpu"
        cnn_params = dict(backbone=ext.backbone, layers=list(ext.layers_),
                          pools=list(ext.pools), image_size=ext.image_size, spatial=ext.spatial,
                          weights=ext.weights, device=device,
                          batch_size=opts.batch_size or (128 if device == "cuda" else 4))
        job = Job("cnn", {"sets": names, "params": [plan.params[n] for n in names]},
                  experiments, sections, {}, CnnWorker,
                  (cnn_params, max(1, math.ceil(ray_opts.cpus_per_worker))),
                  "cnn", {"size": ext.image_size}, describe, gpus)
        result.timings["setup"] = time.perf_counter() - plan.started
        files = run_job(cluster.ray, job, staging_dir(db_path), ray_opts, cluster.root,
                        opts.on_error, progress, result)
    with warehouse.transaction(con):
        for c in sorted(plan.todo):
            tables = read_partition(files[c])
            good = take_problems(tables, describe, result, progress, plan.failed)
            exp = tables["experiments"]
            ids = exp.column("experiment_id").to_pylist()
            for k, name in enumerate(names):
                write = [i for i, e in enumerate(ids) if e in good and e in plan.todo[c][name]]
                if write:
                    x = store.list_array_to_matrix(exp.column(f"v{k}"))[write]
                    store.write_experiment_features(con, plan.fsids[name],
                                                    [ids[i] for i in write], x)
                    result.written[name] = result.written.get(name, 0) + len(write)
    cnn_runner.cnn_finish(con, plan, result)
    remove_partitions(staging_dir(db_path), list(files.values()))


# --------------------------------------------------------------------------- bag of words


class BowWorker(PartitionWorker):
    """Dense SIFT and word counts against the stage's codebooks (OpenCV, or torch when the
    set was made with it), per section; the section counts pooled per sagittal interval
    into the experiment vector (:mod:`ishwh.features.bow`)."""

    def __init__(self, p: dict, centers: dict[str, list[np.ndarray]], device: str):
        import cv2  # noqa: PLC0415

        cv2.setNumThreads(1)
        self.p, self.centers, self.sift = p, centers, None
        if p["sift"] == "torch":
            import torch  # noqa: PLC0415

            from ishwh.features.sift_torch import TorchDenseSift  # noqa: PLC0415

            torch.set_num_threads(1)
            self.sift = TorchDenseSift(p["sizes"], p["step"], torch.device(device))
            self.on_device = {s: self.sift.codebooks(c) for s, c in centers.items()}

    def counts(self, gray: np.ndarray, stage: str) -> np.ndarray:
        from ishwh.features import bow  # noqa: PLC0415

        if self.sift is not None:
            return self.sift.section_counts(gray, self.on_device[stage])
        return bow.section_counts(bow.dense_sift(gray, self.p["sizes"], self.p["step"]),
                                  self.centers[stage])

    def compute(self, part: Partition) -> dict[str, pa.Table]:
        from ishwh.features import bow  # noqa: PLC0415

        n_int = self.p["n_intervals"]
        dim = bow.bow_dim(self.p["n_words"], len(self.p["sizes"]), n_int)
        counts = {i: self.counts(img, part.extra) for i, img in part.images.items()}
        ok, vecs, sec_ids, sec_rows = [], [], [], []
        for e in part.experiments:
            mine = part.sections_of(e)
            ok.append(bool(mine))
            if not mine:
                vecs.append(np.zeros(dim, np.float32))
                continue
            x = np.stack([counts[i] for i in mine])
            iv = bow.interval_index([part.sections[i].position for i in mine],
                                    [part.sections[i].section_number for i in mine], n_int)
            vecs.append(bow.experiment_vector(x, iv, n_int))
            sec_ids += [part.sections[i].section_id for i in mine]
            sec_rows.append(x)
        x = np.concatenate(sec_rows) if sec_rows else np.zeros((0, dim // n_int), np.float32)
        counts_col = vectors_table(sec_ids, [True] * len(sec_ids), [x]).column("v0")
        sections = pa.table({
            "section_id": pa.array(sec_ids, pa.int64()),
            "experiment_id": pa.array([part.sections[i].experiment_id for e in part.experiments
                                       for i in part.sections_of(e)], pa.int64()),
            "counts": counts_col})
        return {"experiments": vectors_table(part.experiments, ok, [np.stack(vecs)]),
                "sections": sections}


def run_bow(con: Any, db_path: Path, opts: Any, result: Any) -> None:
    """A bag-of-words set on Ray: each stage's codebooks made (or read) on the driver as the
    local engine makes them (:func:`~ishwh.features.bow_runner.stage_codebooks`); the words
    of every section counted in the actor pool; section counts and experiment vectors
    ingested in one transaction; stages marked and the set finished as locally."""
    from ishwh.features import bow_runner, sets  # noqa: PLC0415
    from ishwh.features.options import DEFAULT_CHUNK  # noqa: PLC0415

    stages, scope = sets.scope(con, opts.stages)
    scope_ids = [int(e) for e in scope.column("experiment_id").to_pylist()] if scope else []
    stage_of = dict(zip(scope_ids, scope.column("stage").to_pylist(), strict=True)) \
        if scope else {}
    asked = opts.bow or {}
    found = sets.existing_set(con, bow_runner.bow_set_name(
        asked.get("n_words", bow_runner.bowmod.N_WORDS),
        asked.get("step", bow_runner.bowmod.STEP)))
    have = sets.done(con, [found[0]])[found[0]] if found else set()
    experiments: dict[int, list[int]] = {}
    with _cluster(con, opts, db_path) as (cluster, progress):
        if set(scope_ids) - have:
            cluster.connect(scope_ids)  # before the set or a codebook is written
        plan = bow_runner.bow_plan(con, opts, result)
        done = sets.done(con, [plan.fsid])[plan.fsid]
        stage_ids = {st: [e for e in scope_ids if stage_of[e] == st] for st in stages}
        extra: dict[int, str] = {}
        centers: dict[str, list[np.ndarray]] = {}
        for stage, ids in stage_ids.items():
            chunks = [c for c in sets.chunks(ids, opts.chunk_size or DEFAULT_CHUNK)
                      if set(c) - done]
            if not chunks:
                continue
            try:
                centers[stage], _ = bow_runner.stage_codebooks(
                    con, plan, stage, ids, warehouse.images_dir(db_path), opts, result)
            except bow_runner.StageTooSmall as exc:
                bow_runner.skip_stage(con, plan, exc, opts, result)
                continue
            for c in chunks:
                extra[len(experiments)] = stage
                experiments[len(experiments)] = c
        if experiments:
            sections, describe = _sections_of(con, cluster.root, experiments)
            gpus = _gpus(cluster.ray, opts.ray) if plan.p["sift"] == "torch" else 0.0
            # The codebooks are part of the job: other codebooks, other partition files.
            key = {"set": plan.name, "params": plan.p, "codebooks": {
                st: [float(np.asarray(c, np.float64).sum()) for c in cs]
                for st, cs in centers.items()}}
            job = Job("bow", key, experiments, sections, extra, BowWorker,
                      (plan.p, centers, "cuda" if gpus > 0 else "cpu"), "bow",
                      {"downsample": plan.p["downsample"]}, describe, gpus)
            files = run_job(cluster.ray, job, staging_dir(db_path), opts.ray, cluster.root,
                            opts.on_error, progress, result)
    if experiments:
        with warehouse.transaction(con):
            for c in sorted(experiments):
                _ingest_bow(con, plan, read_partition(files[c]), done, describe, result,
                            progress)
        remove_partitions(staging_dir(db_path), list(files.values()))
    done = sets.done(con, [plan.fsid])[plan.fsid]
    for stage, ids in stage_ids.items():
        if stage not in result.skipped and not set(ids) - plan.failed - done:
            bow_runner.mark_stage(con, plan.fsid, stage, "finished")
    bow_runner.bow_finish(con, plan, result)


def _ingest_bow(con: Any, plan: Any, tables: dict[str, pa.Table], done: set[int],
                describe: Callable[[int, str], str], result: Any, progress: Progress) -> None:
    """One partition's section counts and experiment vectors (those not there yet)."""
    good = set(take_problems(tables, describe, result, progress, plan.failed))
    exp, secs = tables["experiments"], tables["sections"]
    ids = exp.column("experiment_id").to_pylist()
    write = [i for i, e in enumerate(ids) if e in good and e not in done]
    if not write:
        return
    owner = secs.column("experiment_id").to_numpy()
    keep = np.flatnonzero(np.isin(owner, [ids[i] for i in write]))
    store.insert_vectors(con, "section_features", {
        "feature_set_id": np.full(keep.size, plan.fsid, dtype=np.int32),
        "section_id": secs.column("section_id").to_numpy()[keep]},
        store.list_array_to_matrix(secs.column("counts"))[keep])
    store.write_experiment_features(con, plan.fsid, [ids[i] for i in write],
                                    store.list_array_to_matrix(exp.column("v0"))[write])
    result.written[plan.name] = result.written.get(plan.name, 0) + len(write)


# --------------------------------------------------------------------------- grid


class GridWorker(PartitionWorker):
    """:class:`~ishwh.features.grid.GridFeatures` on a partition's expression grids (read
    by the driver from the warehouse: the grids live there, not in files)."""

    def compute(self, part: Partition) -> dict[str, pa.Table]:
        from ishwh.features.grid import GridFeatures  # noqa: PLC0415

        shape, got, energy = part.extra
        x = GridFeatures(shape=shape).fit(None).transform(list(energy))
        return {"experiments": vectors_table(got, [True] * len(got), [x])}


def run_grid(con: Any, db_path: Path, opts: Any, result: Any) -> None:
    """Grid sets on Ray: the local engine's plan (:func:`~ishwh.features.grid_runner.grid_plan`),
    the grids read here and flattened in the actor pool (partitions of one set, so one
    shape), ingested in one transaction. The grids travel to the workers and back (a few kB
    each): this gains nothing over the local engine; it lets one cluster job run every
    extractor."""
    from ishwh.features import grid_runner, sets  # noqa: PLC0415

    with _cluster(con, opts, db_path, images=False) as (cluster, progress):
        plan = grid_runner.grid_plan(con, opts, result, before_write=cluster.connect)
        experiments: dict[int, list[int]] = {}
        extra: dict[int, Any] = {}
        for name in plan.fsids:
            ids = [e for e in plan.todo if plan.set_name(plan.stage_of[e]) == name]
            for c in sets.chunks(ids, plan.chunk_size):
                got, energy = grid_runner.grid_energies(con, c)
                extra[len(experiments)] = (plan.by_stage[plan.stage_of[c[0]]], got, energy)
                experiments[len(experiments)] = c
        if experiments:
            job = Job("grid", {"sets": sorted(plan.fsids)}, experiments,
                      {k: [] for k in experiments}, extra, GridWorker, (), None, {},
                      lambda section_id, why: why)
            files = run_job(cluster.ray, job, staging_dir(db_path), opts.ray, "",
                            opts.on_error, progress, result)
    if experiments:
        with warehouse.transaction(con):
            for k in sorted(experiments):
                exp = read_partition(files[k])["experiments"]
                ids = exp.column("experiment_id").to_pylist()
                name = plan.set_name(plan.stage_of[ids[0]])
                store.write_experiment_features(con, plan.fsids[name], ids,
                                                store.list_array_to_matrix(exp.column("v0")))
                result.written[name] = result.written.get(name, 0) + len(ids)
        remove_partitions(staging_dir(db_path), list(files.values()))
    grid_runner.grid_finish(con, plan, result)


# --------------------------------------------------------------------------- atlas


class AtlasWorker(PartitionWorker):
    """The local engine's :class:`~ishwh.atlas.runner.AtlasExtractor` (each stage's
    reference and calibrated registration model, the atlas.cnn network and projection):
    a partition (one chunk of one stage) registered, measured and pooled per experiment."""

    def __init__(self, state: dict, device: str, threads: int):
        import cv2  # noqa: PLC0415
        import torch  # noqa: PLC0415

        from ishwh.atlas.runner import AtlasExtractor  # noqa: PLC0415

        cv2.setNumThreads(1)
        torch.set_num_threads(max(1, threads))
        self.ext = AtlasExtractor.from_state(state, device)

    def compute(self, part: Partition) -> dict[str, pa.Table]:
        from ishwh.atlas import alignments  # noqa: PLC0415

        stage, need, stored = part.extra
        images = part.images
        out = self.ext.compute(stage, part.experiments, part.sections, stored, need,
                               lambda i: images[i][0] if i in images else None,
                               lambda i: images[i][1:])
        names = self.ext.names
        pos = {e: r for r, e in enumerate(part.experiments)}
        mats = []
        for name in names:  # one row per experiment of the partition (zeros: not written)
            x = np.zeros((len(part.experiments), self.ext.dim(name)), np.float32)
            if name in out.vectors:
                x[[pos[e] for e in out.written[name]]] = out.vectors[name]
            mats.append(x)
        ok = [e not in out.failed for e in part.experiments]
        seen = [out.seen.get(name, np.zeros(self.ext.ids.size, np.int64)) for name in names]
        return {"experiments": vectors_table(part.experiments, ok, mats),
                "seen": pa.table({"set": pa.array(names, pa.string()),
                                  "n": pa.array([s.tolist() for s in seen],
                                                pa.list_(pa.int64()))}),
                "alignments": alignments.rows_table(out.alignments),
                "registration": pa.table({k: [v] for k, v in out.registration.items()}),
                "notes": pa.table({"problem": pa.array(out.problems, pa.string())})}


def _atlas_chunk(tables: dict[str, pa.Table], names: list[str],
                 need: dict[str, set[int]], good: set[int]) -> Any:
    """A partition's tables as the local engine's :class:`~ishwh.atlas.runner.ChunkResult`."""
    from ishwh.atlas import alignments  # noqa: PLC0415
    from ishwh.atlas.runner import ChunkResult  # noqa: PLC0415

    exp = tables["experiments"]
    ids = exp.column("experiment_id").to_pylist()
    seen = dict(zip(tables["seen"].column("set").to_pylist(),
                    tables["seen"].column("n").to_pylist(), strict=True))
    out = ChunkResult({}, {}, {}, [], alignments.table_rows(tables["alignments"]),
                      tables["registration"].to_pylist()[0],
                      tables["notes"].column("problem").to_pylist())
    for k, name in enumerate(names):
        rows = [r for r, e in enumerate(ids) if e in good and e in need[name]]
        if rows:
            out.written[name] = [ids[r] for r in rows]
            out.vectors[name] = store.list_array_to_matrix(exp.column(f"v{k}"))[rows]
            out.seen[name] = np.asarray(seen[name], np.int64)
    return out


def run_atlas(con: Any, db_path: Path, opts: Any, result: Any) -> None:
    """Structure features on Ray: the local engine's plan
    (:func:`~ishwh.atlas.runner.atlas_plan`: sets, the atlas.cnn projection and each stage's
    registration calibrated on the driver); read tasks decode each section (gray image,
    network input); actors place the sections on the reference (stored placements reused),
    measure and pool them; placements, vectors and seen counts ingested in one
    transaction by the local :func:`~ishwh.atlas.runner.write_chunk`."""
    from ishwh.atlas import alignments  # noqa: PLC0415
    from ishwh.atlas import runner as atlas  # noqa: PLC0415
    from ishwh.features import sets  # noqa: PLC0415

    ray_opts: RayOptions = opts.ray
    t0 = time.perf_counter()
    with _cluster(con, opts, db_path) as (cluster, progress):
        plan = atlas.atlas_plan(con, db_path, opts, result, before_write=cluster.connect)
        ext = plan.ext
        experiments = {c: chunk for c, (_, chunk) in enumerate(plan.chunks)}
        if experiments:
            sections, describe = _sections_of(con, cluster.root, experiments)
            stored = alignments.load(con, [s.section_id for c in sections
                                           for s in sections[c]])
            extra = {c: (stage, plan.need(chunk),
                         {s.section_id: stored[s.section_id] for s in sections[c]
                          if s.section_id in stored})
                     for c, (stage, chunk) in enumerate(plan.chunks)}
            gpus = _gpus(cluster.ray, ray_opts) if ext.cnn is not None else 0.0
            refs = dict(con.execute("select stage, sha256 from reference_atlases").fetchall())
            todo = json.dumps([[st, c, [sorted(v) for v in plan.need(c).values()]]
                               for st, c in plan.chunks])
            key = {"sets": ext.names,
                   "params": [sets.existing_set(con, n)[1] for n in ext.names],
                   "stages": {st: [refs[st], *w.calibration()] for st, w in ext.stages.items()},
                   "todo": hashlib.sha256(todo.encode()).hexdigest()[:20]}
            job = Job("atlas", key, experiments, sections, extra, AtlasWorker,
                      (ext.state(), "cuda" if gpus > 0 else "cpu",
                       max(1, math.ceil(ray_opts.cpus_per_worker))),
                      "atlas", {"cnn": ext.input_args()}, describe, gpus)
            result.timings["setup"] = time.perf_counter() - t0
            files = run_job(cluster.ray, job, staging_dir(db_path), ray_opts, cluster.root,
                            opts.on_error, progress, result)
    if experiments:
        with warehouse.transaction(con):
            for c, (stage, chunk) in enumerate(plan.chunks):
                tables = read_partition(files[c])
                good = set(take_problems(tables, describe, result, progress, plan.failed))
                atlas.write_chunk(con, plan, stage, _atlas_chunk(
                    tables, ext.names, plan.need(chunk), good), result)
        remove_partitions(staging_dir(db_path), list(files.values()))
    atlas.atlas_finish(con, plan, result)


RUNNERS = {"cnn": run_cnn, "bow": run_bow, "grid": run_grid, "atlas": run_atlas}


def run(con: Any, db_path: Path, opts: Any, result: Any) -> None:
    """``featurize --engine ray``: the extractor ``opts.extractor`` (cnn, bow, grid or
    atlas) on Ray (``opts.ray``: the :class:`RayOptions`)."""
    RUNNERS[opts.extractor](con, db_path, opts, result)
