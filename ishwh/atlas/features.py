"""``featurize --extractor atlas``: stain statistics inside each structure's projected mask.

Per section: register it to the stage's reference (stored in ``section_alignments``; an
existing alignment is reused), project the slice's structure ids onto the image (reduced to
``FEATURE_SIZE`` pixels on the long side), and measure the stain per leaf label with one
``bincount``; a sparse subtree matrix adds leaves up to every structure. Per experiment the
sections are pooled into K statistics per structure (``STATS``):

- ``max_stained``: the largest stained fraction over the sections that show the structure,
- ``max_darkness``: the largest mean excess darkness,
- ``stained``: stained pixels / pixels over all those sections (area-weighted pooling),
- ``strong``: strongly stained pixels / pixels, likewise,
- ``seen``: the fraction of the experiment's sections that showed the structure.

Stain is "excess darkness" d = (b - gray) / b against the section's own unstained tissue
level b (the 90th percentile of the gray values of its tissue), so exposure and tissue tone
cancel; stained = d > 0.15, strong = d > 0.35.

Storage: one ``experiment_features`` vector per experiment, K numbers per structure of the
whole ontology in graph order (``feature_set_structures`` records slot and visibility).
For the paper's 1,071 structures that is 5,355 floats = 21 KB per experiment, 43 MB per
stage of 2,000 experiments: one row per experiment keeps fit's single read path and
resumability; a long table (experiment x structure) would be 2 M rows per stage to pivot.
Sections whose registration is not ok are left out and counted, never silently used.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import duckdb
import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from ishwh import store, warehouse
from ishwh.atlas import cnn_features as cnn_mod
from ishwh.atlas import reference as ref_mod
from ishwh.atlas.register import METHOD, RegistrationModel, project_index
from ishwh.errors import InvalidInput, NotFound
from ishwh.progress import Progress, or_silent

SET_NAME = "atlas.stain"
WHAT = ("stain", "cnn")
UNSEEN = "nearest seen ancestor"   # what a structure no section showed gets (fill_unseen)
STATS = ("max_stained", "max_darkness", "stained", "strong", "seen")
FEATURE_SIZE = 256       # long side (pixels) at which stain is measured
MIN_PIXELS = 12          # a structure covering fewer pixels is "not seen" on a section
STAINED, STRONG = 0.15, 0.35


def structure_layout(con: duckdb.DuckDBPyConnection) -> tuple[np.ndarray, np.ndarray]:
    """``(structure_ids in graph order, parent index or -1)`` of the warehouse ontology."""
    rows = con.execute("select structure_id, parent_id from structures "
                       "order by graph_order nulls last, structure_id").fetchall()
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    pos = {int(s): i for i, s in enumerate(ids)}
    parent = np.array([pos.get(int(p), -1) if p is not None else -1 for _, p in rows],
                      dtype=np.int64)
    return ids, parent


def subtree_matrix(ids: np.ndarray, parent: np.ndarray, leaf_ids: np.ndarray) -> sp.csr_matrix:
    """(S, L) 0/1: structure s contains leaf label l (l is s or below it)."""
    pos = {int(s): i for i, s in enumerate(ids)}
    rows, cols = [], []
    for j, lid in enumerate(leaf_ids.tolist()):
        i = pos.get(int(lid), -1)
        seen = set()
        while i >= 0 and i not in seen:
            seen.add(i)
            rows.append(i)
            cols.append(j)
            i = int(parent[i])
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(ids), len(leaf_ids)))


def excess_darkness(gray: np.ndarray, tissue: np.ndarray) -> np.ndarray:
    """(b - gray) / b clipped to 0..1, b = 90th percentile of the tissue's gray values."""
    vals = gray[tissue]
    b = float(np.percentile(vals, 90)) if vals.size else 255.0
    b = max(b, 1.0)
    return np.clip((b - gray.astype(np.float32)) / b, 0.0, 1.0)


