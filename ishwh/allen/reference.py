"""A stage's reference annotation volume and Allen's section alignments, into the warehouse.

``ishwh ingest allen --reference`` (after the other phases):

1. the stage's annotation volume, Allen's download
   ``download.alleninstitute.org/informatics-archive/current-release/mouse_annotation/
   {E11pt5|...}_DevMouse2012_annotation.zip`` (``annotation.mhd`` + ``annotation.raw``,
   uint32 structure ids of graph 17, axes anterior->posterior, superior->inferior,
   left->right; 16 x 16 x 20 µm at the embryo stages), checked against the ontology and
   stored as the stage's reference (``reference_atlases``, with its three spacings);
2. per experiment of the stage, its ``alignment3d`` and its section images'
   ``alignment2d`` (``ishwh/allen/alignment.py``), turned into ``section_alignments`` rows
   with method ``allen`` for the sections in the warehouse. They replace image
   registrations of those sections, and ``featurize --extractor atlas`` uses them instead of
   registering the images.

Both requests are cached like every other one, so ``--from-cache`` rebuilds offline.
"""

from __future__ import annotations

from typing import Any

import duckdb
import numpy as np

from ishwh import warehouse
from ishwh.allen import queries as q
from ishwh.allen.alignment import data_set_alignment_query, data_set_alignments
from ishwh.allen.client import AllenClient, Unreachable
from ishwh.allen.readers import Volume, read_mhd_zip
from ishwh.atlas import alignments
from ishwh.atlas import reference as ref_mod
from ishwh.errors import InvalidInput, IshwhError
from ishwh.progress import Progress, or_silent
from ishwh.query import query_text

#: The annotation volume of each stage on Allen's download site (stage "E11.5" -> "E11pt5").
ANNOTATION_PATH = (
    "/informatics-archive/current-release/mouse_annotation/{tag}_DevMouse2012_annotation.zip"
)


def annotation_url(stage: str, base: str = q.DOWNLOAD_BASE) -> str:
    if stage not in q.STAGES:
        raise InvalidInput(f"unknown stage {stage!r}", hint=f"stages are {', '.join(q.STAGES)}")
    return base + ANNOTATION_PATH.format(tag=stage.replace(".", "pt"))


def read_annotation_zip(source) -> Volume:
    """The ``annotation`` volume of a ``*_DevMouse2012_annotation.zip`` (bytes or path)."""
    vols = read_mhd_zip(source)
    vol = vols.get("annotation") or (next(iter(vols.values())) if len(vols) == 1 else None)
    if vol is None:
        raise InvalidInput("the annotation zip holds no 'annotation' volume "
                           f"(it has: {', '.join(vols) or 'nothing'})")
    if vol.data.ndim != 3 or not np.issubdtype(vol.data.dtype, np.integer):
        raise InvalidInput("the annotation volume must be a 3-D integer array")
    return vol


def fetch_reference(client: AllenClient, stage: str) -> Volume:
    """Download (or read from the cache) the stage's annotation volume."""
    return read_annotation_zip(client.download(annotation_url(stage), "zip"))


def store_reference(con: duckdb.DuckDBPyConnection, stage: str, vol: Volume,
                    source: str) -> bool:
    """Check the volume's ids against the ontology and store it (the caller holds the
    transaction). Returns False when the same volume was already stored."""
    ann = np.ascontiguousarray(vol.data, dtype=np.int32)
    ref_mod.check_ids(ann, ref_mod.known_structures(con), f"{stage} annotation volume")
    spacing = [float(s) for s in vol.spacing_um]
    return ref_mod.store(con, stage, ann, spacing[0], source, spacing_xyz=spacing)


def store_alignments(con: duckdb.DuckDBPyConnection, client: AllenClient, stage: str,
                     progress: Progress | None = None) -> dict[str, Any]:
    """``section_alignments`` rows (method ``allen``) for the stage's Allen sections from the
    API's alignment records. Needs the stage's reference (its spacing and extent)."""
    progress = or_silent(progress)
    ref = ref_mod.load(con, stage)
    spacing = ref.spacing_xyz or ((ref.spacing_um,) * 3 if ref.spacing_um else None)
    if spacing is None:
        raise InvalidInput(f"the reference of {stage} has no voxel spacing",
                           hint="Allen alignments are in µm; ingest a volume with its spacing")
    rows = con.sql(query_text("allen_stage_sections"), params={"stage": stage}).fetchall()
    by_exp: dict[int, dict[int, tuple[int, int]]] = {}
    for eid, sid, w, h in rows:
        by_exp.setdefault(int(eid), {})[int(sid)] = (int(w), int(h))
    out: dict[str, Any] = {"experiments": len(by_exp), "sections": 0, "ok": 0, "problems": []}
    progress.start(f"alignments {stage}", len(by_exp), "experiments")
    for eid, stored in by_exp.items():
        try:
            recs = client.rma(data_set_alignment_query(eid))
        except Unreachable:
            raise
        except IshwhError as exc:
            out["problems"].append(f"experiment {eid}: {exc}")
            progress.advance(1)
            continue
        if not recs:
            out["problems"].append(f"experiment {eid}: no SectionDataSet record")
            progress.advance(1)
            continue
        found, missing = data_set_alignments(recs[0], stored, spacing, ref.annotation.shape)
        out["problems"] += [f"experiment {eid}, {m}" for m in missing]
        params = {"source": "Allen alignment3d + alignment2d", "spacing_um": list(spacing)}
        with warehouse.transaction(con):
            con.execute("delete from section_alignments where list_contains($ids, section_id)",
                        {"ids": list(found)})
            alignments.insert(con, [alignments.row(sid, stage, a, params)
                                    for sid, a in found.items()])
        out["sections"] += len(found)
        out["ok"] += sum(a.ok for a in found.values())
        progress.advance(1)
    progress.done()
    return out


def ingest_reference_and_alignments(con: duckdb.DuckDBPyConnection, client: AllenClient,
                                    stages: list[str], progress: Progress | None = None
                                    ) -> dict[str, Any]:
    """For each stage: fetch and store its reference annotation, then Allen's alignments of
    its sections. Returns ``{stage: {"reference_written", "shape", "alignments": {...}}}``."""
    out: dict[str, Any] = {}
    for stage in stages:
        url = annotation_url(stage)
        vol = fetch_reference(client, stage)
        with warehouse.transaction(con):
            written = store_reference(con, stage, vol, f"allen:{url}")
        out[stage] = {"reference_written": written, "shape": list(vol.data.shape),
                      "spacing_um": list(vol.spacing_um),
                      "alignments": store_alignments(con, client, stage, progress)}
    return out
