"""Bag-of-words feature sets in the warehouse, stage by stage: the set's parameters, its
codebooks (sampled descriptors -> k-means, stored in ``codebooks``), the word counts of the
sections, and the per-chunk write. The extractor's pieces (dense SIFT, sampling, counting,
interval pooling) live in :mod:`ishwh.features.bow` (OpenCV, in worker processes) and
:mod:`ishwh.features.sift_torch` (torch, here)."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ishwh import store, warehouse
from ishwh.errors import InvalidInput
from ishwh.features import bow as bowmod
from ishwh.features import sets
from ishwh.features.cnn import resolve_device
from ishwh.features.imageio import ordered_map
from ishwh.features.options import DEFAULT_CHUNK, FeaturizeOptions, FeaturizeResult
from ishwh.features.sets import Section
from ishwh.features.sift_torch import TorchDenseSift

SIFT_IMPLS = ("opencv", "torch")

# Why a bow set refuses to continue, and what to do.
_BOW_HINTS = {
    "upright": "the set was made by an older ishwh (SIFT keypoints turned by 361 degrees): "
               "make the bag of words in a new warehouse",
    "sift": "its SIFT implementation is fixed when it is started: re-run with --sift auto "
            "(OpenCV sets continue with --device cpu or auto, torch sets on any device)",
}

# Descriptors computed for the codebook are kept (up to this size) so that those sections
# need no second SIFT pass when their words are counted.
_DESCRIPTOR_CACHE_BYTES = 256 * 2**20


def bow_set_name(n_words: int = bowmod.N_WORDS, step: int = bowmod.STEP) -> str:
    """``bow``; a non-default number of words or grid step adds ``.w<n>`` / ``.s<step>``."""
    name = "bow"
    if n_words != bowmod.N_WORDS:
        name += f".w{n_words}"
    if step != bowmod.STEP:
        name += f".s{step}"
    return name


def bow_params(opts: FeaturizeOptions, old: dict | None = None) -> dict:
    """The parameters of set ``bow``. ``sift``: the implementation of dense SIFT (they differ
    in the last float bits): a new set uses torch when the device resolves to CUDA and OpenCV
    otherwise; an existing set (``old`` params) keeps its own, unless ``bow["sift"]`` names
    one (`ishwh featurize --sift opencv|torch`; torch runs on the CPU too)."""
    p = {"n_words": bowmod.N_WORDS, "sizes": list(bowmod.SIFT_SIZES), "step": bowmod.STEP,
         "downsample": bowmod.DOWNSAMPLE, "n_intervals": bowmod.N_INTERVALS,
         "max_descriptors": bowmod.MAX_DESCRIPTORS, "n_init": bowmod.N_INIT, "seed": 0,
         "sift": None}
    unknown = set(opts.bow or {}) - set(p)
    if unknown:
        raise InvalidInput(f"unknown bag-of-words parameter(s) {sorted(unknown)}")
    p.update(opts.bow or {})
    p["sizes"] = [int(s) for s in p["sizes"]]
    for key, low in (("n_words", 2), ("step", 1)):
        v = p[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise InvalidInput(f"bag-of-words {key} must be an integer >= {low}, got {v!r}")
    on_gpu = resolve_device(opts.device).type == "cuda"
    gpu_asked = str(opts.device).startswith("cuda")
    if p["sift"] is None:
        kept = (old or {}).get("sift")
        if kept in SIFT_IMPLS and (kept == "torch" or not gpu_asked):
            p["sift"] = kept
        else:
            p["sift"] = "torch" if on_gpu else "opencv"
    if p["sift"] not in SIFT_IMPLS:
        raise InvalidInput(f"bow sift must be opencv or torch, got {p['sift']!r}")
    if p["sift"] == "opencv" and gpu_asked:
        raise InvalidInput("OpenCV SIFT runs on the CPU only", hint="use --device cpu or auto")
    # Keypoints are upright (angle 0); sets made before that have no "upright" and refuse.
    p["upright"] = True
    return p


@dataclass
class BowPlan:
    """One bag-of-words set being computed: its row, parameters and where SIFT runs."""

    name: str
    fsid: int
    p: dict  # the set's params (see :func:`bow_params`)
    sift: TorchDenseSift | None  # None: OpenCV SIFT in the worker processes
    workers: int
    failed: set[int] = field(default_factory=set)


def bow_plan(con, opts: FeaturizeOptions, result: FeaturizeResult) -> BowPlan:
    """The set (created, or checked against ``opts``), its parameters and its SIFT."""
    asked = opts.bow or {}
    name = bow_set_name(asked.get("n_words", bowmod.N_WORDS), asked.get("step", bowmod.STEP))
    found = sets.existing_set(con, name)
    p = bow_params(opts, found[1] if found else None)
    result.names = [name]
    dim = bowmod.bow_dim(p["n_words"], len(p["sizes"]), p["n_intervals"])
    fsid = sets.ensure_set(con, name, "bow", dim, p, _BOW_HINTS)
    sift = None
    if p["sift"] == "torch":
        # Workers only decode; SIFT and word counts run here, on the device.
        sift = TorchDenseSift(p["sizes"], p["step"], resolve_device(opts.device))
        workers = sets.default_workers() if opts.workers is None else opts.workers
    else:
        # SIFT is the heavy part here: one worker per core.
        workers = (os.cpu_count() or 1) if opts.workers is None else opts.workers
    if found is not None and p["sift"] == "opencv" and sift is None and \
            resolve_device(opts.device).type == "cuda":
        sets.say(opts.progress, "bow: this set was started with OpenCV SIFT, so it goes on "
                                "with OpenCV on the CPU (a new set would use the GPU)")
    return BowPlan(name, fsid, p, sift, workers)


def run_bow(con, db_path: Path, opts: FeaturizeOptions, result: FeaturizeResult) -> None:
    """Bag of words, stage by stage. A stage with fewer non-zero SIFT descriptors than the
    codebook has words is skipped: no codebook and no vectors for it, the reason in
    ``result.skipped`` and ``feature_set_stages``, a message; the other stages go on, and
    the set is finished (and usable by ``fit``) stage by stage."""
    plan = bow_plan(con, opts, result)
    stages, scope = sets.scope(con, opts.stages)
    chunk_size = opts.chunk_size or DEFAULT_CHUNK
    done = sets.done(con, [plan.fsid])[plan.fsid]
    images_root = warehouse.images_dir(db_path)
    if scope is not None:
        ids_all = [int(e) for e in scope.column("experiment_id").to_pylist()]
        stage_of = dict(zip(ids_all, scope.column("stage").to_pylist(), strict=True))
        for stage in stages:
            ids = [e for e in ids_all if stage_of[e] == stage]
            chunks = [c for c in sets.chunks(ids, chunk_size) if set(c) - done]
            if chunks:
                try:
                    _bow_stage(con, plan, stage, ids, chunks, done, images_root, opts, result)
                except StageTooSmall as exc:
                    skip_stage(con, plan, exc, opts, result)
                    continue
                done = sets.done(con, [plan.fsid])[plan.fsid]
            if not set(ids) - plan.failed - done:
                mark_stage(con, plan.fsid, stage, "finished")
    bow_finish(con, plan, result)


def skip_stage(con, plan: BowPlan, exc: StageTooSmall, opts: FeaturizeOptions,
               result: FeaturizeResult) -> None:
    """A stage too small for the codebooks: no vectors for it; the reason recorded, said."""
    result.skipped[exc.stage] = exc.message
    mark_stage(con, plan.fsid, exc.stage, "skipped", str(exc))
    sets.say(opts.progress, f"{plan.name}: stage {exc.stage} skipped: {exc}")


def bow_finish(con, plan: BowPlan, result: FeaturizeResult) -> None:
    """``finished_at`` when every experiment that can have the set does; experiments of
    skipped stages do not hold the set back (fit names the skip)."""
    skipped = {int(r[0]) for r in con.execute(
        "select e.experiment_id from experiments e join feature_set_stages f using (stage) "
        "where f.feature_set_id = ? and f.status = 'skipped'", [plan.fsid]).fetchall()}
    result.finished = sets.finish(con, {plan.name: plan.fsid}, sets.eligible(con),
                                  plan.failed | skipped)


def _bow_stage(con, plan: BowPlan, stage: str, ids: list[int], chunks: list[list[int]],
               done: set[int], images_root: Path, opts: FeaturizeOptions,
               result: FeaturizeResult) -> None:
    """Codebooks (built or loaded) and word counts of the chunks of one stage."""
    p = plan.p
    centers, cache = stage_codebooks(con, plan, stage, ids, images_root, opts, result)
    sections = sets.sections(con, images_root, [e for c in chunks for e in c])
    by_exp: dict[int, list[Section]] = {}
    for s in sections:
        by_exp.setdefault(s.experiment_id, []).append(s)
    with sets.progress_phase(opts.progress, f"featurize bow {stage}", len(sections)) as adv, \
            closing(count_words(sections, cache, p, centers, plan.workers, plan.sift)) as counts:
        # One worker pool for the stage; results come back in section order.
        for c in chunks:
            secs = [s for e in c for s in by_exp.get(e, [])]
            got = [next(counts) for _ in secs]
            write_bow_chunk(con, plan, c, done, secs, got, opts, result)
            adv(len(secs))


def stage_codebooks(con, plan: BowPlan, stage: str, ids: list[int], images_root: Path,
                    opts: FeaturizeOptions, result: FeaturizeResult
                    ) -> tuple[list[np.ndarray], dict[int, list[np.ndarray]]]:
    """The stage's codebooks: stored ones, or built from the sections of experiments ``ids``
    (and stored); with the descriptors kept from building them, per section id."""
    centers = load_codebooks(con, plan.fsid, stage, len(plan.p["sizes"]))
    if centers is not None:
        return centers, {}
    return build_codebooks(con, plan, stage, sets.sections(con, images_root, ids), opts,
                           result)


def count_words(sections: list[Section], cache: dict[int, list[np.ndarray]], p: dict,
                centers: list[np.ndarray], workers: int, sift: TorchDenseSift | None
                ) -> Iterator[tuple[np.ndarray | None, str | None]]:
    """Per section, in order: (word counts, error). Sections whose descriptors are in
    ``cache`` (kept from the codebook) are counted from them (and dropped from it); the
    others are read and run through dense SIFT: OpenCV in ``workers`` processes, or torch
    here (``sift``)."""
    if sift is None:
        from_cache = functools.partial(bowmod.section_counts, centers_per_scale=centers)
    else:
        from_cache = functools.partial(sift.section_counts, None, sift.codebooks(centers))
    fresh = [s.path for s in sections if s.section_id not in cache]
    with closing(_counted(fresh, p, centers, workers, sift)) as counts:
        for s in sections:
            yield (from_cache(cache.pop(s.section_id)), None) if s.section_id in cache \
                else next(counts)


def _counted(paths: list[str], p: dict, centers: list[np.ndarray], workers: int,
             sift: TorchDenseSift | None) -> Iterator[tuple[np.ndarray | None, str | None]]:
    """Per section, in order: (word counts, error); SIFT in the workers or here, as above."""
    if sift is None:
        with closing(ordered_map(bowmod.count_job, paths, workers, bowmod.bow_setup,
                                 (p, centers))) as got:
            yield from got
        return
    on_device = sift.codebooks(centers)
    with sets.cpu_threads(sift.device.type, workers), \
            closing(ordered_map(bowmod.gray_job, paths, workers, bowmod.bow_setup,
                                (p, None))) as got:
        for gray, err in got:
            yield (None, err) if err is not None else (sift.section_counts(gray, on_device),
                                                       None)


def write_bow_chunk(con, plan: BowPlan, ids: list[int], done: set[int], secs: list[Section],
                    counts: list[tuple[np.ndarray | None, str | None]],
                    opts: FeaturizeOptions, result: FeaturizeResult) -> None:
    """Write the word counts of one chunk (``secs`` and their ``counts``, in order): section
    counts and interval-pooled experiment vectors, in one transaction."""
    p = plan.p
    ok: dict[int, list[tuple[Section, np.ndarray]]] = {}
    for sec, (vec, err) in zip(secs, counts, strict=True):
        if err is not None:
            sets.unreadable(sec, err, opts.on_error, result, opts.progress)
            continue
        ok.setdefault(sec.experiment_id, []).append((sec, vec))
    write = [e for e in ids if e not in done and e in ok]
    sets.no_section_read(ids, ok, done, plan.failed, result)
    if not write:
        return
    sec_ids, sec_vecs, exp_vecs = [], [], []
    for e in write:
        items = ok[e]
        x = np.stack([v for _, v in items])
        iv = bowmod.interval_index([s.position for s, _ in items],
                                   [s.section_number for s, _ in items], p["n_intervals"])
        exp_vecs.append(bowmod.experiment_vector(x, iv, p["n_intervals"]))
        sec_ids += [s.section_id for s, _ in items]
        sec_vecs.append(x)
    with warehouse.transaction(con):
        # Section counts are kept: later steps can regroup them (other intervals, pooling).
        store.insert_vectors(con, "section_features",
                             {"feature_set_id": np.full(len(sec_ids), plan.fsid, dtype=np.int32),
                              "section_id": np.asarray(sec_ids, dtype=np.int64)},
                             np.concatenate(sec_vecs))
        store.write_experiment_features(con, plan.fsid, write, np.stack(exp_vecs))
    result.written[plan.name] = result.written.get(plan.name, 0) + len(write)


# --------------------------------------------------------------------------- codebooks


def load_codebooks(con, fsid: int, stage: str, n_scales: int) -> list[np.ndarray] | None:
    """The stored codebook centres of ``stage`` per scale; None if they are not all there."""
    tbl = con.sql("select scale, n_words, centers from codebooks where feature_set_id = $f "
                  "and stage = $s order by scale", params={"f": fsid, "s": stage}
                  ).to_arrow_table()
    if tbl.num_rows != n_scales:
        return None
    out = []
    for k, centers in zip(tbl.column("n_words").to_pylist(), tbl.column("centers").to_pylist(),
                          strict=True):
        out.append(np.asarray(centers, dtype=np.float32).reshape(k, 128))
    return out


def _sampled(order: list[Section], cap: int, p: dict, workers: int,
             sift: TorchDenseSift | None) -> Iterator[tuple[Any, str | None]]:
    """Per section, in order: ((sampled descriptors, all descriptors), error). OpenCV: SIFT in
    the workers; torch: the workers decode, SIFT runs here (on the GPU)."""
    if sift is None:
        jobs = [(s.path, s.section_id, cap) for s in order]
        with closing(ordered_map(bowmod.sample_job, jobs, workers, bowmod.bow_setup,
                                 (p, None))) as got:
            yield from got
        return
    # (torch on the CPU: one thread per core left free by the decoding workers)
    with sets.cpu_threads(sift.device.type, workers), \
            closing(ordered_map(bowmod.gray_job, [s.path for s in order], workers,
                                bowmod.bow_setup, (p, None))) as got:
        for sec, (gray, err) in zip(order, got, strict=True):
            if err is not None:
                yield None, err
                continue
            descs = sift.descriptors(gray)
            yield (bowmod.sample_nonzero(descs, p["seed"], sec.section_id, cap), descs), None


def build_codebooks(con, plan: BowPlan, stage: str, sections: list[Section],
                    opts: FeaturizeOptions, result: FeaturizeResult
                    ) -> tuple[list[np.ndarray], dict[int, list[np.ndarray]]]:
    """Sample descriptors from the stage's sections (seeded order) and run k-means per scale;
    store the centres in ``codebooks``.

    Returns the centres per scale and the descriptors kept per section id.
    """
    p = plan.p
    sample = bowmod.CodebookSample(len(sections), p["sizes"], p["max_descriptors"], p["seed"])
    order = [sections[i] for i in sample.order]
    cache: dict[int, list[np.ndarray]] = {}
    kept_bytes = 0
    with sets.progress_phase(opts.progress, f"codebook {stage}", len(order)) as advance, \
            closing(_sampled(order, sample.cap, p, plan.workers, plan.sift)) as got:
        for sec, (res, err) in zip(order, got, strict=True):
            advance(1)
            if err is not None:
                sets.unreadable(sec, err, opts.on_error, result, None,
                                hint="fix the file or re-run with --on-error skip")
                continue
            descs, full = res
            if kept_bytes < _DESCRIPTOR_CACHE_BYTES:
                cache[sec.section_id] = full
                kept_bytes += sum(d.nbytes for d in full)
            if sample.add(descs):
                break  # enough (closing the generator stops the workers)
    short = {p["sizes"][s]: n for s, n in enumerate(sample.have) if n < p["n_words"]}
    if short:
        raise StageTooSmall(stage, short, p["n_words"], len(order))
    try:
        fitted = sample.fit(p["n_words"], p["n_init"])
    except InvalidInput as exc:
        raise InvalidInput(f"stage {stage}, {exc.message}", hint=exc.hint) from exc
    centers = [c for c, _ in fitted]
    with warehouse.transaction(con):
        for s, (c, inertia) in enumerate(fitted):
            con.execute("insert into codebooks (feature_set_id, stage, scale, n_words, centers, "
                        "inertia) values (?, ?, ?, ?, ?, ?)",
                        [plan.fsid, stage, s, len(c), c.reshape(-1).tolist(), inertia]
                        ).fetchall()
    return centers, cache


class StageTooSmall(InvalidInput):
    """A stage has fewer non-zero descriptors (at some SIFT size) than the codebook has
    words: k-means cannot make the codebook, so the stage is skipped (see :func:`run_bow`)."""

    def __init__(self, stage: str, short: dict[int, int], n_words: int, n_sections: int):
        fewest = min(short.values())
        sizes = ", ".join(f"{n:,} at keypoint size {k}" for k, n in short.items())
        super().__init__(
            f"too few non-zero SIFT descriptors for a {n_words}-word codebook: {sizes} "
            f"(from {n_sections} section(s))",
            hint=f"a set with fewer words (e.g. {fewest // 4}) or a smaller grid step covers it"
            if fewest // 4 >= 2 else "it needs more (or larger) sections, or a smaller grid step")
        self.stage = stage


def mark_stage(con, fsid: int, stage: str, status: str, reason: str | None = None) -> None:
    """Record that set ``fsid`` is finished at ``stage``, or skipped it (and why)."""
    with warehouse.transaction(con):
        con.execute("delete from feature_set_stages where feature_set_id = ? and stage = ?",
                    [fsid, stage]).fetchall()
        con.execute("insert into feature_set_stages (feature_set_id, stage, status, reason) "
                    "values (?, ?, ?, ?)", [fsid, stage, status, reason]).fetchall()