def section_sums(gray: np.ndarray, index: np.ndarray, n_ids: int) -> np.ndarray:
    """(4, n_ids): pixels, summed darkness, stained and strong pixels per label index
    (``index`` from :func:`~ishwh.atlas.register.project_index`; index 0 = background)."""
    tissue = index != 0
    d = excess_darkness(gray, tissue)
    idx = index.ravel().astype(np.int64)
    dv = d.ravel()
    out = np.zeros((4, n_ids))
    out[0] = np.bincount(idx, minlength=n_ids)
    out[1] = np.bincount(idx, weights=dv, minlength=n_ids)
    out[2] = np.bincount(idx, weights=(dv > STAINED).astype(np.float64), minlength=n_ids)
    out[3] = np.bincount(idx, weights=(dv > STRONG).astype(np.float64), minlength=n_ids)
    out[:, 0] = 0.0   # background
    return out


def pool_experiment(per_section: list[np.ndarray], min_pixels: int = MIN_PIXELS
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Sections' (4, S) structure sums -> ((S, K) statistics, (S,) sections that showed it)."""
    n_struct = per_section[0].shape[1] if per_section else 0
    out = np.zeros((n_struct, len(STATS)), dtype=np.float32)
    if not per_section:
        return out, np.zeros(n_struct, dtype=np.int64)
    a = np.stack(per_section)                     # (n_sec, 4, S)
    area = a[:, 0]
    seen = area >= min_pixels
    safe = np.maximum(area, 1.0)
    frac = np.where(seen, a[:, 2] / safe, 0.0)
    dark = np.where(seen, a[:, 1] / safe, 0.0)
    tot = np.where(seen, area, 0.0).sum(0)
    tot_safe = np.maximum(tot, 1.0)
    out[:, 0] = frac.max(0)
    out[:, 1] = dark.max(0)
    out[:, 2] = np.where(seen, a[:, 2], 0.0).sum(0) / tot_safe
    out[:, 3] = np.where(seen, a[:, 3], 0.0).sum(0) / tot_safe
    out[:, 4] = seen.mean(0)
    return out, seen.sum(0)


def fill_unseen(pooled: np.ndarray, seen: np.ndarray, parent: np.ndarray,
                keep: Sequence[int] = ()) -> np.ndarray:
    """Structures an experiment's sections never showed take the statistics of their
    nearest ancestor that was shown (columns ``keep``, e.g. ``seen``, stay as they are).

    Six sections of a brain miss many small structures (on the real E11.5 anatomy 10-17 %
    of experiment x structure pairs at levels 5-9); zeros would leave their models only the
    base rate, while the region around them was measured. ``parent``: index or -1."""
    n = pooled.shape[0]
    src = np.where(seen, np.arange(n), parent)
    for _ in range(64):                       # deeper than any ontology
        bad = (src >= 0) & ~seen[np.maximum(src, 0)]
        if not bad.any():
            break
        src = np.where(bad, parent[np.maximum(src, 0)], src)
    out = pooled.copy()
    fill = ~seen & (src >= 0)
    cols = [c for c in range(pooled.shape[1]) if c not in set(keep)]
    out[np.ix_(fill, cols)] = pooled[np.ix_(src[fill], cols)]
    return out


def _read_gray(path: str) -> np.ndarray:
    gray = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if gray is None:
        raise InvalidInput(f"cannot read image {path}")
    return gray


def _read_color(path: str) -> np.ndarray:
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise InvalidInput(f"cannot read image {path}")
    return img


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


def _cnn_set(con: duckdb.DuckDBPyConnection, images_root: Path, stages: list[str],
             ids: np.ndarray, model: cnn_mod.StructureCNN) -> tuple[str, int]:
    """The atlas.cnn set of ``model``'s layer; when new, created with its channel
    projection, fitted on a sample of the stages' sections (set on ``model`` either way)."""
    from ishwh.features import sets  # noqa: PLC0415

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
    model.set_projection(model.fit_projection([model.prepare(_read_color(s.path))[0]
                                               for s in secs]))
    fsid = sets.ensure_set(con, name, "atlas", int(ids.size) * k,
                       {**params, "projection": model.projection})
    return name, fsid


def run_atlas(con: duckdb.DuckDBPyConnection, db_path: Path, stages: list[str] | None,
              progress: Progress | None = None, chunk_size: int = 32,
              what: Sequence[str] = ("stain",), layer: str | None = None,
              device: str = "auto", batch_size: int | None = None) -> dict:
    """Register and featurize every experiment of the stages (default: those with a
    reference); resumable. ``what``: ``stain`` (set ``atlas.stain``) and/or ``cnn`` (set
    ``atlas.cnn``, :mod:`ishwh.atlas.cnn_features`; ``layer``, ``device`` and
    ``batch_size`` apply to it). Each section is registered, read and projected once for
    all of them. Returns ``{"names", "written", "finished", "problems",
    "registration": {stage: {"sections", "ok", "not_ok", "mean_quality"}}}``."""
    from ishwh.features import sets  # noqa: PLC0415

    progress = or_silent(progress)
    what = list(dict.fromkeys([what] if isinstance(what, str) else what))
    bad = [w for w in what if w not in WHAT]
    if bad or not what:
        raise InvalidInput(f"atlas features are {' and/or '.join(WHAT)}, got "
                           f"{', '.join(bad) or 'nothing'}", param="what")
    if layer is not None and "cnn" not in what:
        raise InvalidInput("a layer applies to the atlas cnn features only", param="layers")
    # the network first: an unknown layer or --device cuda without a GPU, before any write
    cnn = cnn_mod.StructureCNN(layer or cnn_mod.LAYER, device) if "cnn" in what else None
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
        cnn_name, fsids[cnn_name] = _cnn_set(con, images_root, stages, ids, cnn)
        fill[cnn_name] = True
    for name, fsid in fsids.items():
        _layout(con, fsid, name, ids)
    done_by = sets.done(con, list(fsids.values()))
    done = {name: done_by[fsid] for name, fsid in fsids.items()}
    names = list(fsids)
    result = {"names": names, "written": dict.fromkeys(names, 0), "finished": [],
              "problems": [], "registration": {}}
    seen_total = {name: np.zeros(ids.size, dtype=np.int64) for name in names}
    for stage in stages:
        ref = ref_mod.load(con, stage)
        model = RegistrationModel(ref)
        leaf_ids = ref.compact[0]                 # [0, ids of the volume...]
        sub = subtree_matrix(ids, parent, leaf_ids)
        exp_ids = [int(r[0]) for r in con.execute(
            "select experiment_id from experiments where stage = ? order by experiment_id",
            [stage]).fetchall()]
        todo = [e for e in exp_ids if any(e not in done[n] for n in names)]
        reg = {"sections": 0, "ok": 0, "not_ok": 0, "quality_sum": 0.0}
        progress.start(f"featurize atlas {stage}", len(todo), "experiments")
        for chunk in sets.chunks(todo, chunk_size):
            secs = sets.sections(con, images_root, chunk)
            stored = _alignments(con, [s.section_id for s in secs])
            new_align, by_exp = [], {}
            cnn_in, cnn_lab, cnn_exp = [], [], []
            for s in secs:
                gray = _read_gray(s.path)
                al = stored.get(s.section_id)
                if al is None:
                    a = model.register(gray, s.position)
                    al = (a.slice_index, a.affine, a.quality, a.ok)
                    new_align.append([s.section_id, stage, a.slice_index,
                                      [float(v) for v in a.affine.ravel()], a.angle_deg,
                                      a.scale, METHOD, a.quality, a.ok,
                                      json.dumps(model.params())])
                k, aff, q, ok = al
                reg["sections"] += 1
                reg["quality_sum"] += q
                by_exp.setdefault(s.experiment_id, {n: [] for n in names})
                if not ok:
                    reg["not_ok"] += 1
                    result["problems"].append(
                        f"experiment {s.experiment_id}, section {s.section_id}: registration "
                        f"quality {q:.2f} < {model.min_quality} (left out)")
                    continue
                reg["ok"] += 1
                if SET_NAME in fsids and s.experiment_id not in done[SET_NAME]:
                    by_exp[s.experiment_id][SET_NAME].append(
                        _stain_sums(gray, ref.slice_index_labels(k), aff, leaf_ids.size, sub))
                if cnn is not None and s.experiment_id not in done[cnn_name]:
                    inp, f = cnn.prepare(_read_color(s.path))
                    cnn_in.append(inp)
                    cnn_lab.append(project_index(ref.slice_index_labels(k), aff,
                                                 inp.shape[:2], f))
                    cnn_exp.append(s.experiment_id)
            if cnn_in:
                for fmap, lab, e in zip(cnn.maps(cnn_in, batch_size or 8), cnn_lab, cnn_exp,
                                        strict=True):
                    by_exp[e][cnn_name].append(cnn.section_sums(fmap, lab, leaf_ids.size, sub))
            writes = {}
            for name in names:
                write_ids = [e for e in chunk if e not in done[name]]
                if not write_ids:
                    continue
                vecs = []
                for e in write_ids:
                    per = by_exp.get(e, {}).get(name, [])
                    pooled, seen = _pool(name, per, ids.size, cnn)
                    if fill[name]:
                        pooled = fill_unseen(pooled, seen > 0, parent, keep=[pooled.shape[1] - 1])
                    vecs.append(pooled.ravel())
                    seen_total[name] += seen
                writes[name] = (write_ids, np.stack(vecs))
            with warehouse.transaction(con):
                if new_align:
                    con.executemany(
                        "insert into section_alignments (section_id, stage, slice_index, affine, "
                        "angle_deg, scale, method, quality, ok, params) "
                        "values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", new_align)
                for name, (write_ids, x) in writes.items():
                    store.write_experiment_features(con, fsids[name], write_ids, x)
                    _add_seen(con, fsids[name], ids, seen_total[name])
            for name, (write_ids, _) in writes.items():
                seen_total[name][:] = 0
                result["written"][name] += len(write_ids)
            progress.advance(len(chunk))
        progress.done()
        n = max(reg["sections"], 1)
        result["registration"][stage] = {
            "sections": reg["sections"], "ok": reg["ok"], "not_ok": reg["not_ok"],
            "mean_quality": round(reg["quality_sum"] / n, 4)}
    eligible = {int(r[0]) for r in con.execute(
        "select e.experiment_id from experiments e join reference_atlases r using (stage)"
    ).fetchall()}
    result["finished"] = sets.finish(con, fsids, eligible, set())
    return result


def _stain_sums(gray: np.ndarray, index_slice: np.ndarray, aff: np.ndarray, n_ids: int,
                sub: sp.csr_matrix) -> np.ndarray:
    """(4, S) stain sums per structure of one registered section, at ``FEATURE_SIZE``."""
    h, w = gray.shape
    f = min(1.0, FEATURE_SIZE / max(h, w))
    small = gray if f == 1.0 else cv2.resize(
        gray, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    lab = project_index(index_slice, aff, small.shape, f)
    return (sub @ section_sums(small, lab, n_ids).T).T


def _pool(name: str, per: list, n_struct: int, cnn) -> tuple[np.ndarray, np.ndarray]:
    """One experiment's vector of set ``name`` from its sections (zeros when none)."""
    if not per:
        k = len(STATS) if name == SET_NAME else len(cnn_mod.stat_names())
        return np.zeros((n_struct, k), np.float32), np.zeros(n_struct, np.int64)
    if name == SET_NAME:
        return pool_experiment(per)
    return cnn_mod.pool_experiment([a for a, _ in per], [s for _, s in per])


def _alignments(con: duckdb.DuckDBPyConnection, section_ids: list[int]) -> dict:
    if not section_ids:
        return {}
    tbl = con.sql("select section_id, slice_index, affine, quality, ok from section_alignments "
                  "where list_contains($ids, section_id)",
                  params={"ids": section_ids}).fetchall()
    return {int(s): (int(k), np.asarray(a, dtype=np.float64).reshape(2, 3), float(q), bool(ok))
            for s, k, a, q, ok in tbl}


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


def featurize_atlas(db_path: str | os.PathLike, stages: list[str] | None = None,
                    progress: Progress | None = None, **kwargs) -> dict:
    """Open the warehouse and run :func:`run_atlas` (``kwargs``: its ``what``, ``layer``,
    ``device``, ``batch_size``)."""
    path = Path(db_path)
    with warehouse.connect(path) as con:
        return run_atlas(con, path, stages, progress, **kwargs)
