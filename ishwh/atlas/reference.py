"""Reference annotation volumes: reading (.npz, MetaImage .mhd + .raw), checking, storing.

Axes (the contract): axis 0 anterior->posterior, axis 1 superior->inferior, axis 2
lateral->medial, as in Allen's annotation files (MetaImage ``DimSize`` lists the fastest axis
first, so a ``.raw`` file is read x-fastest). A section image shows ``annotation[:, :, k].T``
up to an in-plane rotation, scale and shift.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import duckdb
import numpy as np

from ishwh import warehouse
from ishwh.errors import InvalidInput, NotFound
from ishwh.vocab import STAGES

# MetaImage element types -> numpy dtypes (little endian unless the header says MSB).
_MET_TYPES = {
    "MET_CHAR": "i1", "MET_UCHAR": "u1", "MET_SHORT": "i2", "MET_USHORT": "u2",
    "MET_INT": "i4", "MET_UINT": "u4", "MET_LONG": "i4", "MET_ULONG": "u4",
    "MET_LONG_LONG": "i8", "MET_ULONG_LONG": "u8",
}


@dataclass
class Reference:
    """One stage's reference: ``annotation`` (nx, ny, nz) int32 structure ids, 0 = outside."""

    stage: str
    annotation: np.ndarray
    spacing_um: float | None = None
    source: str | None = None
    spacing_xyz: tuple[float, float, float] | None = None   # axes 0, 1, 2 (µm) when known

    @cached_property
    def tissue_range(self) -> tuple[int, int]:
        """First and last slice (axis 2) holding any labelled voxel."""
        has = np.flatnonzero((self.annotation != 0).any(axis=(0, 1)))
        if has.size == 0:
            raise InvalidInput(f"the reference of {self.stage} has no labelled voxel")
        return int(has[0]), int(has[-1])

    def slice_of(self, position: float) -> int:
        """The slice at a section ``position`` (0 = most lateral tissue slice, 1 = most medial)."""
        lo, hi = self.tissue_range
        return int(round(lo + float(np.clip(position, 0.0, 1.0)) * (hi - lo)))

    @cached_property
    def compact(self) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, index volume)``: ids[0] = 0 and ``ids[index] == annotation`` (uint16 when
        fewer than 65,536 ids), so slices can be warped and counted by index."""
        ids = np.union1d([0], np.unique(self.annotation)).astype(np.int64)
        idx = np.searchsorted(ids, self.annotation)
        return ids, idx.astype(np.uint16 if ids.size < 65536 else np.int32)

    def slice_index_labels(self, k: int) -> np.ndarray:
        """Slice ``k`` as indices into ``compact[0]`` (rows = axis 1, columns = axis 0)."""
        return np.ascontiguousarray(self.compact[1][:, :, k].T)

    def slice_labels(self, k: int) -> np.ndarray:
        """Slice ``k`` as a section shows it: rows = axis 1, columns = axis 0."""
        return np.ascontiguousarray(self.annotation[:, :, k].T)


def _checksum(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a, dtype=np.int32).tobytes()).hexdigest()


def read_mhd(path: str | os.PathLike) -> tuple[np.ndarray, float | None]:
    """Read a MetaImage header and its data file; returns ``(volume[x, y, z], spacing_um)``.

    Only uncompressed 3-D integer volumes are accepted (what Allen ships for annotations).
    """
    path = Path(path)
    header: dict[str, str] = {}
    for line in path.read_text(encoding="latin-1").splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            header[key.strip()] = value.strip()
    try:
        dims = [int(v) for v in header["DimSize"].split()]
        etype = header["ElementType"]
        data_file = header["ElementDataFile"]
    except (KeyError, ValueError) as exc:
        raise InvalidInput(f"{path.name}: MetaImage header lacks DimSize, ElementType or "
                           "ElementDataFile") from exc
    if len(dims) != 3 or int(header.get("NDims", "3")) != 3:
        raise InvalidInput(f"{path.name}: a reference volume must be 3-D, header says "
                           f"DimSize {header['DimSize']}")
    if etype not in _MET_TYPES:
        raise InvalidInput(f"{path.name}: element type {etype} is not an integer type")
    if header.get("CompressedData", "False").lower() == "true":
        raise InvalidInput(f"{path.name}: compressed MetaImage data is not supported")
    msb = (header.get("BinaryDataByteOrderMSB") or header.get("ElementByteOrderMSB")
           or "False").lower() == "true"
    dtype = np.dtype(_MET_TYPES[etype]).newbyteorder(">" if msb else "<")
    raw = (path.parent / data_file).resolve()
    if not raw.is_relative_to(path.parent.resolve()) or not raw.is_file():
        raise InvalidInput(f"{path.name}: data file {data_file} not found beside the header")
    n_bytes = raw.stat().st_size - int(header.get("HeaderSize", "0") or 0)
    want = int(np.prod(dims)) * dtype.itemsize
    if n_bytes != want:
        raise InvalidInput(f"{path.name}: {data_file} holds {n_bytes:,} bytes but DimSize "
                           f"{' x '.join(map(str, dims))} of {etype} needs {want:,}")
    flat = np.fromfile(raw, dtype=dtype, offset=int(header.get("HeaderSize", "0") or 0))
    vol = flat.reshape(dims[::-1]).transpose(2, 1, 0)   # x fastest on disk -> [x, y, z]
    spacing = None
    if "ElementSpacing" in header:
        sp = [float(v) for v in header["ElementSpacing"].split()]
        spacing = sp[0] if sp else None
    return vol, spacing


def write_mhd(path: str | os.PathLike, volume: np.ndarray, spacing_um: float | None = None
              ) -> None:
    """Write ``volume[x, y, z]`` as MetaImage (``.mhd`` + ``.raw``, uint32, x fastest)."""
    path = Path(path)
    raw = path.with_suffix(".raw")
    np.asarray(volume, dtype="<u4").transpose(2, 1, 0).tofile(raw)
    sp = spacing_um or 1.0
    path.write_text(
        "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
        f"ElementSpacing = {sp} {sp} {sp}\nDimSize = {' '.join(map(str, volume.shape))}\n"
        f"ElementType = MET_UINT\nElementDataFile = {raw.name}\n", encoding="latin-1")


def read_reference_file(path: str | os.PathLike) -> tuple[np.ndarray, float | None]:
    """``(annotation int32 [x, y, z], spacing_um)`` from an ``.npz`` or ``.mhd`` file."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"reference file {path} not found")
    if path.suffix.lower() == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                if "annotation" not in z.files:
                    raise InvalidInput(f"{path.name} has no array 'annotation' "
                                       f"(it has: {', '.join(z.files) or 'nothing'})")
                vol = z["annotation"]
                spacing = float(z["spacing_um"]) if "spacing_um" in z.files else None
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"{path.name} is not a readable .npz file: {exc}") from exc
    elif path.suffix.lower() == ".mhd":
        vol, spacing = read_mhd(path)
    else:
        raise InvalidInput(f"{path.name}: a reference is an .npz or .mhd file")
    if vol.ndim != 3 or not np.issubdtype(vol.dtype, np.integer):
        raise InvalidInput(f"{path.name}: the annotation must be a 3-D integer array, got "
                           f"{vol.ndim}-D {vol.dtype}")
    if vol.size and (vol.min() < 0 or vol.max() > np.iinfo(np.int32).max):
        raise InvalidInput(f"{path.name}: structure ids must be 0..2^31-1")
    return np.ascontiguousarray(vol, dtype=np.int32), spacing


