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

import os
from pathlib import Path

import cv2
import duckdb
import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from ishwh import store, warehouse
from ishwh.atlas import alignments
from ishwh.atlas import reference as ref_mod
from ishwh.atlas.register import CALIBRATION, RegistrationModel, project_index
from ishwh.errors import InvalidInput, NotFound
from ishwh.progress import Progress, or_silent

SET_NAME = "atlas.stain"
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


def _read_gray(path: str) -> np.ndarray:
    gray = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if gray is None:
        raise InvalidInput(f"cannot read image {path}")
    return gray


def run_atlas(con: duckdb.DuckDBPyConnection, db_path: Path, stages: list[str] | None,
              progress: Progress | None = None, chunk_size: int = 32) -> dict:
    """Register and featurize every experiment of the stages (default: those with a
    reference); resumable. Returns ``{"names", "written", "finished", "problems",
    "registration": {stage: {"sections", "ok", "not_ok", "mean_quality"}}}``."""
    from ishwh.features.pipeline import _chunks, _done, _ensure_set, _finish, _sections  # noqa: PLC0415

    progress = or_silent(progress)
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
    params = {"stats": list(STATS), "feature_size": FEATURE_SIZE, "min_pixels": MIN_PIXELS,
              "stained": STAINED, "strong": STRONG, "n_structures": int(ids.size),
              "layout": "feature_set_structures (slot order = graph order)"}
    fsid = _ensure_set(con, SET_NAME, "atlas", int(ids.size) * len(STATS), params)
    n_slots = con.execute("select count(*) from feature_set_structures where feature_set_id = ?",
                          [fsid]).fetchall()[0][0]
    if n_slots == 0:
        with warehouse.transaction(con):
            con.executemany("insert into feature_set_structures values (?, ?, ?, 0)",
                            [[fsid, int(s), i] for i, s in enumerate(ids)])
    else:
        slots = np.array([r[0] for r in con.execute(
            "select structure_id from feature_set_structures where feature_set_id = ? "
            "order by slot", [fsid]).fetchall()], dtype=np.int64)
        if not np.array_equal(slots, ids):
            raise InvalidInput(f"the ontology changed since feature set {SET_NAME} was made",
                               hint=f"delete the set {SET_NAME} and featurize again")
    done = _done(con, [fsid])[fsid]
    result = {"names": [SET_NAME], "written": {SET_NAME: 0}, "finished": [], "problems": [],
              "registration": {}}
    images_root = warehouse.images_dir(db_path)
    seen_total = np.zeros(ids.size, dtype=np.int64)
    for stage in stages:
        ref = ref_mod.load(con, stage)
        model = RegistrationModel(ref)
        leaf_ids = ref.compact[0]                 # [0, ids of the volume...]
        sub = subtree_matrix(ids, parent, leaf_ids)
        exp_ids = [int(r[0]) for r in con.execute(
            "select experiment_id from experiments where stage = ? order by experiment_id",
            [stage]).fetchall()]
        todo = [e for e in exp_ids if e not in done]
        if todo:   # the stage's scale, from a fixed sample of its sections (same every run)
            sample = _sections(con, images_root, exp_ids[::max(1, len(exp_ids) // 8)])
            step = max(1, len(sample) // CALIBRATION)
            model.calibrate([(_read_gray(s.path), s.position) for s in sample[::step]
                             ][:CALIBRATION])
        reg = {"sections": 0, "ok": 0, "not_ok": 0, "quality_sum": 0.0}
        progress.start(f"featurize atlas {stage}", len(todo), "experiments")
        for chunk in _chunks(todo, chunk_size):
            secs = _sections(con, images_root, chunk)
            stored = alignments.load(con, [s.section_id for s in secs])
            new_align, vecs, by_exp = [], {}, {}
            for s in secs:
                gray = _read_gray(s.path)
                al = stored.get(s.section_id)
                if al is None:
                    a = model.register(gray, s.position)
                    al = alignments.Stored(a.slice_index, a.affine, a.quality, a.ok,
                                           a.displacement, a.method)
                    new_align.append(alignments.row(s.section_id, stage, a, model.params()))
                k, aff, q, ok = al.slice_index, al.affine, al.quality, al.ok
                reg["sections"] += 1
                reg["quality_sum"] += q
                by_exp.setdefault(s.experiment_id, [])
                if not ok:
                    reg["not_ok"] += 1
                    result["problems"].append(
                        f"experiment {s.experiment_id}, section {s.section_id}: registration "
                        f"quality {q:.2f} < {model.min_quality} (left out)")
                    continue
                reg["ok"] += 1
                h, w = gray.shape
                f = min(1.0, FEATURE_SIZE / max(h, w))
                small = gray if f == 1.0 else cv2.resize(
                    gray, (max(1, round(w * f)), max(1, round(h * f))),
                    interpolation=cv2.INTER_AREA)
                lab = project_index(ref.slice_index_labels(k), aff, small.shape, f,
                                    al.displacement)
                sums = section_sums(small, lab, leaf_ids.size)
                by_exp[s.experiment_id].append((sub @ sums.T).T)
            write_ids = []
            for e in chunk:
                pooled, seen = pool_experiment(by_exp.get(e, []))
                if not by_exp.get(e):
                    pooled = np.zeros((ids.size, len(STATS)), np.float32)
                    seen = np.zeros(ids.size, np.int64)
                vecs[e] = pooled.ravel()
                seen_total += seen
                write_ids.append(e)
            with warehouse.transaction(con):
                alignments.insert(con, new_align)
                store.write_experiment_features(con, fsid, write_ids,
                                                np.stack([vecs[e] for e in write_ids]))
                _add_seen(con, fsid, ids, seen_total)
            seen_total[:] = 0
            result["written"][SET_NAME] += len(write_ids)
            progress.advance(len(chunk))
        progress.done()
        n = max(reg["sections"], 1)
        result["registration"][stage] = {
            "sections": reg["sections"], "ok": reg["ok"], "not_ok": reg["not_ok"],
            "mean_quality": round(reg["quality_sum"] / n, 4)}
    eligible = {int(r[0]) for r in con.execute(
        "select e.experiment_id from experiments e join reference_atlases r using (stage)"
    ).fetchall()}
    result["finished"] = _finish(con, {SET_NAME: fsid}, eligible, set())
    return result


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
                    progress: Progress | None = None) -> dict:
    """Open the warehouse and run :func:`run_atlas`."""
    path = Path(db_path)
    with warehouse.connect(path) as con:
        return run_atlas(con, path, stages, progress)
