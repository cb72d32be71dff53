"""``featurize --extractor atlas`` in the warehouse: the plan, one chunk computed, one chunk
written, and the local engine's loop over them. The Ray engine (:mod:`ishwh.ray.featurize`)
runs the same plan on its driver and the same :meth:`AtlasExtractor.compute` in its actors,
so the two engines give the same vectors and the same ``section_alignments`` rows.

- :func:`atlas_plan` (beside the warehouse): the sets (``atlas.stain``; ``atlas.cnn`` with its
  channel projection, fitted on a sample of sections when the set is new), their structure
  slots, what each experiment lacks, each stage's registration model calibrated on a fixed
  sample of its sections (the scale prior; at embryo stages whether the sections show the
  embryo around the brain), and the work cut into chunks of one stage's experiments.
- :meth:`AtlasExtractor.compute` (no warehouse): one chunk's sections placed on the reference
  (a stored placement is reused; a new one is registered), the stain and CNN sums of every
  structure, pooled per experiment -> :class:`ChunkResult`.
- :func:`write_chunk`: a chunk's vectors, seen counts and new placements into the warehouse
  (the caller holds the transaction: one per chunk locally, one per job on Ray).

The measurements themselves (stain statistics, pooling, the fill of unseen structures) are in
:mod:`ishwh.atlas.features` and :mod:`ishwh.atlas.cnn_features`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import duckdb
import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from ishwh import store, warehouse
from ishwh.atlas import alignments
from ishwh.atlas import cnn_features as cnn_mod
from ishwh.atlas import reference as ref_mod
from ishwh.atlas.features import (
    FEATURE_SIZE,
    MIN_PIXELS,
    SET_NAME,
    STAINED,
    STATS,
    STRONG,
    UNSEEN,
    WHAT,
    fill_unseen,
    pool_experiment,
    section_sums,
    structure_layout,
    subtree_matrix,
)
from ishwh.atlas.reference import Reference
from ishwh.atlas.register import CALIBRATION, RegistrationModel, project_index
from ishwh.errors import InvalidInput, NotFound
from ishwh.features import sets
from ishwh.features.imageio import imdecode, read_bytes
from ishwh.features.options import FeaturizeOptions, FeaturizeResult
from ishwh.progress import or_silent

CHUNK = 32          # experiments per chunk (one transaction locally, one partition on Ray)
BATCH = 8           # sections per forward pass of atlas.cnn


def read_gray(path: str, data: np.ndarray | None = None) -> np.ndarray:
    """A section file as full-size gray uint8 (from ``data``, its bytes, when given)."""
    return imdecode(path, read_bytes(path) if data is None else data, cv2.IMREAD_GRAYSCALE,
                    cv2.COLOR_RGB2GRAY)


def read_color(path: str, data: np.ndarray | None = None) -> np.ndarray:
    """A section file as full-size BGR uint8 (from ``data``, its bytes, when given)."""
    return imdecode(path, read_bytes(path) if data is None else data, cv2.IMREAD_COLOR)


# --------------------------------------------------------------------------- compute


@dataclass
class StageWork:
    """One stage's reference, its registration model (calibrated) and the matrix that adds
    the reference's leaf labels up into every structure of the ontology."""

    ref: Reference
    model: RegistrationModel
    sub: sp.csr_matrix

    @classmethod
    def make(cls, ref: Reference, ids: np.ndarray, parent: np.ndarray,
             calibration: tuple[bool, float | None] | None = None) -> StageWork:
        """``calibration``: ``(surroundings, scale_prior)`` of a model calibrated elsewhere
        (:meth:`calibration`), so an actor places sections as the driver's model would."""
        model = RegistrationModel(ref)
        if calibration is not None:
            model.surroundings, model.scale_prior = calibration
        return cls(ref, model, subtree_matrix(ids, parent, ref.compact[0]))

    def calibration(self) -> tuple[bool, float | None]:
        return self.model.surroundings, self.model.scale_prior


@dataclass
class ChunkResult:
    """What one chunk of experiments gives (``written[set]``: the experiments of its rows of
    ``vectors[set]``; ``seen[set]``: (S,) sections that showed each structure, summed over
    them; ``failed``: experiments with sections, none of them readable: no vector)."""

    written: dict[str, list[int]]
    vectors: dict[str, np.ndarray]
    seen: dict[str, np.ndarray]
    failed: list[int]
    alignments: list[list]          # new section_alignments rows (alignments.row)
    registration: dict[str, float]  # sections, ok, not_ok, quality_sum
    problems: list[str]             # sections left out (registration not ok)