def unknown_ids(annotation: np.ndarray, known: set[int]) -> list[int]:
    """Non-zero ids of the volume that are not in ``known``."""
    ids = np.unique(annotation)
    return [int(i) for i in ids if i != 0 and int(i) not in known]


def check_ids(annotation: np.ndarray, known: set[int], what: str) -> None:
    bad = unknown_ids(annotation, known)
    if bad:
        shown = ", ".join(map(str, bad[:10])) + (" ..." if len(bad) > 10 else "")
        raise InvalidInput(f"{what}: {len(bad)} structure id(s) are not in the ontology: "
                           f"{shown}", hint="ingest the ontology the volume was drawn with")


def _encode(annotation: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, annotation=np.ascontiguousarray(annotation, dtype=np.int32))
    return buf.getvalue()


def store(con: duckdb.DuckDBPyConnection, stage: str, annotation: np.ndarray,
          spacing_um: float | None, source: str | None,
          spacing_xyz: list[float] | None = None) -> bool:
    """Insert or replace the reference of ``stage`` (the caller holds the transaction).

    Returns False when the same volume is already stored (nothing is written). Replacing a
    reference drops the stage's section alignments (they were made against the old one).
    """
    if stage not in STAGES:
        raise InvalidInput(f"unknown stage {stage!r} (one of: {', '.join(STAGES)})")
    digest = _checksum(annotation)
    old = con.execute("select sha256 from reference_atlases where stage = ?", [stage]).fetchall()
    if old and old[0][0] == digest:
        return False
    con.execute("delete from section_alignments where stage = ?", [stage])
    con.execute("delete from reference_atlases where stage = ?", [stage])
    nx, ny, nz = annotation.shape
    n_labels = int(np.count_nonzero(np.unique(annotation)))
    con.execute("insert into reference_atlases (stage, nx, ny, nz, spacing_um, annotation, "
                "sha256, n_labels, source, spacing_xyz_um) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [stage, nx, ny, nz, spacing_um, _encode(annotation), digest, n_labels, source,
                 spacing_xyz])
    return True


