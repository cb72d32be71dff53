"""The manifest's files as rows: CSV reading (exact line numbers, header checks, UTF-8),
the problem list (``file:line: reason``), and the Arrow schemas of the rows handed to the
loader."""

from __future__ import annotations

import csv
import mmap
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa

from ishwh.vocab import STAGES

SECTIONS_COLUMNS = ("gene", "stage", "experiment_id", "section_number", "image")
STRUCTURES_COLUMNS = ("structure_id", "acronym", "name", "parent_id", "level")
ANNOTATIONS_COLUMNS = ("experiment_id", "structure", "pattern", "intensity", "density")
GENE_LABELS_COLUMNS = ("gene", "task", "label")

STAGE_BY_KEY = {s.upper(): s for s in STAGES}  # a stage as written, any case -> its name

# Arrow schemas of the rows handed to the loader (explicit, so an all-empty optional column
# still has the table's type).
SCHEMAS = {
    "genes": pa.schema([("gene_id", pa.int64()), ("acronym", pa.string()),
                        ("name", pa.string())]),
    "structures": pa.schema([("structure_id", pa.int64()), ("acronym", pa.string()),
                             ("name", pa.string()), ("parent_id", pa.int64()),
                             ("level", pa.int32()), ("graph_order", pa.int32()),
                             ("color_hex", pa.string())]),
    "experiments": pa.schema([("experiment_id", pa.int64()), ("gene_id", pa.int64()),
                              ("stage", pa.string()), ("source", pa.string())]),
    "sections": pa.schema([("section_id", pa.int64()), ("experiment_id", pa.int64()),
                           ("section_number", pa.int32()), ("image_path", pa.string()),
                           ("width", pa.int32()), ("height", pa.int32()),
                           ("position", pa.float64()), ("sha256", pa.string())]),
    "annotations": pa.schema([("experiment_id", pa.int64()), ("structure_id", pa.int64()),
                              ("pattern", pa.string()), ("intensity", pa.string()),
                              ("density", pa.string())]),
    "gene_labels": pa.schema([("gene_id", pa.int64()), ("task", pa.string()),
                              ("label", pa.bool_())]),
}


class Problems(list):
    """Problems as ``file:line: reason`` strings, in the order they were found."""

    def add(self, where: str, reason: str) -> None:
        self.append(f"{where}: {reason}")


def at(name: str, line: int | None) -> str:
    """``file:line`` (``file`` when the line is unknown)."""
    return name if line is None else f"{name}:{line}"


def table(name: str, rows: list[dict[str, Any]]) -> pa.Table:
    """Rows of warehouse table ``name`` as Arrow, in its loader schema."""
    schema = SCHEMAS[name]
    return pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in rows], schema)


def parse_int(value: str) -> int | None:
    """The integer ``value`` spells, or None."""
    try:
        return int(value)
    except ValueError:
        return None


@dataclass
class WarehouseView:
    """What the warehouse already holds that the checks need (small tables, read whole)."""

    genes: dict[str, tuple[int, str | None]]  # acronym -> (gene_id, name)
    max_gene_id: int
    structures: dict[int, tuple[str, int | None, int]]  # id -> (acronym, parent_id, level)

    @classmethod
    def read(cls, con: duckdb.DuckDBPyConnection) -> WarehouseView:
        genes = {a: (g, n) for g, a, n in
                 con.execute("select gene_id, acronym, name from genes").fetchall()}
        max_gene_id = con.execute("select coalesce(max(gene_id), 0) from genes").fetchall()[0][0]
        structures = {
            s: (a, p, lv) for s, a, p, lv in con.execute(
                "select structure_id, acronym, parent_id, level from structures").fetchall()
        }
        return cls(genes, int(max_gene_id), structures)


