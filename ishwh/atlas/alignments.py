"""``section_alignments`` rows: one home for writing and reading a section's placement.

A stored alignment is what the structure features and figures need to project a reference
slice onto a section: the slice index, the 2x3 affine (slice pixels -> full-size image
pixels), the optional non-rigid displacement grid (``ishwh/atlas/nonrigid.py``), quality
and ok. Methods: image registration (``register.METHOD`` / ``METHOD_NONRIGID``) or the
Allen API's own alignment records (``"allen"``, ``ishwh/allen/alignment.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa


@dataclass
class Stored:
    """One section's stored placement."""

    slice_index: int
    affine: np.ndarray                 # (2, 3)
    quality: float
    ok: bool
    displacement: np.ndarray | None    # (rows, cols, 2) or None
    method: str


_COLUMNS = ("section_id, stage, slice_index, affine, angle_deg, scale, method, quality, ok, "
            "params, displacement, disp_rows, disp_cols")


def row(section_id: int, stage: str, a, params: dict) -> list:
    """The insert row of a :class:`ishwh.atlas.register.Alignment` (or any object with its
    fields)."""
    disp = getattr(a, "displacement", None)
    return [int(section_id), stage, int(a.slice_index), [float(v) for v in
                                                         np.asarray(a.affine).ravel()],
            float(a.angle_deg), float(a.scale), a.method, float(a.quality), bool(a.ok),
            json.dumps(params),
            None if disp is None else [float(v) for v in np.asarray(disp).ravel()],
            None if disp is None else int(disp.shape[0]),
            None if disp is None else int(disp.shape[1])]


def insert(con: duckdb.DuckDBPyConnection, rows: list[list]) -> None:
    """Insert rows made by :func:`row` (the caller holds the transaction)."""
    if rows:
        con.executemany(f"insert into section_alignments ({_COLUMNS}) values "
                        f"({', '.join('?' * len(_COLUMNS.split(',')))})", rows)


def _schema() -> pa.Schema:
    f64, i64, text = pa.float64(), pa.int64(), pa.string()
    types = {"section_id": i64, "stage": text, "slice_index": i64, "affine": pa.list_(f64),
             "angle_deg": f64, "scale": f64, "method": text, "quality": f64, "ok": pa.bool_(),
             "params": text, "displacement": pa.list_(f64), "disp_rows": i64, "disp_cols": i64}
    return pa.schema([(c.strip(), types[c.strip()]) for c in _COLUMNS.split(",")])


def rows_table(rows: list[list]) -> pa.Table:
    """Rows made by :func:`row` as an Arrow table (how a Ray actor sends them back)."""
    schema = _schema()
    return pa.Table.from_pylist([dict(zip(schema.names, r, strict=True)) for r in rows],
                                schema=schema)


def table_rows(table: pa.Table) -> list[list]:
    """The rows of :func:`rows_table` again, value for value (floats are float64 both ways)."""
    return [list(r.values()) for r in table.select(_schema().names).to_pylist()]


def grid(displacement, rows, cols) -> np.ndarray | None:
    """The (rows, cols, 2) displacement grid of a stored row, or None."""
    if displacement is None or rows is None or cols is None:
        return None
    return np.asarray(displacement, dtype=np.float32).reshape(int(rows), int(cols), 2)


def load(con: duckdb.DuckDBPyConnection, section_ids: list[int]) -> dict[int, Stored]:
    """The stored alignments of these sections (absent ones are not in the result)."""
    if not section_ids:
        return {}
    tbl = con.sql("select section_id, slice_index, affine, quality, ok, displacement, "
                  "disp_rows, disp_cols, method from section_alignments "
                  "where list_contains($ids, section_id)",
                  params={"ids": [int(s) for s in section_ids]}).fetchall()
    return {int(s): Stored(int(k), np.asarray(a, dtype=np.float64).reshape(2, 3), float(q),
                           bool(ok), grid(d, r, c), m)
            for s, k, a, q, ok, d, r, c, m in tbl}