@dataclass
class AtlasExtractor:
    """Everything a chunk is computed with, and nothing of the warehouse: the ontology's
    layout, the sets asked, the network (``atlas.cnn``) and each stage's :class:`StageWork`."""

    ids: np.ndarray
    parent: np.ndarray
    names: list[str]
    fill: dict[str, bool]      # set -> unseen structures take their ancestor's numbers
    cnn: cnn_mod.StructureCNN | None
    batch_size: int
    stages: dict[str, StageWork] = field(default_factory=dict)

    @property
    def cnn_name(self) -> str | None:
        return None if self.cnn is None else cnn_mod.set_name(self.cnn.layer)

    def dim(self, name: str) -> int:
        """Floats per experiment of set ``name``: its statistics for every structure."""
        k = len(STATS) if name == SET_NAME else len(cnn_mod.stat_names())
        return int(self.ids.size) * k

    def state(self) -> dict:
        """What a Ray actor rebuilds this extractor from (:meth:`from_state`)."""
        cnn = None if self.cnn is None else {
            "layer": self.cnn.layer, "input_size": self.cnn.input_size,
            "projection": self.cnn.projection}
        return {"ids": self.ids, "parent": self.parent, "names": self.names,
                "fill": self.fill, "cnn": cnn, "batch_size": self.batch_size,
                "stages": {st: (w.ref, w.calibration()) for st, w in self.stages.items()}}

    @classmethod
    def from_state(cls, state: dict, device: str = "auto") -> AtlasExtractor:
        c = state["cnn"]
        cnn = None if c is None else cnn_mod.StructureCNN(c["layer"], device, c["input_size"],
                                                          c["projection"])
        ext = cls(state["ids"], state["parent"], state["names"], state["fill"], cnn,
                  state["batch_size"])
        ext.stages = {st: StageWork.make(ref, ext.ids, ext.parent, cal)
                      for st, (ref, cal) in state["stages"].items()}
        return ext

    def input_args(self) -> tuple[int, int] | None:
        """``(input_size, stride)`` of the network input (:func:`cnn_features.prepare_input`),
        or None without ``atlas.cnn``."""
        return None if self.cnn is None else (self.cnn.input_size, self.cnn.stride)

    def compute(self, stage: str, experiments: Sequence[int], sections: Sequence[Any],
                stored: dict[int, alignments.Stored], need: dict[str, set[int]],
                gray_of: Callable[[int], np.ndarray | None],
                input_of: Callable[[int], tuple[np.ndarray, float]]) -> ChunkResult:
        """One chunk: ``sections`` (of ``experiments``, in order; ``.experiment_id``,
        ``.section_id``, ``.position``), their ``stored`` placements, the experiments each set
        lacks (``need``); ``gray_of(i)``: section i's gray image (None: unreadable, left out),
        ``input_of(i)``: its network input and scale (asked only for ``atlas.cnn``)."""
        work = self.stages[stage]
        ref, model, sub = work.ref, work.model, work.sub
        n_leaf = ref.compact[0].size
        cnn, cnn_name = self.cnn, self.cnn_name
        reg = {"sections": 0, "ok": 0, "not_ok": 0, "quality_sum": 0.0}
        new_align, problems = [], []
        by_exp: dict[int, dict[str, list]] = {}
        has_sections, read = set(), set()
        cnn_in, cnn_lab, cnn_exp = [], [], []
        for i, s in enumerate(sections):
            e = s.experiment_id
            has_sections.add(e)
            gray = gray_of(i)
            if gray is None:
                continue
            read.add(e)
            al = stored.get(s.section_id)
            if al is None:
                a = model.register(gray, s.position)
                al = alignments.Stored(a.slice_index, a.affine, a.quality, a.ok,
                                       a.displacement, a.method)
                new_align.append(alignments.row(s.section_id, stage, a, model.params()))
            k, aff, q = al.slice_index, al.affine, al.quality
            reg["sections"] += 1
            reg["quality_sum"] += q
            by_exp.setdefault(e, {n: [] for n in self.names})
            if not al.ok:
                reg["not_ok"] += 1
                problems.append(f"experiment {e}, section {s.section_id}: registration "
                                f"quality {q:.2f} < {model.min_quality} (left out)")
                continue
            reg["ok"] += 1
            if SET_NAME in self.names and e in need[SET_NAME]:
                by_exp[e][SET_NAME].append(_stain_sums(
                    gray, ref.slice_index_labels(k), aff, n_leaf, sub, al.displacement))
            if cnn is not None and e in need[cnn_name]:
                inp, f = input_of(i)
                cnn_in.append(inp)
                cnn_lab.append(project_index(ref.slice_index_labels(k), aff, inp.shape[:2], f,
                                             al.displacement))
                cnn_exp.append(e)
        if cnn_in:
            for fmap, lab, e in zip(cnn.maps(cnn_in, self.batch_size), cnn_lab, cnn_exp,
                                    strict=True):
                by_exp[e][cnn_name].append(cnn.section_sums(fmap, lab, n_leaf, sub))
        failed = [e for e in experiments if e in has_sections and e not in read]
        out = ChunkResult({}, {}, {}, failed, new_align, reg, problems)
        n_struct = self.ids.size
        for name in self.names:
            write_ids = [e for e in experiments if e in need[name] and e not in failed]
            if not write_ids:
                continue
            vecs, seen_sum = [], np.zeros(n_struct, dtype=np.int64)
            for e in write_ids:
                pooled, seen = _pool(name, by_exp.get(e, {}).get(name, []), n_struct)
                if self.fill[name]:
                    pooled = fill_unseen(pooled, seen > 0, self.parent,
                                         keep=[pooled.shape[1] - 1])
                vecs.append(pooled.ravel())
                seen_sum += seen
            out.written[name], out.vectors[name] = write_ids, np.stack(vecs)
            out.seen[name] = seen_sum
        return out


