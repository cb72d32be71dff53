"""Seeing registration and structure-level predictions: the report's atlas figures.

- :func:`registration_sheet`: a contact sheet of sections with the registered reference's
  structure outlines drawn on them (quality in each caption; not-ok sections in red);
- :func:`expression_on_section`: the paper's figure 6 drawn the paper's way: one section of
  a test gene, each structure of a level painted with the classifier's predicted expression
  (left) beside the manual annotation (right), over the atlas outlines.

Both return RGB arrays (uint8); :func:`report_figures` wraps them as PNGs for the report.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import duckdb
import numpy as np

from ishwh import warehouse
from ishwh.annotate import prediction_probabilities
from ishwh.atlas import reference as ref_mod
from ishwh.atlas.register import project_index

TILE = 240


def _outline(index: np.ndarray) -> np.ndarray:
    """Pixels where the projected label changes (structure borders)."""
    e = np.zeros(index.shape, bool)
    e[:-1] |= index[:-1] != index[1:]
    e[:, :-1] |= index[:, :-1] != index[:, 1:]
    return e


def _level_index(con: duckdb.DuckDBPyConnection, ids: np.ndarray, level: int) -> np.ndarray:
    """For each volume id, the index (into ``ids``-aligned ancestors) of its ancestor at
    ``level`` as a structure id (0 if none): outlines at one ontology level."""
    rows = con.execute("select structure_id, parent_id, level from structures").fetchall()
    par = {int(s): (None if p is None else int(p)) for s, p, _ in rows}
    lvl = {int(s): int(lv) for s, _, lv in rows}
    out = np.zeros(ids.size, np.int64)
    for i, s in enumerate(ids.tolist()):
        cur, seen = s, set()
        while cur is not None and cur not in seen:
            seen.add(cur)
            if lvl.get(cur) == level:
                out[i] = cur
                break
            cur = par.get(cur)
    return out


def _tile(img: np.ndarray, caption: str, color=(0, 0, 0), size: int = TILE) -> np.ndarray:
    h, w = img.shape[:2]
    f = size / max(h, w)
    small = cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))),
                       interpolation=cv2.INTER_AREA)
    tile = np.full((size + 18, size, 3), 255, np.uint8)
    tile[:small.shape[0], :small.shape[1]] = small
    cv2.putText(tile, caption[:40], (3, size + 13), cv2.FONT_HERSHEY_SIMPLEX, 0.38, color, 1,
                cv2.LINE_AA)
    return tile


def _sheet(tiles: list[np.ndarray], ncols: int = 4) -> np.ndarray:
    rows = []
    for r in range(0, len(tiles), ncols):
        row = tiles[r:r + ncols]
        row += [np.full_like(tiles[0], 255)] * (ncols - len(row))
        rows.append(np.hstack(row))
    return np.vstack(rows)


def _section_labels(ref: ref_mod.Reference, k: int, affine, shape, level_of: np.ndarray | None
                    ) -> np.ndarray:
    idx = project_index(ref.slice_index_labels(k), np.asarray(affine).reshape(2, 3), shape)
    ids = ref.compact[0]
    return (ids if level_of is None else level_of)[idx]


def registration_sheet(db_path: str | os.PathLike, n: int = 12, level: int = 3,
                       stage: str | None = None) -> np.ndarray | None:
    """Sections (evenly over quality, worst first) with their registered outlines."""
    root = warehouse.images_dir(db_path)
    with warehouse.connect(db_path, read_only=True) as con:
        q = ("select a.section_id, a.stage, a.slice_index, a.affine, a.quality, a.ok, "
             "s.image_path from section_alignments a join sections s using (section_id) "
             + ("where a.stage = $stage " if stage else "") + "order by a.quality, a.section_id")
        rows = con.execute(q, {"stage": stage} if stage else {}).fetchall()
        if not rows:
            return None
        pick = [rows[int(i)] for i in np.unique(np.linspace(0, len(rows) - 1, n).astype(int))]
        refs: dict[str, ref_mod.Reference] = {}
        tiles = []
        for sid, st, k, aff, quality, ok, path in pick:
            if st not in refs:
                refs[st] = ref_mod.load(con, st)
            ref = refs[st]
            img = cv2.imread(str(root / path), cv2.IMREAD_COLOR)[..., ::-1].copy()
            lab = _section_labels(ref, k, aff, img.shape[:2],
                                  _level_index(con, ref.compact[0], level))
            edge = cv2.dilate(_outline(lab).astype(np.uint8), np.ones((2, 2), np.uint8)) > 0
            img[edge] = (0, 160, 0) if ok else (220, 0, 0)
            tiles.append(_tile(img, f"{sid} slice {k} Dice {quality:.2f}",
                               (0, 0, 0) if ok else (220, 0, 0)))
    return _sheet(tiles)


def _paint(img: np.ndarray, lab: np.ndarray, value: dict[int, float]) -> np.ndarray:
    """Structures filled by value (0..1, white -> red), outlines in black."""
    out = img.astype(np.float32)
    for sid, v in value.items():
        m = lab == sid
        if m.any():
            color = np.array([255.0, 255 * (1 - v), 255 * (1 - v)])
            out[m] = 0.45 * out[m] + 0.55 * color
    out[_outline(lab)] = 0
    return out.clip(0, 255).astype(np.uint8)


def expression_on_section(db_path: str | os.PathLike, run_id: int, level: int,
                          experiment_id: int | None = None) -> np.ndarray | None:
    """Predicted (left) and manual (right) expression per structure of ``level`` painted on
    one registered section of a test experiment of ``run_id`` (the paper's figure 6)."""
    root = warehouse.images_dir(db_path)
    with warehouse.connect(db_path, read_only=True) as con:
        stage = con.execute("select stage from runs where run_id = ?", [run_id]).fetchall()
        if not stage or not con.execute("select count(*) from reference_atlases where stage = ?",
                                         [stage[0][0]]).fetchall()[0][0]:
            return None
        stage = stage[0][0]
        if experiment_id is None:  # the test experiment with the most positives at the level
            got = con.execute(
                "select p.experiment_id from predictions p join structures s using "
                "(structure_id) where p.run_id = ? and s.level = ? group by 1 "
                "order by sum(p.detected::int) desc, 1 limit 1", [run_id, level]).fetchall()
            if not got:
                return None
            experiment_id = int(got[0][0])
        prob, truth, _ = prediction_probabilities(con, run_id, [experiment_id], level=level)
        sec = con.execute(
            "select s.image_path, a.slice_index, a.affine from sections s join "
            "section_alignments a using (section_id) where s.experiment_id = ? and a.ok "
            "order by abs(s.position - 0.5) nulls last limit 1", [experiment_id]).fetchall()
        if not sec:
            return None
        ref = ref_mod.load(con, stage)
        path, k, aff = sec[0]
        img = cv2.imread(str(root / path), cv2.IMREAD_COLOR)[..., ::-1].copy()
        lab = _section_labels(ref, k, aff, img.shape[:2], _level_index(con, ref.compact[0],
                                                                        level))
    pred = {s: p for (_, s), p in prob.items()}
    manual = {s: float(d) for (_, s), d in truth.items()}
    return _sheet([_tile(_paint(img, lab, pred), f"predicted, exp {experiment_id}", size=400),
                   _tile(_paint(img, lab, manual), f"manual, level {level}", size=400)],
                  ncols=2)


def report_figures(db_path: str | os.PathLike, runs: list[int], level: int | None
                   ) -> list[tuple[str, str, str, bytes]]:
    """``(name, title, caption, png)`` of the atlas figures there is data for."""
    out = []
    try:
        sheet = registration_sheet(db_path)
    except duckdb.CatalogException:   # a warehouse from before migration 0005
        return out
    if sheet is not None:
        out.append(("registration_qc", "Registration QC",
                    "Sections from worst to best registration quality (Dice of the tissue "
                    "masks) with the registered reference outlines at level 3: green = used, "
                    "red = below the quality threshold (left out of the atlas features).",
                    _png(sheet)))
    with warehouse.connect(db_path, read_only=True) as con:
        atlas_runs = [r for r in runs if con.execute(
            "select f.extractor = 'atlas' from runs r join feature_sets f using "
            "(feature_set_id) where r.run_id = ?", [r]).fetchall()[0][0]]
    for r in atlas_runs[:1]:
        lv = level or 5
        fig = expression_on_section(db_path, r, lv)
        if fig is not None:
            out.append(("expression_on_section", f"Predicted expression on a section (run {r})",
                        f"The paper's figure 6: a test gene's section, each level-{lv} "
                        "structure painted by its calibrated probability (left) and by the "
                        "manual annotation (right), white = none, red = expressed, over the "
                        "registered atlas outlines.", _png(fig)))
    return out


def _png(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", rgb[..., ::-1])
    return buf.tobytes() if ok else b""


def write_figures(db_path: str | os.PathLike, out_dir: str | os.PathLike, run_id: int,
                  level: int = 5) -> list[Path]:
    """Write the two figures as PNG files (for docs); returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, img in (("registration_qc.png", registration_sheet(db_path)),
                      ("expression_on_section.png", expression_on_section(db_path, run_id,
                                                                          level))):
        if img is not None:
            cv2.imwrite(str(out_dir / name), img[..., ::-1])
            paths.append(out_dir / name)
    return paths
