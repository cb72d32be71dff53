"""``featurize``: moving sections and grids from the warehouse through the extractors.

The extractors (:mod:`.cnn`, :mod:`.bow`, :mod:`.grid`) know nothing about DuckDB; this
module reads what they need, runs them, and writes ``feature_sets`` and
``experiment_features`` (through :mod:`ishwh.store`).

Work is done in *chunks* of experiments: the experiments in scope, sorted by id, cut into
fixed chunks of ``chunk_size``. Each chunk is computed and committed in one transaction, so a
killed run loses at most the chunk in flight, and a re-run skips the chunks already written.
Because the chunks (and the image batches inside them, which never cross a chunk) are the
same on every run with the same arguments, a resumed run gives exactly the vectors of an
uninterrupted one. A feature set gets ``finished_at`` when every experiment of the warehouse
that can have it does; running it again then does nothing.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from ishwh import store, warehouse
from ishwh.device import free_cores, torch_threads
from ishwh.errors import InvalidInput, NotFound
from ishwh.features import bow as bowmod
from ishwh.features.backbone import DEFAULT_BACKBONE, bundled_weights_path, weights_digest
from ishwh.features.cnn import (
    DEFAULT_IMAGE_SIZE,
    DEFAULT_LAYERS,
    POOLS,
    CNNFeatures,
    pool_sections,
    resolve_device,
)
from ishwh.features.grid import GridFeatures
from ishwh.features.imageio import decode_batch, ordered_map
from ishwh.features.sift_torch import TorchDenseSift
from ishwh.progress import Progress, or_silent, phase
from ishwh.query import query_text

EXTRACTORS = ("cnn", "bow", "grid", "atlas")
ENGINES = ("local", "ray")
ON_ERROR = ("skip", "fail")
DEFAULT_CHUNK = 16  # experiments per commit (~250 sections of the real atlas)


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


# --------------------------------------------------------------------------- small helpers


def cnn_set_name(backbone: str, layer: str, pool: str, image_size: int = DEFAULT_IMAGE_SIZE,
                 spatial: int | None = None) -> str:
    """``<backbone>.<layer>.<pool>``; non-default input size / spatial grid add a suffix."""
    name = f"{backbone}.{layer}.{pool}"
    if spatial is not None:
        name += f".s{spatial}"
    if image_size != DEFAULT_IMAGE_SIZE:
        name += f".{image_size}px"
    return name


def _default_workers() -> int:
    # Decoding at reduced resolution is cheap next to the network: a quarter of the cores
    # (at least one, at most 8) keeps the network fed.
    return max(1, min(8, (os.cpu_count() or 2) // 4))


def _scope(con: duckdb.DuckDBPyConnection, stages: Sequence[str] | None) -> tuple[list[str], Any]:
    """The stages in scope and the experiments (with sections) of those stages."""
    present = [r[0] for r in con.execute(
        "select distinct e.stage, s.stage_order from experiments e left join stages s "
        "using (stage) order by s.stage_order").fetchall()]
    if stages is None:
        chosen = present
    else:
        chosen = list(dict.fromkeys(stages))
        unknown = [s for s in chosen if s not in present]
        if unknown:
            raise NotFound(f"no experiments of stage {', '.join(unknown)} in the warehouse",
                           hint="stages present: " + (", ".join(present) or "none"))
    if not chosen:
        return [], None
    tbl = con.sql(query_text("featurize_scope"), params={"stages": chosen}).to_arrow_table()
    return chosen, tbl


def _existing_set(con: duckdb.DuckDBPyConnection, name: str) -> tuple[int, dict, Any] | None:
    rows = con.execute("select feature_set_id, params, finished_at from feature_sets "
                       "where name = ?", [name]).fetchall()
    if not rows:
        return None
    fsid, params, finished = rows[0]
    return int(fsid), json.loads(params) if params else {}, finished


def _ensure_set(con: duckdb.DuckDBPyConnection, name: str, extractor: str, dim: int,
                params: dict, hints: dict[str, str] | None = None) -> int:
    """The id of feature set ``name``, created if new; refuses one made with other params
    (``hints``: a more precise hint when a given parameter differs)."""
    found = _existing_set(con, name)
    if found is not None:
        fsid, old, _ = found
        diff = sorted(k for k in params if old.get(k) != params[k])
        if diff:
            hint = next((h for k, h in (hints or {}).items() if k in diff),
                        "re-run with the same options, or choose options that give another name")
            raise InvalidInput(
                f"feature set {name} was made with other parameters: "
                + ", ".join(f"{k} {old.get(k)!r} (now {params[k]!r})" for k in diff),
                hint=hint,
            )
        return fsid
    with warehouse.transaction(con):
        con.execute("insert into feature_sets (name, extractor, dim, params) values (?, ?, ?, ?)",
                    [name, extractor, dim, json.dumps(params, sort_keys=True)]).fetchall()
    return store.feature_set_id(con, name)


def _done(con: duckdb.DuckDBPyConnection, fsids: Sequence[int]) -> dict[int, set[int]]:
    """``{feature_set_id: experiment ids present}``."""
    out: dict[int, set[int]] = {f: set() for f in fsids}
    if not fsids:
        return out
    tbl = con.sql(query_text("featurize_done"),
                  params={"feature_set_ids": list(fsids)}).to_arrow_table()
    for f, e in zip(tbl.column("feature_set_id").to_pylist(),
                    tbl.column("experiment_id").to_pylist(), strict=True):
        out[int(f)].add(int(e))
    return out


def _finish(con: duckdb.DuckDBPyConnection, fsids: dict[str, int], eligible: set[int],
            failed: set[int]) -> list[str]:
    """Set ``finished_at`` on the sets that now hold every eligible experiment."""
    done = _done(con, list(fsids.values()))
    finished = []
    for name, fsid in fsids.items():
        if not (eligible - failed - done[fsid]):
            con.execute("update feature_sets set finished_at = coalesce(finished_at, now()) "
                        "where feature_set_id = ?", [fsid]).fetchall()
            finished.append(name)
    return finished


def _chunks(ids: Sequence[int], size: int) -> list[list[int]]:
    return [list(ids[i:i + size]) for i in range(0, len(ids), size)]


@contextmanager
def _progress(progress: Progress | None, description: str, total: int,
              unit: str = "sections") -> Iterator[Callable[[int], None]]:
    """A phase on ``progress`` (nothing when there is nothing to do); yields ``advance(n)``."""
    if total == 0:
        yield lambda n: None
        return
    with phase(progress, description, total, unit) as advance:
        yield advance


def _say(progress: Progress | None, message: str) -> None:
    or_silent(progress).message(message)


@dataclass
class _Section:
    experiment_id: int
    section_id: int
    section_number: int
    path: str
    width: int
    height: int
    position: float | None


def _sections(con: duckdb.DuckDBPyConnection, images_root: Path,
              experiment_ids: Sequence[int]) -> list[_Section]:
    if not experiment_ids:
        return []
    tbl = con.sql(query_text("featurize_sections"),
                  params={"experiment_ids": [int(e) for e in experiment_ids]}).to_arrow_table()
    cols = {c: tbl.column(c).to_pylist() for c in tbl.column_names}
    return [
        _Section(int(e), int(s), int(n), str(images_root / p), int(w), int(h), pos)
        for e, s, n, p, w, h, pos in zip(
            cols["experiment_id"], cols["section_id"], cols["section_number"],
            cols["image_path"], cols["width"], cols["height"], cols["position"], strict=True)
    ]


def _problem(sec: _Section, message: str) -> str:
    message = message.replace(f"cannot read image {sec.path}: ", "")
    return (f"experiment {sec.experiment_id}, section {sec.section_id} "
            f"(number {sec.section_number}), file {sec.path}: {message}")


# --------------------------------------------------------------------------- CNN


def _cnn_batches(sections: Sequence[_Section], chunk_of: dict[int, int], batch_size: int
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


def cnn_plan(con, opts: dict, result: FeaturizeResult,
             before_write: Callable[[list[int]], None] | None = None) -> CnnPlan | None:
    """The CNN sets, chunks and missing pairs; ``None`` when there is nothing to do (then
    no network is loaded). ``before_write(scope ids)`` runs before the network is loaded and
    any set is created (the Ray engine connects and checks its workers there)."""
    layers = list(dict.fromkeys(opts["layers"] or DEFAULT_LAYERS))
    pools = list(dict.fromkeys(opts["pools"]))
    backbone, size, spatial = opts["backbone"], opts["image_size"], opts["spatial"]
    names = {(lay, p): cnn_set_name(backbone, lay, p, size, spatial) for lay in layers
             for p in pools}
    result.names = list(names.values())
    stages, scope = _scope(con, opts["stages"])
    weights = Path(opts["weights"]) if opts["weights"] else None
    if weights is not None and not weights.is_file():
        raise InvalidInput(f"weights file {weights} does not exist")

    # Nothing to do? Answer without loading a network.
    existing = {n: _existing_set(con, n) for n in names.values()}
    scope_ids = [int(e) for e in scope.column("experiment_id").to_pylist()] if scope else []
    if all(existing.values()):
        done = _done(con, [v[0] for v in existing.values()])
        if all(set(scope_ids) <= done[v[0]] for v in existing.values()):
            result.finished = [n for n, v in existing.items() if v[2] is not None]
            return None

    t0 = time.perf_counter()
    if before_write is not None:
        before_write(scope_ids)
    device = opts["device"]
    resolve_device(device)
    digest = weights_digest(weights if weights is not None else bundled_weights_path())
    # CPU: small batches keep the activations in cache (batch 4 is ~1.5x faster per image
    # than 16 for efficientnet_lite0); GPU: large batches.
    batch_size = opts["batch_size"] or (128 if resolve_device(device).type == "cuda" else 4)
    ext = CNNFeatures(backbone=backbone, layers=layers, pools=pools, image_size=size,
                      spatial=spatial, weights=str(weights) if weights else None, device=device,
                      batch_size=batch_size).fit()
    params = {name: {"backbone": backbone, "layer": lay, "pool": p, "image_size": size,
                     "spatial": spatial, "weights_sha256": digest}
              for (lay, p), name in names.items()}
    fsids: dict[str, int] = {}
    for (lay, _), name in names.items():
        fsids[name] = _ensure_set(con, name, "cnn", ext.dims_[lay], params[name])

    chunk_size = opts["chunk_size"] or DEFAULT_CHUNK
    chunks = _chunks(scope_ids, chunk_size)
    done = _done(con, list(fsids.values()))
    # For each chunk that lacks something: which (set, experiment) pairs to write.
    todo: dict[int, dict[str, set[int]]] = {}
    for c, ids in enumerate(chunks):
        need = {n: set(ids) - done[f] for n, f in fsids.items()}
        if any(need.values()):
            todo[c] = need
    return CnnPlan(ext, names, fsids, chunks, todo, params, t0)


def cnn_finish(con, plan: CnnPlan, result: FeaturizeResult) -> None:
    """``finished_at`` on the sets that now hold every experiment that can have them."""
    all_stages, all_scope = _scope(con, None)
    eligible = set(int(e) for e in all_scope.column("experiment_id").to_pylist()) \
        if all_scope else set()
    result.finished = _finish(con, plan.fsids, eligible, plan.failed)


def _run_cnn(con, db_path: Path, opts: dict, result: FeaturizeResult) -> None:
    if opts.get("ray") is not None:
        from ishwh.features import ray_engine  # noqa: PLC0415 - Ray is an optional extra

        ray_engine.run_cnn(con, db_path, opts, result)
        return
    plan = cnn_plan(con, opts, result)
    if plan is None:
        return
    ext, chunks, todo, failed = plan.ext, plan.chunks, plan.todo, plan.failed
    if todo:
        chunk_of = {e: c for c in todo for e in chunks[c]}
        sections = _sections(con, warehouse.images_dir(db_path),
                             [e for c in sorted(todo) for e in chunks[c]])
        workers = _default_workers() if opts["workers"] is None else opts["workers"]
        result.timings["setup"] = time.perf_counter() - plan.started
        t1 = time.perf_counter()
        with _cpu_threads(ext.device_.type, workers):
            _cnn_loop(con, ext, sections, chunks, todo, chunk_of, plan.fsids, opts, result,
                      failed, workers)
        result.timings["compute"] = time.perf_counter() - t1
    cnn_finish(con, plan, result)


@contextmanager
def _cpu_threads(device_type: str, workers: int) -> Iterator[None]:
    """On CPU, leave one core per decoding worker: torch's OpenMP threads slow down by orders
    of magnitude when they outnumber the free cores (they spin at every barrier)."""
    import torch  # noqa: PLC0415

    with torch_threads(min(torch.get_num_threads(), free_cores(workers))
                       if device_type == "cpu" else None):
        yield


def _cnn_loop(con, ext: CNNFeatures, sections: list[_Section], chunks, todo, chunk_of, fsids,
              opts, result: FeaturizeResult, failed: set[int], workers: int) -> None:
    batches, owner = _cnn_batches(sections, chunk_of, ext.batch_size)
    last_batch_of = {c: i for i, c in enumerate(owner)}
    jobs = (([(i, sections[i].path, sections[i].width, sections[i].height) for i in batch],
             ext.image_size) for batch in batches)
    # Per experiment: the rows of each layer (section order), filled batch by batch.
    rows: dict[int, dict[str, list[np.ndarray]]] = {}
    # Decoding runs ahead in worker processes while the network works on this batch.
    with _progress(opts["progress"], "featurize cnn", len(sections)) as advance, \
            closing(ordered_map(decode_batch, jobs, workers)) as decoded:
        for b, (idx, imgs, errors) in enumerate(decoded):
            for i, msg in errors:
                text = _problem(sections[i], msg)
                if opts["on_error"] == "fail":
                    raise InvalidInput(
                        f"unreadable image: {text}",
                        hint="fix or remove the file, or re-run with --on-error skip "
                             "(chunks already written are kept)")
                result.problems.append(text)
                _say(opts["progress"], f"skipped: {text}")
            if imgs is not None:
                feats = ext.section_features(imgs)
                for j, i in enumerate(idx):
                    per = rows.setdefault(sections[i].experiment_id, {})
                    for lay, v in feats.items():
                        per.setdefault(lay, []).append(v[j])
            advance(len(idx) + len(errors))
            c = owner[b]
            if last_batch_of[c] == b:
                _write_cnn_chunk(con, ext, chunks[c], todo[c], fsids, rows, result, failed)
                for e in chunks[c]:
                    rows.pop(e, None)


def _write_cnn_chunk(con, ext: CNNFeatures, ids: list[int], need: dict[str, set[int]],
                     fsids: dict[str, int], rows, result: FeaturizeResult,
                     failed: set[int]) -> None:
    for e in ids:
        if e not in rows:
            failed.add(e)
            msg = f"experiment {e}: no readable section, no vector written"
            result.problems.append(msg)
    with warehouse.transaction(con):
        for (lay, p), name in _layer_pool_names(ext, fsids).items():
            write = [e for e in ids if e in need[name] and e in rows]
            if not write:
                continue
            x = np.stack([pool_sections(np.stack(rows[e][lay]), p) for e in write])
            store.write_experiment_features(con, fsids[name], write, x)
            result.written[name] = result.written.get(name, 0) + len(write)


def _layer_pool_names(ext: CNNFeatures, fsids: dict[str, int]) -> dict[tuple[str, str], str]:
    out = {}
    for lay in ext.layers_:
        for p in ext.pools:
            out[(lay, p)] = cnn_set_name(ext.backbone, lay, p, ext.image_size, ext.spatial)
    return {k: v for k, v in out.items() if v in fsids}


# --------------------------------------------------------------------------- bag of words

SIFT_IMPLS = ("opencv", "torch")

# Why a bow set refuses to continue, and what to do.
_BOW_HINTS = {
    "upright": "the set was made by an older ishwh (SIFT keypoints turned by 361 degrees): "
               "make the bag of words in a new warehouse",
    "sift": "its SIFT implementation is fixed when it is started: re-run with --sift auto "
            "(OpenCV sets continue with --device cpu or auto, torch sets on any device)",
}


def _bow_params(opts: dict, old: dict | None = None) -> dict:
    """The parameters of set ``bow``. ``sift``: the implementation of dense SIFT (they differ
    in the last float bits): a new set uses torch when the device resolves to CUDA and OpenCV
    otherwise; an existing set (``old`` params) keeps its own, unless ``bow["sift"]`` names
    one (`ishwh featurize --sift opencv|torch`; torch runs on the CPU too)."""
    p = {"n_words": bowmod.N_WORDS, "sizes": list(bowmod.SIFT_SIZES), "step": bowmod.STEP,
         "downsample": bowmod.DOWNSAMPLE, "n_intervals": bowmod.N_INTERVALS,
         "max_descriptors": bowmod.MAX_DESCRIPTORS, "n_init": bowmod.N_INIT, "seed": 0,
         "sift": None}
    unknown = set(opts.get("bow") or {}) - set(p)
    if unknown:
        raise InvalidInput(f"unknown bag-of-words parameter(s) {sorted(unknown)}")
    p.update(opts.get("bow") or {})
    p["sizes"] = [int(s) for s in p["sizes"]]
    for key, low in (("n_words", 2), ("step", 1)):
        v = p[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise InvalidInput(f"bag-of-words {key} must be an integer >= {low}, got {v!r}")
    on_gpu = resolve_device(opts["device"]).type == "cuda"
    gpu_asked = str(opts["device"]).startswith("cuda")
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


def _load_codebooks(con, fsid: int, stage: str, n_scales: int) -> list[np.ndarray] | None:
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


# Descriptors computed for the codebook are kept (up to this size) so that those sections
# need no second SIFT pass when their words are counted.
_DESCRIPTOR_CACHE_BYTES = 256 * 2**20


def _sampled(order: list[_Section], cap: int, p: dict, workers: int,
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
    with _cpu_threads(sift.device.type, workers), \
            closing(ordered_map(bowmod.gray_job, [s.path for s in order], workers,
                                bowmod.bow_setup, (p, None))) as got:
        for sec, (gray, err) in zip(order, got, strict=True):
            if err is not None:
                yield None, err
                continue
            descs = sift.descriptors(gray)
            yield (bowmod.sample_nonzero(descs, p["seed"], sec.section_id, cap), descs), None


def _counted(paths: list[str], p: dict, centers: list[np.ndarray], workers: int,
             sift: TorchDenseSift | None) -> Iterator[tuple[np.ndarray | None, str | None]]:
    """Per section, in order: (word counts, error); SIFT in the workers or here, as above."""
    if sift is None:
        with closing(ordered_map(bowmod.count_job, paths, workers, bowmod.bow_setup,
                                 (p, centers))) as got:
            yield from got
        return
    on_device = sift.codebooks(centers)
    with _cpu_threads(sift.device.type, workers), \
            closing(ordered_map(bowmod.gray_job, paths, workers, bowmod.bow_setup,
                                (p, None))) as got:
        for gray, err in got:
            yield (None, err) if err is not None else (sift.section_counts(gray, on_device),
                                                       None)


def _build_codebooks(con, fsid: int, stage: str, sections: list[_Section], p: dict,
                     workers: int, opts: dict, result: FeaturizeResult,
                     sift: TorchDenseSift | None = None
                     ) -> tuple[list[np.ndarray], dict[int, list[np.ndarray]]]:
    """Sample descriptors from the stage's sections (seeded order) and run k-means per scale.

    Returns the centres per scale and the descriptors kept per section id.
    """
    sample = bowmod.CodebookSample(len(sections), p["sizes"], p["max_descriptors"], p["seed"])
    order = [sections[i] for i in sample.order]
    cap = sample.cap
    cache: dict[int, list[np.ndarray]] = {}
    kept_bytes = 0
    with _progress(opts["progress"], f"codebook {stage}", len(order)) as advance, \
            closing(_sampled(order, cap, p, workers, sift)) as got:
        for sec, (res, err) in zip(order, got, strict=True):
            advance(1)
            if err is not None:
                if opts["on_error"] == "fail":
                    raise InvalidInput(f"unreadable image: {_problem(sec, err)}",
                                       hint="fix the file or re-run with --on-error skip")
                result.problems.append(_problem(sec, err))
                continue
            descs, full = res
            if kept_bytes < _DESCRIPTOR_CACHE_BYTES:
                cache[sec.section_id] = full
                kept_bytes += sum(d.nbytes for d in full)
            if sample.add(descs):
                break  # enough (closing the generator stops the workers)
    short = {p["sizes"][s]: n for s, n in enumerate(sample.have) if n < p["n_words"]}
    if short:
        raise _StageTooSmall(stage, short, p["n_words"], len(order))
    try:
        fitted = sample.fit(p["n_words"], p["n_init"])
    except InvalidInput as exc:
        raise InvalidInput(f"stage {stage}, {exc.message}", hint=exc.hint) from exc
    centers = [c for c, _ in fitted]
    rows = [(s, c, inertia) for s, (c, inertia) in enumerate(fitted)]
    with warehouse.transaction(con):
        for s, c, inertia in rows:
            con.execute("insert into codebooks (feature_set_id, stage, scale, n_words, centers, "
                        "inertia) values (?, ?, ?, ?, ?, ?)",
                        [fsid, stage, s, len(c), c.reshape(-1).tolist(), inertia]).fetchall()
    return centers, cache


class _StageTooSmall(InvalidInput):
    """A stage has fewer non-zero descriptors (at some SIFT size) than the codebook has
    words: k-means cannot make the codebook, so the stage is skipped (see :func:`_run_bow`)."""

    def __init__(self, stage: str, short: dict[int, int], n_words: int, n_sections: int):
        fewest = min(short.values())
        sizes = ", ".join(f"{n:,} at keypoint size {k}" for k, n in short.items())
        super().__init__(
            f"too few non-zero SIFT descriptors for a {n_words}-word codebook: {sizes} "
            f"(from {n_sections} section(s))",
            hint=f"a set with fewer words (e.g. {fewest // 4}) or a smaller grid step covers it"
            if fewest // 4 >= 2 else "it needs more (or larger) sections, or a smaller grid step")
        self.stage = stage


def bow_set_name(n_words: int = bowmod.N_WORDS, step: int = bowmod.STEP) -> str:
    """``bow``; a non-default number of words or grid step adds ``.w<n>`` / ``.s<step>``."""
    name = "bow"
    if n_words != bowmod.N_WORDS:
        name += f".w{n_words}"
    if step != bowmod.STEP:
        name += f".s{step}"
    return name


def _mark_stage(con, fsid: int, stage: str, status: str, reason: str | None = None) -> None:
    """Record that set ``fsid`` is finished at ``stage``, or skipped it (and why)."""
    with warehouse.transaction(con):
        con.execute("delete from feature_set_stages where feature_set_id = ? and stage = ?",
                    [fsid, stage]).fetchall()
        con.execute("insert into feature_set_stages (feature_set_id, stage, status, reason) "
                    "values (?, ?, ?, ?)", [fsid, stage, status, reason]).fetchall()


def _run_bow(con, db_path: Path, opts: dict, result: FeaturizeResult) -> None:
    """Bag of words, stage by stage. A stage with fewer non-zero SIFT descriptors than the
    codebook has words is skipped: no codebook and no vectors for it, the reason in
    ``result.skipped`` and ``feature_set_stages``, a message; the other stages go on, and
    the set is finished (and usable by ``fit``) stage by stage."""
    asked = opts.get("bow") or {}
    name = bow_set_name(asked.get("n_words", bowmod.N_WORDS), asked.get("step", bowmod.STEP))
    found = _existing_set(con, name)
    p = _bow_params(opts, found[1] if found else None)
    result.names = [name]
    dim = bowmod.bow_dim(p["n_words"], len(p["sizes"]), p["n_intervals"])
    fsid = _ensure_set(con, name, "bow", dim, p, _BOW_HINTS)
    stages, scope = _scope(con, opts["stages"])
    sift = None
    if p["sift"] == "torch":
        # Workers only decode; SIFT and word counts run here, on the device.
        sift = TorchDenseSift(p["sizes"], p["step"], resolve_device(opts["device"]))
        workers = _default_workers() if opts["workers"] is None else opts["workers"]
    else:
        # SIFT is the heavy part here: one worker per core.
        workers = (os.cpu_count() or 1) if opts["workers"] is None else opts["workers"]
    if found is not None and p["sift"] == "opencv" and sift is None and \
            resolve_device(opts["device"]).type == "cuda":
        _say(opts["progress"], "bow: this set was started with OpenCV SIFT, so it goes on "
                               "with OpenCV on the CPU (a new set would use the GPU)")
    chunk_size = opts["chunk_size"] or DEFAULT_CHUNK
    failed: set[int] = set()
    done = _done(con, [fsid])[fsid]
    images_root = warehouse.images_dir(db_path)
    if scope is not None:
        ids_all = [int(e) for e in scope.column("experiment_id").to_pylist()]
        stage_of = dict(zip(ids_all, scope.column("stage").to_pylist(), strict=True))
        for stage in stages:
            ids = [e for e in ids_all if stage_of[e] == stage]
            chunks = [c for c in _chunks(ids, chunk_size) if set(c) - done]
            if chunks:
                try:
                    _bow_stage(con, fsid, stage, ids, chunks, done, images_root, p, workers,
                               sift, opts, result, failed)
                except _StageTooSmall as exc:
                    result.skipped[stage] = exc.message
                    _mark_stage(con, fsid, stage, "skipped", str(exc))
                    _say(opts["progress"], f"{name}: stage {stage} skipped: {exc}")
                    continue
                done = _done(con, [fsid])[fsid]
            if not set(ids) - failed - done:
                _mark_stage(con, fsid, stage, "finished")
    all_stages, all_scope = _scope(con, None)
    eligible = set(int(e) for e in all_scope.column("experiment_id").to_pylist()) \
        if all_scope else set()
    # Experiments of skipped stages do not hold the set back (fit names the skip).
    skipped = {int(r[0]) for r in con.execute(
        "select e.experiment_id from experiments e join feature_set_stages f using (stage) "
        "where f.feature_set_id = ? and f.status = 'skipped'", [fsid]).fetchall()}
    result.finished = _finish(con, {name: fsid}, eligible, failed | skipped)


def _bow_stage(con, fsid: int, stage: str, ids: list[int], chunks: list[list[int]],
               done: set[int], images_root: Path, p: dict, workers: int,
               sift: TorchDenseSift | None, opts: dict, result: FeaturizeResult,
               failed: set[int]) -> None:
    """Codebooks (built or loaded) and word counts of the chunks of one stage."""
    centers = _load_codebooks(con, fsid, stage, len(p["sizes"]))
    cache: dict[int, list[np.ndarray]] = {}
    if centers is None:
        centers, cache = _build_codebooks(con, fsid, stage, _sections(con, images_root, ids),
                                          p, workers, opts, result, sift)
    sections = _sections(con, images_root, [e for c in chunks for e in c])
    by_exp: dict[int, list[_Section]] = {}
    for s in sections:
        by_exp.setdefault(s.experiment_id, []).append(s)
    fresh = [s.path for s in sections if s.section_id not in cache]
    if sift is None:
        from_cache = functools.partial(bowmod.section_counts, centers_per_scale=centers)
    else:
        from_cache = functools.partial(sift.section_counts, None, sift.codebooks(centers))
    with _progress(opts["progress"], f"featurize bow {stage}", len(sections)) as adv, \
            closing(_counted(fresh, p, centers, workers, sift)) as counts:
        # One worker pool for the stage; results come back in section order.
        for c in chunks:
            secs = [s for e in c for s in by_exp.get(e, [])]
            got = [(from_cache(cache.pop(s.section_id)), None)
                   if s.section_id in cache else next(counts) for s in secs]
            _write_bow_chunk(con, fsid, c, done, secs, got, p, opts, result, failed)
            adv(len(secs))


def _write_bow_chunk(con, fsid, ids, done, secs, counts, p, opts, result, failed) -> None:
    ok: dict[int, list[tuple[_Section, np.ndarray]]] = {}
    for sec, (vec, err) in zip(secs, counts, strict=True):
        if err is not None:
            text = _problem(sec, err)
            if opts["on_error"] == "fail":
                raise InvalidInput(f"unreadable image: {text}",
                                   hint="fix or remove the file, or re-run with --on-error skip "
                                        "(chunks already written are kept)")
            result.problems.append(text)
            _say(opts["progress"], f"skipped: {text}")
            continue
        ok.setdefault(sec.experiment_id, []).append((sec, vec))
    write = [e for e in ids if e not in done and e in ok]
    for e in ids:
        if e not in ok and e not in done:
            failed.add(e)
            result.problems.append(f"experiment {e}: no readable section, no vector written")
    if not write:
        return
    sec_ids, sec_vecs, exp_vecs = [], [], []
    for e in write:
        items = ok[e]
        counts = np.stack([v for _, v in items])
        iv = bowmod.interval_index([s.position for s, _ in items],
                                   [s.section_number for s, _ in items], p["n_intervals"])
        exp_vecs.append(bowmod.experiment_vector(counts, iv, p["n_intervals"]))
        sec_ids += [s.section_id for s, _ in items]
        sec_vecs.append(counts)
    with warehouse.transaction(con):
        # Section counts are kept: later steps can regroup them (other intervals, pooling).
        store.insert_vectors(con, "section_features",
                             {"feature_set_id": np.full(len(sec_ids), fsid, dtype=np.int32),
                              "section_id": np.asarray(sec_ids, dtype=np.int64)},
                             np.concatenate(sec_vecs))
        store.write_experiment_features(con, fsid, write, np.stack(exp_vecs))
    name = bow_set_name(p["n_words"], p["step"])
    result.written[name] = result.written.get(name, 0) + len(write)


# --------------------------------------------------------------------------- grid


def _run_grid(con, db_path: Path, opts: dict, result: FeaturizeResult) -> None:
    shapes = con.execute(
        "select e.stage, g.nx, g.ny, g.nz, count(*) from expression_grids g "
        "join experiments e using (experiment_id) group by all order by all").fetchall()
    if not shapes:
        raise NotFound("the warehouse has no expression grids",
                       hint="ingest a source that provides them (synthetic atlas, Allen grids)")
    distinct = {(nx, ny, nz) for _, nx, ny, nz, _ in shapes}
    by_stage: dict[str, tuple[int, int, int]] = {}
    for stage, nx, ny, nz, _ in shapes:
        if stage in by_stage and len(distinct) > 1:
            raise InvalidInput(f"stage {stage} has expression grids of different shapes",
                               hint="a grid feature set needs one shape per stage")
        by_stage[stage] = (nx, ny, nz)
    # One shape in the warehouse -> one set "grid"; otherwise one set per stage.
    def set_name(stage: str) -> str:
        return "grid" if len(distinct) == 1 else f"grid.{stage}"

    stages = list(by_stage) if opts["stages"] is None else list(opts["stages"])
    unknown = [s for s in stages if s not in by_stage]
    if unknown:
        raise NotFound(f"no expression grids of stage {', '.join(unknown)}",
                       hint="stages with grids: " + ", ".join(by_stage))
    chunk_size = max(opts["chunk_size"] or DEFAULT_CHUNK, 64)
    fsids: dict[str, int] = {}
    for stage in stages:
        name = set_name(stage)
        shape = by_stage[stage]
        if name not in fsids:
            fsids[name] = _ensure_set(con, name, "grid", int(np.prod(shape)),
                                      {"shape": list(shape), "missing": "-1 -> 0"})
    result.names = list(fsids)
    done = _done(con, list(fsids.values()))
    ids_tbl = con.sql("select g.experiment_id, e.stage from expression_grids g join experiments "
                      "e using (experiment_id) where list_contains($stages, e.stage) "
                      "order by g.experiment_id", params={"stages": stages}).to_arrow_table()
    ids = [int(e) for e in ids_tbl.column("experiment_id").to_pylist()]
    stage_of = dict(zip(ids, ids_tbl.column("stage").to_pylist(), strict=True))
    todo = [e for e in ids if e not in done[fsids[set_name(stage_of[e])]]]
    with _progress(opts["progress"], "featurize grid", len(todo), "experiments") as advance:
        for c in _chunks(todo, chunk_size):
            tbl = con.sql(query_text("featurize_grids"),
                          params={"experiment_ids": c}).to_arrow_table()
            got = [int(e) for e in tbl.column("experiment_id").to_pylist()]
            x = store.list_array_to_matrix(tbl.column("energy"))
            with warehouse.transaction(con):
                for name, fsid in fsids.items():
                    rows = [i for i, e in enumerate(got) if set_name(stage_of[e]) == name]
                    if not rows:
                        continue
                    feats = GridFeatures(shape=by_stage[stage_of[got[rows[0]]]]).fit(None)
                    store.write_experiment_features(con, fsid, [got[i] for i in rows],
                                                    feats.transform(list(x[rows])))
                    result.written[name] = result.written.get(name, 0) + len(rows)
            advance(len(c))
    all_ids = {int(r[0]) for r in con.execute(
        "select experiment_id from expression_grids").fetchall()}
    for name, fsid in fsids.items():
        eligible = {e for e in all_ids if e in stage_of and set_name(stage_of[e]) == name}
        if name == "grid":
            eligible = all_ids
        result.finished += _finish(con, {name: fsid}, eligible, set())


# --------------------------------------------------------------------------- entry points


def featurize_report(
    db_path: str | os.PathLike,
    extractor: str = "cnn",
    layers: Sequence[str] | None = None,
    pools: Sequence[str] = ("max",),
    stages: Sequence[str] | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    workers: int | None = None,
    weights: str | os.PathLike | None = None,
    image_size: int = DEFAULT_IMAGE_SIZE,
    on_error: str = "fail",
    progress: Progress | None = None,
    *,
    backbone: str = DEFAULT_BACKBONE,
    spatial: int | None = None,
    chunk_size: int | None = None,
    bow: dict | None = None,
    engine: str = "local",
    ray: Any = None,
    atlas: dict | None = None,
) -> FeaturizeResult:
    """Compute (or finish) feature sets; see :func:`featurize`. Returns what was done.

    ``engine="ray"`` computes CNN sets on a Ray cluster (:mod:`ishwh.features.ray_engine`;
    ``ray``: its :class:`~ishwh.features.ray_engine.RayOptions`). Same sets, same vectors as
    the local engine.
    """
    if extractor not in EXTRACTORS:
        raise InvalidInput(f"extractor must be one of {', '.join(EXTRACTORS)}, got {extractor!r}",
                           param="extractor")
    if engine not in ENGINES:
        raise InvalidInput(f"engine must be local or ray, got {engine!r}", param="engine")
    if engine == "ray":
        from ishwh.features.ray_engine import RayOptions, import_ray  # noqa: PLC0415

        if extractor != "cnn":
            raise InvalidInput(f"the Ray engine computes cnn feature sets, not {extractor}",
                               hint="run this extractor with the local engine", param="engine")
        import_ray()  # says how to install Ray before any work
        ray = ray if isinstance(ray, RayOptions) else RayOptions(**(ray or {}))
        ray.check()
    elif ray is not None:
        raise InvalidInput("Ray options apply to the Ray engine only", param="ray")
    if on_error not in ON_ERROR:
        raise InvalidInput(f"on_error must be skip or fail, got {on_error!r}", param="on_error")
    pools = [pools] if isinstance(pools, str) else list(pools)
    bad = [p for p in pools if p not in POOLS]
    if bad or not pools:
        raise InvalidInput(f"pool must be max and/or mean, got {', '.join(bad) or 'nothing'}",
                           param="pool")
    if isinstance(layers, str):
        layers = [x.strip() for x in layers.split(",") if x.strip()]
    for label, v in (("batch_size", batch_size), ("chunk_size", chunk_size)):
        if v is not None and v < 1:
            raise InvalidInput(f"{label} must be >= 1, got {v}", param=label)
    if workers is not None and workers < 0:
        raise InvalidInput(f"workers must be >= 0, got {workers}", param="workers")
    if image_size < 32:
        raise InvalidInput(f"image_size must be >= 32, got {image_size}", param="image_size")
    if spatial is not None and spatial < 1:
        raise InvalidInput(f"spatial must be >= 1, got {spatial}", param="spatial")
    if extractor in ("cnn", "bow"):
        resolve_device(device)  # reject --device cuda without a GPU before any work
    opts = dict(layers=layers, pools=pools, stages=stages, device=device, batch_size=batch_size,
                workers=workers, weights=weights, image_size=image_size, on_error=on_error,
                progress=progress, backbone=backbone, spatial=spatial, chunk_size=chunk_size,
                bow=bow, ray=ray if engine == "ray" else None)
    result = FeaturizeResult(names=[])
    path = Path(db_path)
    with warehouse.connect(path) as con:
        if extractor == "atlas":  # structure features: ishwh/atlas/features.py
            from ishwh.atlas.features import run_atlas  # noqa: PLC0415

            if layers and len(layers) > 1:
                raise InvalidInput("atlas cnn features take one layer", param="layers")
            out = run_atlas(con, path, list(stages) if stages else None, progress,
                            layer=layers[0] if layers else None, device=device,
                            batch_size=batch_size, **(atlas or {}))
            return FeaturizeResult(names=out["names"], written=out["written"],
                                   problems=out["problems"], finished=out["finished"])
        run = {"cnn": _run_cnn, "bow": _run_bow, "grid": _run_grid}[extractor]
        run(con, path, opts, result)
    return result


def featurize(
    db_path: str | os.PathLike,
    extractor: str = "cnn",
    layers: Sequence[str] | None = None,
    pools: Sequence[str] = ("max",),
    stages: Sequence[str] | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    workers: int | None = None,
    weights: str | os.PathLike | None = None,
    image_size: int = DEFAULT_IMAGE_SIZE,
    on_error: str = "fail",
    progress: Progress | None = None,
    **kwargs: Any,
) -> list[str]:
    """Compute feature sets for the experiments of a warehouse; return their names.

    Parameters
    ----------
    db_path: the warehouse file.
    extractor: ``cnn`` (one set per layer x pool, named ``<backbone>.<layer>.<pool>``),
        ``bow`` (set ``bow``, 10,521 dims; ``bow={"n_words": N, "step": S}`` makes
        ``bow.w<N>.s<S>``; a stage with fewer non-zero SIFT descriptors than words is skipped
        and named, see docs/bag_of_words.md) or ``grid`` (set ``grid``, nx*ny*nz dims).
    layers: CNN module names (default :data:`ishwh.features.DEFAULT_LAYERS`).
    pools: pooling over the sections of an experiment: ``max`` and/or ``mean``.
    stages: restrict to these stages (default: all).
    device: ``auto``, ``cpu`` or ``cuda`` (bow: dense SIFT with torch on a GPU, see
        :func:`_bow_params`).
    batch_size, workers: images per forward pass; decoding processes (0 = in-process).
    weights: weights file for the backbone (default: the bundled efficientnet_lite0 ones).
    image_size: network input side (the paper's 231).
    on_error: ``fail`` (stop at an unreadable image; committed chunks are kept) or ``skip``.
    progress: where to report phases and skipped images (:class:`ishwh.progress.Progress`;
        the command line passes a rich bar on stderr); None reports nothing.
    kwargs: ``backbone``, ``spatial``, ``chunk_size``, ``bow`` (see :func:`featurize_report`).
    """
    return featurize_report(db_path, extractor, layers, pools, stages, device, batch_size,
                            workers, weights, image_size, on_error, progress, **kwargs).names