def load(con: duckdb.DuckDBPyConnection, stage: str) -> Reference:
    """The stored reference of ``stage``; :class:`NotFound` when there is none."""
    rows = con.execute("select annotation, spacing_um, source, spacing_xyz_um "
                       "from reference_atlases where stage = ?", [stage]).fetchall()
    if not rows:
        have = [r[0] for r in con.execute(
            "select stage from reference_atlases order by stage").fetchall()]
        raise NotFound(f"stage {stage} has no reference atlas",
                       hint="ingest one with `ishwh ingest reference --stage "
                            f"{stage} FILE`" + (f" (stages with one: {', '.join(have)})"
                                                if have else ""))
    blob, spacing, source, xyz = rows[0]
    with np.load(io.BytesIO(blob)) as z:
        ann = z["annotation"]
    return Reference(stage, ann, spacing, source, tuple(xyz) if xyz else None)


def known_structures(con: duckdb.DuckDBPyConnection) -> set[int]:
    return {int(r[0]) for r in con.execute("select structure_id from structures").fetchall()}


def ingest_reference(db_path: str | os.PathLike, stage: str, path: str | os.PathLike
                     ) -> dict:
    """Read, check (ids against the warehouse's ontology) and store one stage's reference.

    Returns ``{"stage", "shape", "spacing_um", "n_labels", "written"}``; nothing is written
    when the file is bad.
    """
    if stage not in STAGES:
        raise InvalidInput(f"unknown stage {stage!r} (one of: {', '.join(STAGES)})")
    annotation, spacing = read_reference_file(path)
    with warehouse.connect(db_path) as con:
        check_ids(annotation, known_structures(con), Path(path).name)
        with warehouse.transaction(con):
            written = store(con, stage, annotation, spacing, f"file:{Path(path).name}")
    return {"stage": stage, "shape": list(annotation.shape), "spacing_um": spacing,
            "n_labels": int(np.count_nonzero(np.unique(annotation))), "written": written}