def _stain_sums(gray: np.ndarray, index_slice: np.ndarray, aff: np.ndarray, n_ids: int,
                sub: sp.csr_matrix, displacement: np.ndarray | None = None) -> np.ndarray:
    """(4, S) stain sums per structure of one registered section, at ``FEATURE_SIZE``."""
    h, w = gray.shape
    f = min(1.0, FEATURE_SIZE / max(h, w))
    small = gray if f == 1.0 else cv2.resize(
        gray, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    lab = project_index(index_slice, aff, small.shape, f, displacement)
    return (sub @ section_sums(small, lab, n_ids).T).T


def _pool(name: str, per: list, n_struct: int) -> tuple[np.ndarray, np.ndarray]:
    """One experiment's vector of set ``name`` from its sections (zeros when none)."""
    if not per:
        k = len(STATS) if name == SET_NAME else len(cnn_mod.stat_names())
        return np.zeros((n_struct, k), np.float32), np.zeros(n_struct, np.int64)
    if name == SET_NAME:
        return pool_experiment(per)
    return cnn_mod.pool_experiment([a for a, _ in per], [s for _, s in per])


# --------------------------------------------------------------------------- plan


@dataclass
class AtlasPlan:
    """What an atlas run has to do; the local and the Ray engine share it."""

    ext: AtlasExtractor
    fsids: dict[str, int]
    done: dict[str, set[int]]               # set -> experiments it holds
    stages: list[str]                       # the stages asked
    chunks: list[tuple[str, list[int]]]     # (stage, experiments) to compute, in order
    failed: set[int] = field(default_factory=set)
    registration: dict[str, dict] = field(default_factory=dict)  # stage -> summed counts

    def need(self, experiments: Sequence[int]) -> dict[str, set[int]]:
        """The experiments of ``experiments`` each set lacks."""
        return {n: {e for e in experiments if e not in self.done[n]} for n in self.ext.names}


def atlas_options(opts: FeaturizeOptions) -> dict:
    """The atlas parameters of featurize options: ``stages``, ``what``, ``layer``,
    ``device``, ``batch_size``, ``chunk_size``."""
    layers = list(opts.layers or [])
    if len(layers) > 1:
        raise InvalidInput("atlas cnn features take one layer", param="layers")
    asked = dict(opts.atlas or {})
    unknown = sorted(set(asked) - {"what"})
    if unknown:
        raise InvalidInput(f"unknown atlas parameter {', '.join(unknown)}", param="atlas")
    return {"stages": list(opts.stages) if opts.stages else None,
            "what": asked.get("what", ("stain",)), "layer": layers[0] if layers else None,
            "device": opts.device, "batch_size": opts.batch_size or BATCH,
            "chunk_size": opts.chunk_size or CHUNK}


def atlas_plan(con: duckdb.DuckDBPyConnection, db_path: Path, opts: FeaturizeOptions,
               result: FeaturizeResult,
               before_write: Callable[[list[int]], None] | None = None) -> AtlasPlan:
    """The sets, their slots, what is missing and each stage's calibrated registration model
    (``opts``: :func:`atlas_options`). Checks everything before the first write;
    ``before_write(experiment ids)`` runs just before it, only when something is missing
    (the Ray engine connects and checks its workers there)."""
    a = atlas_options(opts)
    stages, layer = a["stages"], a["layer"]
    what = a["what"]
    what = list(dict.fromkeys([what] if isinstance(what, str) else what))
    bad = [w for w in what if w not in WHAT]
    if bad or not what:
        raise InvalidInput(f"atlas features are {' and/or '.join(WHAT)}, got "
                           f"{', '.join(bad) or 'nothing'}", param="what")
    if layer is not None and "cnn" not in what:
        raise InvalidInput("a layer applies to the atlas cnn features only", param="layers")
    # the network first: an unknown layer or --device cuda without a GPU, before any write
    cnn = cnn_mod.StructureCNN(layer or cnn_mod.LAYER, a["device"]) if "cnn" in what else None
    have = [r[0] for r in con.execute(
        "select stage from reference_atlases order by stage").fetchall()]
    if stages is None:
        stages = have
        if not stages:
            raise NotFound("no stage has a reference atlas",
                           hint="ingest one with `ishwh ingest reference --stage STAGE FILE`")
    for st in stages:
        if st not in have:
            ref_mod.load(con, st)   # raises the one-line NotFound with its hint
    ids, parent = structure_layout(con)
    if ids.size == 0:
        raise NotFound("the warehouse has no structures", hint="ingest an ontology first")
    names = ([SET_NAME] if "stain" in what else []) + \
        ([cnn_mod.set_name(cnn.layer)] if cnn is not None else [])
    result.names = list(names)
    result.written = dict.fromkeys(names, 0)
    exp_of = {st: [int(r[0]) for r in con.execute(
        "select experiment_id from experiments where stage = ? order by experiment_id",
        [st]).fetchall()] for st in stages}
    if before_write is not None:
        scope = [e for st in stages for e in exp_of[st]]
        found = {n: sets.existing_set(con, n) for n in names}
        held = sets.done(con, [f[0] for f in found.values() if f is not None])
        if any(f is None or set(scope) - held[f[0]] for f in found.values()):
            before_write(scope)
    images_root = warehouse.images_dir(db_path)
    fsids: dict[str, int] = {}
    fill: dict[str, bool] = {}
    if "stain" in what:
        params = {"stats": list(STATS), "feature_size": FEATURE_SIZE, "min_pixels": MIN_PIXELS,
                  "stained": STAINED, "strong": STRONG, "n_structures": int(ids.size),
                  "layout": "feature_set_structures (slot order = graph order)"}
        old = sets.existing_set(con, SET_NAME)
        if old is None or "unseen" in old[1]:   # a set made before the fill keeps zeros
            params["unseen"] = UNSEEN
        fill[SET_NAME] = "unseen" in params
        fsids[SET_NAME] = sets.ensure_set(con, SET_NAME, "atlas", int(ids.size) * len(STATS),
                                          params)
    if cnn is not None:
        cnn_name, fsids[cnn_name] = _cnn_set(con, images_root, stages, ids, cnn, opts, result)
        fill[cnn_name] = True
    for name, fsid in fsids.items():
        _layout(con, fsid, name, ids)
    done_by = sets.done(con, list(fsids.values()))
    done = {name: done_by[fsid] for name, fsid in fsids.items()}
    ext = AtlasExtractor(ids, parent, names, fill, cnn, a["batch_size"])
    plan = AtlasPlan(ext, fsids, done, list(stages), [])
    for stage in stages:
        todo = [e for e in exp_of[stage] if any(e not in done[n] for n in names)]
        plan.registration[stage] = {"sections": 0, "ok": 0, "not_ok": 0, "quality_sum": 0.0}
        if not todo:
            continue
        work = StageWork.make(ref_mod.load(con, stage), ids, parent)
        # the stage's scale, from a fixed sample of its sections (the same on every run)
        exp_ids = exp_of[stage]
        sample = sets.sections(con, images_root, exp_ids[::max(1, len(exp_ids) // 8)])
        step = max(1, len(sample) // CALIBRATION)
        work.model.calibrate([(g, sec.position) for sec, g in _read_sample(
            sample[::step][:CALIBRATION], read_gray, opts.on_error, result)])
        ext.stages[stage] = work
        plan.chunks += [(stage, c) for c in sets.chunks(todo, a["chunk_size"])]
    return plan


def _layout(con: duckdb.DuckDBPyConnection, fsid: int, name: str, ids: np.ndarray) -> None:
    """Write the set's structure slots (graph order), or check they still fit the ontology."""
    n_slots = con.execute("select count(*) from feature_set_structures where feature_set_id = ?",
                          [fsid]).fetchall()[0][0]
    if n_slots == 0:
        with warehouse.transaction(con):
            con.executemany("insert into feature_set_structures values (?, ?, ?, 0)",
                            [[fsid, int(s), i] for i, s in enumerate(ids)])
        return
    slots = np.array([r[0] for r in con.execute(
        "select structure_id from feature_set_structures where feature_set_id = ? "
        "order by slot", [fsid]).fetchall()], dtype=np.int64)
    if not np.array_equal(slots, ids):
        raise InvalidInput(f"the ontology changed since feature set {name} was made",
                           hint=f"delete the set {name} and featurize again")


def _read_sample(secs: list, read: Callable[[str], np.ndarray], on_error: str,
                 result: FeaturizeResult) -> list[tuple[Any, np.ndarray]]:
    """A sample's sections and images (calibration, projection), read beside the warehouse;
    an unreadable one stops the run in the words of the section loop, or is left out
    (``on_error="skip"``, named in ``result.problems``)."""
    out = []
    for sec in secs:
        try:
            out.append((sec, read(sec.path)))
        except InvalidInput as exc:
            sets.unreadable(sec, exc.message, on_error, result, None)
    return out


def _cnn_set(con: duckdb.DuckDBPyConnection, images_root: Path, stages: list[str],
             ids: np.ndarray, model: cnn_mod.StructureCNN, opts: FeaturizeOptions,
             result: FeaturizeResult) -> tuple[str, int]:
    """The atlas.cnn set of ``model``'s layer; when new, created with its channel
    projection, fitted on a sample of the stages' sections (set on ``model`` either way)."""
    layer = model.layer
    name = cnn_mod.set_name(layer)
    k = len(cnn_mod.stat_names())
    params = {"stats": cnn_mod.stat_names(), "unseen": UNSEEN,
              "backbone": "efficientnet_lite0", "layer": layer,
              "input_size": model.input_size, "stride": model.stride,
              "channels": model.channels, "n_components": cnn_mod.N_COMPONENTS,
              "pools": list(cnn_mod.POOLS), "min_pixels": cnn_mod.MIN_PIXELS,
              "n_structures": int(ids.size),
              "layout": "feature_set_structures (slot order = graph order)"}
    found = sets.existing_set(con, name)
    if found is not None and "projection" in found[1]:
        fsid = sets.ensure_set(con, name, "atlas", int(ids.size) * k, params)
        model.set_projection(found[1]["projection"])
        return name, fsid
    exps = [int(r[0]) for r in con.sql(
        "select experiment_id from experiments where list_contains($stages, stage) "
        "order by experiment_id", params={"stages": stages}).fetchall()]
    step = max(1, len(exps) // cnn_mod.SAMPLE_SECTIONS)
    secs = sets.sections(con, images_root, exps[::step][:cnn_mod.SAMPLE_SECTIONS])
    secs = secs[::max(1, len(secs) // cnn_mod.SAMPLE_SECTIONS)][:cnn_mod.SAMPLE_SECTIONS]
    if not secs:
        raise NotFound("no sections to featurize at the stages with a reference atlas")
    model.set_projection(model.fit_projection([model.prepare(img)[0] for _, img in _read_sample(
        secs, read_color, opts.on_error, result)]))
    fsid = sets.ensure_set(con, name, "atlas", int(ids.size) * k,
                           {**params, "projection": model.projection})
    return name, fsid


# --------------------------------------------------------------------------- write


def write_chunk(con: duckdb.DuckDBPyConnection, plan: AtlasPlan, stage: str,
                out: ChunkResult, result: FeaturizeResult) -> None:
    """One chunk's new placements, vectors and seen counts (the caller holds the
    transaction); its counts and problems into ``result`` and the plan."""
    alignments.insert(con, out.alignments)
    for name, write_ids in out.written.items():
        store.write_experiment_features(con, plan.fsids[name], write_ids, out.vectors[name])
        _add_seen(con, plan.fsids[name], plan.ext.ids, out.seen[name])
        result.written[name] = result.written.get(name, 0) + len(write_ids)
    result.problems += out.problems
    reg = plan.registration[stage]
    for k, v in out.registration.items():
        reg[k] += v


def _add_seen(con: duckdb.DuckDBPyConnection, fsid: int, ids: np.ndarray,
              seen: np.ndarray) -> None:
    nz = np.flatnonzero(seen)
    if nz.size == 0:
        return
    rows = pa.table({"structure_id": pa.array(ids[nz]), "n": pa.array(seen[nz])})
    with store.registered(con, rows) as name:
        con.execute(f"update feature_set_structures f set n_sections_seen = "
                    f"n_sections_seen + s.n from {name} s where f.feature_set_id = ? "
                    "and f.structure_id = s.structure_id", [fsid])


def atlas_finish(con: duckdb.DuckDBPyConnection, plan: AtlasPlan, result: FeaturizeResult
                 ) -> dict[str, dict]:
    """``finished_at`` on the sets that hold every experiment of a stage with a reference;
    returns the registration counts per stage (sections, ok, not_ok, mean_quality)."""
    eligible = {int(r[0]) for r in con.execute(
        "select e.experiment_id from experiments e join reference_atlases r using (stage)"
    ).fetchall()}
    result.finished = sets.finish(con, plan.fsids, eligible, plan.failed)
    return {st: {"sections": r["sections"], "ok": r["ok"], "not_ok": r["not_ok"],
                 "mean_quality": round(r["quality_sum"] / max(r["sections"], 1), 4)}
            for st, r in plan.registration.items()}


# --------------------------------------------------------------------------- local engine


def run_atlas(con: duckdb.DuckDBPyConnection, db_path: Path, opts: FeaturizeOptions,
              result: FeaturizeResult) -> dict[str, dict]:
    """Register and featurize every experiment of the stages (default: those with a
    reference) that a set lacks; resumable at chunk grain. ``opts.atlas["what"]``: ``stain``
    (set ``atlas.stain``) and/or ``cnn`` (set ``atlas.cnn``; ``layers``, ``device``,
    ``batch_size`` apply to it). Each section is registered, read and projected once for
    all of them. Unreadable sections follow ``opts.on_error``. Returns the registration
    counts per stage (:func:`atlas_finish`)."""
    progress = or_silent(opts.progress)
    t0 = time.perf_counter()
    plan = atlas_plan(con, db_path, opts, result)
    images_root = warehouse.images_dir(db_path)
    t1 = time.perf_counter()
    result.timings["setup"] = t1 - t0
    for stage in plan.stages:
        chunks = [c for st, c in plan.chunks if st == stage]
        progress.start(f"featurize atlas {stage}", sum(len(c) for c in chunks), "experiments")
        for chunk in chunks:
            secs = sets.sections(con, images_root, chunk)

            def gray_of(i: int, secs: list = secs) -> np.ndarray | None:
                try:
                    return read_gray(secs[i].path)
                except InvalidInput as exc:
                    sets.unreadable(secs[i], exc.message, opts.on_error, result, progress)
                    return None

            def input_of(i: int, secs: list = secs) -> tuple[np.ndarray, float]:
                return plan.ext.cnn.prepare(read_color(secs[i].path))

            stored = alignments.load(con, [s.section_id for s in secs])
            out = plan.ext.compute(stage, chunk, secs, stored, plan.need(chunk), gray_of,
                                   input_of)
            sets.no_section_read(out.failed, (), set(), plan.failed, result)
            with warehouse.transaction(con):
                write_chunk(con, plan, stage, out, result)
            progress.advance(len(chunk))
        progress.done()
    result.timings["compute"] = time.perf_counter() - t1
    return atlas_finish(con, plan, result)