def header_ok(
    name: str, header: list[str], required: tuple[str, ...], problems: Problems
) -> bool:
    """Report an empty file, duplicate or missing columns; False if the file is unusable."""
    if not header:
        problems.add(at(name, 1), "the file is empty (expected a header line)")
        return False
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        problems.add(at(name, 1), f"column(s) {', '.join(dup)} appear twice")
    missing = [c for c in required if c not in header]
    if missing:
        problems.add(
            at(name, 1),
            f"missing column(s) {', '.join(missing)} (the header has: {', '.join(header)})",
        )
        return False
    return True


def read_csv(
    folder: Path, name: str, required: tuple[str, ...], problems: Problems
) -> list[tuple[int, dict[str, str]]] | None:
    """Rows of ``folder/name`` as ``(line, {column: stripped text})``; None if unusable."""
    path = folder / name
    if has_nul(path, name, problems):
        return None
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            reader.fieldnames = header
            if not header_ok(name, header, required, problems):
                return None
            rows = []
            for row in reader:
                line = reader.line_num
                if row.get(None):  # type: ignore[call-overload]
                    problems.add(at(name, line), "more fields than the header has columns")
                rows.append(
                    (line, {k: (v or "").strip() for k, v in row.items() if k is not None})
                )
            return rows
    except UnicodeDecodeError:
        problems.add(*not_utf8(path, name))
    except csv.Error as exc:
        problems.add(name, f"not a readable CSV file: {exc}")
    except OSError as exc:
        problems.add(name, f"cannot read: {exc.strerror or exc}")
    return None


def read_csv_frame(
    folder: Path, name: str, required: tuple[str, ...], problems: Problems
) -> pl.DataFrame | None:
    """The ``required`` columns of a (possibly large) CSV as strings, plus ``line``.

    Read with the csv module (exact line numbers, quoting) into column lists; the checks
    then run vectorised on the frame, which keeps millions of annotation rows fast.
    """
    path = folder / name
    if has_nul(path, name, problems):
        return None
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            if not header_ok(name, header, required, problems):
                return None
            idx = [header.index(c) for c in required]
            cols: list[list[str]] = [[] for _ in required]
            lines: list[int] = []
            for fields in reader:
                if not fields:  # a blank line, as csv.DictReader skips them
                    continue
                if len(fields) > len(header):
                    problems.add(at(name, reader.line_num),
                                 "more fields than the header has columns")
                lines.append(reader.line_num)
                for col, i in zip(cols, idx, strict=True):
                    col.append(fields[i] if i < len(fields) else "")
    except UnicodeDecodeError:
        problems.add(*not_utf8(path, name))
        return None
    except csv.Error as exc:
        problems.add(name, f"not a readable CSV file: {exc}")
        return None
    except OSError as exc:
        problems.add(name, f"cannot read: {exc.strerror or exc}")
        return None
    frame = pl.DataFrame(
        {**dict(zip(required, cols, strict=True)), "line": lines},
        schema={**{c: pl.String for c in required}, "line": pl.Int64},
    )
    return frame.with_columns(pl.col(*required).str.strip_chars())


def not_utf8(path: Path, name: str) -> tuple[str, str]:
    """(file:line, reason) of the first byte that is not UTF-8."""
    data = path.read_bytes()
    try:
        data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        return at(name, line), (f"not UTF-8 text (byte 0x{data[exc.start]:02x}); save the "
                                "file as UTF-8")
    return name, "not UTF-8 text"


def has_nul(path: Path, name: str, problems: Problems) -> bool:
    """Report the first NUL byte of a CSV (a binary file, or text saved as UTF-16): the csv
    module would read it into a field and a path or name with NUL cannot be stored."""
    try:
        with path.open("rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                return False
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:  # no copy
                pos = data.find(b"\x00")
                if pos < 0:
                    return False
                line = data[:pos].count(b"\n") + 1
    except OSError:
        return False      # the reader says why
    problems.add(at(name, line),
                 "contains a NUL byte (a binary file, or text saved as UTF-16?); save it as "
                 "UTF-8 text")
    return True
