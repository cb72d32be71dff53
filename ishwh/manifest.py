"""Ingesting a manifest folder (the contract of ``ishwh ingest dir PATH``).

A manifest folder holds::

    ontology.json      Allen structure-graph JSON (nested ``children``)   } one of
    structures.csv     structure_id,acronym,name,parent_id,level           } the two
    sections.csv       gene,stage,experiment_id,section_number,image[,position][,gene_name]
    annotations.csv    experiment_id,structure,pattern,intensity,density   (optional)
    gene_labels.csv    gene,task,label                                     (optional)

Ingesting is all-or-nothing: every file is read and every row checked (images decoded and
checksummed) *before* anything is written. Every problem is collected as
``file:line: reason`` and raised together as :class:`~ishwh.errors.ManifestError`; then the
warehouse is untouched. A clean manifest is loaded with :func:`ishwh.loader.load`, which adds
only rows whose key is new, so re-ingesting a folder adds nothing and a folder that extends
an earlier one adds only its new rows.

Ids (a manifest names genes by symbol and sections by number only):

* ``gene_id``: the id of the warehouse gene with the same acronym; new genes get
  ``max(gene_id, GENE_ID_BASE) + 1, + 2, ...`` in order of first appearance in
  ``sections.csv`` (above the ids the Allen and synthetic atlases use, so a warehouse may
  mix them).
* ``section_id``: the id of the warehouse section with the same
  ``(experiment_id, section_number)``; new sections get
  ``experiment_id * 10_000 + section_number`` (so ``section_number`` must be 0..9999;
  the rule lives in :mod:`ishwh.ids`).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa

from ishwh import images, loader, warehouse
from ishwh.errors import IshwhError, ManifestError
from ishwh.ids import SECTION_ID_FACTOR, section_id
from ishwh.ontology import fill_root_levels, structures_from_graph_json
from ishwh.progress import Progress, phase
from ishwh.store import registered
from ishwh.vocab import GRADES, PATTERNS, STAGES

# Manifest genes get ids above this: Allen gene ids and the synthetic atlas's (90,000,000 + i)
# lie below it, so one warehouse can hold all three.
GENE_ID_BASE = 2_000_000_000

# Largest |experiment_id| whose derived section ids still fit a signed 64-bit integer.
MAX_EXPERIMENT_ID = (2**63 - 1 - (SECTION_ID_FACTOR - 1)) // SECTION_ID_FACTOR
# Integer columns of structure rows and their width in the warehouse (bits below the sign).
_INT_BITS = {"structure_id": 63, "parent_id": 63, "level": 31, "graph_order": 31}

_STAGE_BY_KEY = {s.upper(): s for s in STAGES}
_TRUE = {"1", "true", "yes"}
_FALSE = {"0", "false", "no"}

SECTIONS_COLUMNS = ("gene", "stage", "experiment_id", "section_number", "image")
STRUCTURES_COLUMNS = ("structure_id", "acronym", "name", "parent_id", "level")
ANNOTATIONS_COLUMNS = ("experiment_id", "structure", "pattern", "intensity", "density")
GENE_LABELS_COLUMNS = ("gene", "task", "label")

# Arrow schemas of the rows handed to the loader (explicit, so an all-empty optional column
# still has the table's type).
_SCHEMAS = {
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


# --------------------------------------------------------------------------- small helpers


class _Problems(list):
    """Problems as ``file:line: reason`` strings, in the order they were found."""

    def add(self, where: str, reason: str) -> None:
        self.append(f"{where}: {reason}")


def _at(name: str, line: int | None) -> str:
    return name if line is None else f"{name}:{line}"


def _table(name: str, rows: list[dict[str, Any]]) -> pa.Table:
    schema = _SCHEMAS[name]
    return pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in rows], schema)


def _parse_int(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


def _header_ok(
    name: str, header: list[str], required: tuple[str, ...], problems: _Problems
) -> bool:
    """Report an empty file, duplicate or missing columns; False if the file is unusable."""
    if not header:
        problems.add(_at(name, 1), "the file is empty (expected a header line)")
        return False
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        problems.add(_at(name, 1), f"column(s) {', '.join(dup)} appear twice")
    missing = [c for c in required if c not in header]
    if missing:
        problems.add(
            _at(name, 1),
            f"missing column(s) {', '.join(missing)} (the header has: {', '.join(header)})",
        )
        return False
    return True


def _read_csv(
    folder: Path, name: str, required: tuple[str, ...], problems: _Problems
) -> list[tuple[int, dict[str, str]]] | None:
    """Rows of ``folder/name`` as ``(line, {column: stripped text})``; None if unusable."""
    path = folder / name
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            reader.fieldnames = header
            if not _header_ok(name, header, required, problems):
                return None
            rows = []
            for row in reader:
                line = reader.line_num
                if row.get(None):  # type: ignore[call-overload]
                    problems.add(_at(name, line), "more fields than the header has columns")
                rows.append(
                    (line, {k: (v or "").strip() for k, v in row.items() if k is not None})
                )
            return rows
    except UnicodeDecodeError:
        problems.add(*_not_utf8(path, name))
    except csv.Error as exc:
        problems.add(name, f"not a readable CSV file: {exc}")
    except OSError as exc:
        problems.add(name, f"cannot read: {exc.strerror or exc}")
    return None


def _not_utf8(path: Path, name: str) -> tuple[str, str]:
    """(file:line, reason) of the first byte that is not UTF-8."""
    data = path.read_bytes()
    try:
        data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        return _at(name, line), (f"not UTF-8 text (byte 0x{data[exc.start]:02x}); save the "
                                 "file as UTF-8")
    return name, "not UTF-8 text"


@dataclass
class _Warehouse:
    """What the warehouse already holds that the checks need (small tables, read whole)."""

    genes: dict[str, tuple[int, str | None]]  # acronym -> (gene_id, name)
    max_gene_id: int
    structures: dict[int, tuple[str, int | None, int]]  # id -> (acronym, parent_id, level)

    @classmethod
    def read(cls, con: duckdb.DuckDBPyConnection) -> _Warehouse:
        genes = {a: (g, n) for g, a, n in
                 con.execute("select gene_id, acronym, name from genes").fetchall()}
        max_gene_id = con.execute("select coalesce(max(gene_id), 0) from genes").fetchall()[0][0]
        structures = {
            s: (a, p, lv) for s, a, p, lv in con.execute(
                "select structure_id, acronym, parent_id, level from structures").fetchall()
        }
        return cls(genes, int(max_gene_id), structures)


@dataclass
class _Image:
    line: int
    src: Path
    text: str  # the path as written in sections.csv
    width: int = 0
    height: int = 0
    sha256: str = ""
    error: str | None = None


@dataclass
class Plan:
    """A checked manifest: the rows to load and the image files to place."""

    folder: Path
    tables: dict[str, pa.Table] = field(default_factory=dict)
    images: dict[str, Path] = field(default_factory=dict)  # sha256 -> source file
    problems: _Problems = field(default_factory=_Problems)
    # stage -> (annotation volume, spacing_um, file name): reference/<STAGE>.npz|.mhd
    references: dict[str, tuple[Any, float | None, str]] = field(default_factory=dict)


# --------------------------------------------------------------------------- ontology


def _ontology_rows(
    folder: Path, problems: _Problems
) -> tuple[str | None, list[tuple[str, dict[str, Any]]], set[int]]:
    """(file name, [(where, row)], ids allowed to have an absent parent)."""
    has_json = (folder / "ontology.json").is_file()
    has_csv = (folder / "structures.csv").is_file()
    if has_json and has_csv:
        problems.add("ontology.json", "give either ontology.json or structures.csv, not both")
        return "ontology.json", [], set()
    if has_json:
        return _ontology_json(folder, problems)
    if has_csv:
        return _ontology_csv(folder, problems)
    return None, [], set()


def _ontology_json(
    folder: Path, problems: _Problems
) -> tuple[str, list[tuple[str, dict[str, Any]]], set[int]]:
    name = "ontology.json"
    try:
        obj = json.loads((folder / name).read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        problems.add(_at(name, exc.lineno), f"not valid JSON: {exc.msg}")
        return name, [], set()
    except (OSError, UnicodeDecodeError) as exc:
        problems.add(name, f"cannot read: {exc}")
        return name, [], set()
    except RecursionError:
        problems.add(name, "nested too deeply to read (JSON arrays or objects inside each "
                           "other thousands of levels deep)")
        return name, [], set()
    try:
        rows = structures_from_graph_json(obj)
    except RecursionError:
        problems.add(name, "the structure tree is nested too deeply to read")
        return name, [], set()
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        problems.add(name, f"not an Allen structure graph ({type(exc).__name__}: {exc})")
        return name, [], set()
    # In a nested graph the top nodes are roots: Allen's downloads often leave out the
    # graph root itself (graph 17: 15564), so their parent may be absent. Flat rows must
    # name parents that exist.
    top = obj.get("msg", obj) if isinstance(obj, dict) else obj
    top = [top] if isinstance(top, dict) else top
    nested = any(isinstance(n, dict) and n.get("children") for n in top)
    roots = {rows_id for n in top if (rows_id := _node_id(n)) is not None} if nested else set()
    # The nesting and parent_structure_id must tell the same tree.
    stack = [(n, None) for n in top if nested]
    while stack:
        node, outer = stack.pop()
        nid = _node_id(node)
        if outer is not None and _node_id({"id": node.get("parent_structure_id", outer)}) != outer:
            problems.add(f"{name}: structure {nid} ({node.get('acronym')})",
                         f"parent_structure_id {node.get('parent_structure_id')} disagrees with "
                         f"its place in the tree (inside {outer})")
        stack.extend((c, nid) for c in node.get("children") or [] if isinstance(c, dict))
    no_level = {id(r) for r in fill_root_levels(rows)}
    out = []
    for r in rows:
        where = f"{name}: structure {r['structure_id']} ({r['acronym']})"
        if not r.get("acronym"):
            problems.add(where, "no acronym")
        if id(r) in no_level:
            problems.add(where, "no st_level")
        out.append((where, r))
    return name, out, roots


def _node_id(node: Any) -> int | None:
    try:
        return int(node.get("id", node.get("structure_id")))
    except (AttributeError, TypeError, ValueError):
        return None


def _ontology_csv(
    folder: Path, problems: _Problems
) -> tuple[str, list[tuple[str, dict[str, Any]]], set[int]]:
    name = "structures.csv"
    table = _read_csv(folder, name, STRUCTURES_COLUMNS, problems)
    out = []
    for line, row in table or []:
        where = _at(name, line)
        sid = _parse_int(row["structure_id"])
        parent = _parse_int(row["parent_id"]) if row["parent_id"] else None
        level = _parse_int(row["level"])
        ok = True
        if sid is None:
            problems.add(where, f"structure_id {row['structure_id']!r} is not an integer")
            ok = False
        if row["parent_id"] and parent is None:
            problems.add(where, f"parent_id {row['parent_id']!r} is not an integer")
            ok = False
        if level is None:
            problems.add(where, f"level {row['level']!r} is not an integer")
            ok = False
        if not row["acronym"]:
            problems.add(where, "empty acronym")
            ok = False
        if ok:
            out.append((where, {
                "structure_id": sid, "acronym": row["acronym"], "name": row["name"] or None,
                "parent_id": parent, "level": level,
                "graph_order": _parse_int(row.get("graph_order", "") or "x"),
                "color_hex": row.get("color_hex") or None,
            }))
    return name, out, set()


def _check_structures(
    rows: list[tuple[str, dict[str, Any]]], roots: set[int], wh: _Warehouse,
    problems: _Problems,
) -> dict[int, dict[str, Any]]:
    """Duplicate ids, missing parents, cycles and clashes with the warehouse."""
    by_id: dict[int, dict[str, Any]] = {}
    where_of: dict[int, str] = {}
    for where, r in rows:
        sid = r["structure_id"]
        wide = [f"{col} {r[col]} is out of range (a {bits + 1}-bit integer)"
                for col, bits in _INT_BITS.items()
                if isinstance(r.get(col), int) and not -(2 ** bits) <= r[col] < 2 ** bits]
        if wide:
            problems.add(where, "; ".join(wide))
            continue
        if sid in by_id:
            problems.add(where, f"duplicate structure id {sid} (also {where_of[sid]})")
            continue
        by_id[sid] = r
        where_of[sid] = where
    for sid, r in by_id.items():
        parent = r["parent_id"]
        if parent is not None and parent not in by_id and parent not in wh.structures \
                and sid not in roots:
            problems.add(where_of[sid], f"parent {parent} is not in the ontology")
        old = wh.structures.get(sid)
        if old is not None and (old[0], old[1], old[2]) != (r["acronym"], parent, r["level"]):
            problems.add(
                where_of[sid],
                f"structure {sid} is already in the warehouse as {old[0]} (parent {old[1]}, "
                f"level {old[2]}), here as {r['acronym']} (parent {parent}, level {r['level']})",
            )
    # Cycles: follow parents inside the file; each node is visited once overall.
    state: dict[int, int] = {}  # 1 = on the current path, 2 = done
    for start in by_id:
        path: list[int] = []
        node: int | None = start
        while node is not None and node in by_id and state.get(node) != 2:
            if state.get(node) == 1:
                cycle = path[path.index(node):]
                ids = " -> ".join(str(i) for i in [*cycle, node])
                problems.add(where_of[node], f"the parents form a cycle: {ids}")
                break
            state[node] = 1
            path.append(node)
            node = by_id[node]["parent_id"]
        for n in path:
            state[n] = 2
    return by_id


# --------------------------------------------------------------------------- sections


def _decode_images(
    todo: list[_Image], progress: Progress | None, workers: int | None = None
) -> None:
    """Decode (proves readability, gives the size) and checksum every image, in threads."""
    def one(img: _Image) -> _Image:
        try:
            img.width, img.height = images.image_size(img.src)
            img.sha256 = images.sha256_file(img.src)
        except images.ImageTooLarge as exc:
            img.error = exc.reason
        except IshwhError:
            img.error = "not a readable PNG, JPEG or TIFF image"
        except OSError as exc:
            img.error = f"cannot read the image: {exc.strerror or exc}"
        except Exception as exc:  # a decoder failure is a bad row, not a crash
            img.error = f"cannot decode the image: {type(exc).__name__}: {exc}"
        return img

    workers = workers or min(4, os.cpu_count() or 1)  # cv2 decodes outside the GIL
    with phase(progress, "checking images", len(todo), "images") as advance, \
            ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(one, todo):
            advance(1)


def _confined(folder: Path, text: str) -> tuple[Path, str | None]:
    """The real file an image path names, or the reason it may not be used.

    The rule: the path is relative to the manifest folder and, as written, stays inside it
    (no absolute path, no ``..`` that climbs out). A symbolic link inside the folder is the
    folder owner's choice: it is followed, and its real file is what gets copied or linked
    (so a stored link never points at another link).
    """
    rel = Path(text)
    drive = len(text) > 2 and text[1] == ":" and text[2] in "/\\"  # C:\ on Windows
    if rel.is_absolute() or text.startswith(("/", "\\")) or drive:
        return rel, "is an absolute path (give a path relative to the manifest folder)"
    if os.path.normpath(text).replace("\\", "/").split("/")[0] == "..":
        return rel, "leads outside the manifest folder (images must lie inside it)"
    src = folder / rel
    try:
        real = src.resolve(strict=True)
    except FileNotFoundError:
        return rel, "not found" if not src.is_symlink() else "is a link to a missing file"
    except (OSError, RuntimeError) as exc:  # a symlink loop, a permission problem
        return rel, f"cannot be resolved ({getattr(exc, 'strerror', None) or exc})"
    if not real.is_file():
        return rel, "not found" if not real.exists() else "is not a file"
    return real, None


# --------------------------------------------------------------------------- planning


def plan(
    con: duckdb.DuckDBPyConnection, folder: str | os.PathLike, *,
    progress: Progress | None = None,
) -> Plan:
    """Read and check a manifest folder against the warehouse; write nothing.

    Returns a :class:`Plan` whose ``problems`` lists every problem found (empty = loadable).
    """
    folder = Path(folder)
    result = Plan(folder)
    problems = result.problems
    if not folder.is_dir():
        problems.add(str(folder), "not a folder")
        return result
    wh = _Warehouse.read(con)

    # ---- ontology
    n_problems = len(problems)
    onto_name, onto_rows, roots = _ontology_rows(folder, problems)
    # A file that could not be read at all is a root cause: the rows that name its
    # structures (or experiments, genes) are not listed one by one after it.
    broken: dict[str, str] = {}
    if onto_name is not None and not onto_rows and len(problems) > n_problems:
        broken["unknown structure"] = onto_name
    if onto_name is None and not wh.structures:
        problems.add(str(folder), "no ontology.json or structures.csv (and the warehouse "
                                  "has no structures yet)")
    structures = _check_structures(onto_rows, roots, wh, problems)
    all_structures = {**{s: v[0] for s, v in wh.structures.items()},
                      **{s: r["acronym"] for s, r in structures.items()}}
    by_acronym: dict[str, list[int]] = {}
    for sid, acr in all_structures.items():
        by_acronym.setdefault(acr, []).append(sid)

    # ---- sections: genes, experiments, sections
    name = "sections.csv"
    if not (folder / name).is_file():
        problems.add(str(folder), "no sections.csv")
        rows = []
    else:
        n_problems = len(problems)
        rows = _read_csv(folder, name, SECTIONS_COLUMNS, problems) or []
        if not rows and len(problems) > n_problems:
            broken["unknown experiment"] = broken["unknown gene"] = name
    genes: dict[str, dict[str, Any]] = {}       # acronym -> row (+ first line)
    experiments: dict[int, dict[str, Any]] = {}
    sections: dict[tuple[int, int], dict[str, Any]] = {}
    todo: list[_Image] = []
    next_gene_id = max(wh.max_gene_id, GENE_ID_BASE) + 1
    for line, row in rows:
        where = _at(name, line)
        gene = row["gene"]
        stage = _STAGE_BY_KEY.get(row["stage"].upper())
        eid = _parse_int(row["experiment_id"])
        num = _parse_int(row["section_number"])
        if not gene:
            problems.add(where, "empty gene")
        if stage is None:
            problems.add(where, f"unknown stage {row['stage']!r} (one of: {', '.join(STAGES)})")
        if eid is None:
            problems.add(where, f"experiment_id {row['experiment_id']!r} is not an integer")
        elif not -MAX_EXPERIMENT_ID <= eid <= MAX_EXPERIMENT_ID:
            problems.add(where, f"experiment_id {eid} is out of range (at most "
                                f"{MAX_EXPERIMENT_ID:,}: section ids are experiment_id x "
                                f"{SECTION_ID_FACTOR:,} + section_number, a 64-bit integer)")
            eid = None
        if num is None or not 0 <= num < SECTION_ID_FACTOR:
            problems.add(where, f"section_number {row['section_number']!r} is not an integer "
                                f"in 0..{SECTION_ID_FACTOR - 1}")
            num = None
        position = None
        if row.get("position"):
            try:
                position = float(row["position"])
            except ValueError:
                position = -1.0
            if not 0.0 <= position <= 1.0:
                problems.add(where, f"position {row['position']!r} is not a number in 0..1")
                position = None
        # gene (symbol + optional name)
        gname = row.get("gene_name") or None
        if gene:
            g = genes.get(gene)
            if g is None:
                old = wh.genes.get(gene)
                if old is None:
                    g = {"gene_id": next_gene_id, "name": None}
                    next_gene_id += 1
                else:  # a known gene keeps its id; its name is the one to agree with
                    g = {"gene_id": old[0], "name": old[1]}
                g = genes[gene] = {**g, "acronym": gene, "line": None}
            if gname:
                if g["name"] is None:
                    g["name"], g["line"] = gname, line
                elif g["name"] != gname:
                    seen = "in the warehouse" if g["line"] is None else f"on line {g['line']}"
                    problems.add(where, f"gene {gene} is named {gname!r} here but "
                                        f"{g['name']!r} {seen}")
        # experiment
        if eid is not None and gene and stage:
            e = experiments.get(eid)
            if e is None:
                experiments[eid] = {"experiment_id": eid, "gene": gene, "stage": stage,
                                    "line": line}
            elif (e["gene"], e["stage"]) != (gene, stage):
                problems.add(where, f"experiment {eid} is listed as {gene} {stage} here but as "
                                    f"{e['gene']} {e['stage']} on line {e['line']}")
        # section + image
        if eid is not None and num is not None:
            key = (eid, num)
            if key in sections:
                problems.add(where, f"duplicate section: experiment {eid} section {num} is "
                                    f"also on line {sections[key]['line']}")
                continue
            sections[key] = {"experiment_id": eid, "section_number": num,
                             "position": position, "line": line}
        if not row["image"]:
            problems.add(where, "empty image")
            continue
        src, reason = _confined(folder, row["image"])
        if reason is not None:
            problems.add(where, f"image {row['image']} {reason}")
            continue
        img = _Image(line, src, row["image"])
        todo.append(img)
        if eid is not None and num is not None:
            sections[(eid, num)]["image"] = img

    _decode_images(todo, progress)
    for img in todo:
        if img.error:
            problems.add(_at(name, img.line), f"image {img.text}: {img.error}")

    # ---- experiments and sections against the warehouse
    _check_experiments(con, experiments, genes, problems)
    section_rows = _section_rows(con, sections, problems)

    # ---- annotations
    before = len(problems)
    ann_rows = _annotations(con, folder, experiments, all_structures, by_acronym, problems)
    label_rows = _gene_labels(con, folder, genes, wh, problems)
    _fold_consequences(problems, before, broken)
    result.references = _references(folder, set(all_structures), problems)

    if problems:
        return result
    source = f"dir:{folder.resolve()}"
    result.tables = {
        "genes": _table("genes", list(genes.values())),
        "structures": _table("structures", list(structures.values())),
        "experiments": _table("experiments", [
            {**e, "gene_id": genes[e["gene"]]["gene_id"], "source": source}
            for e in experiments.values()
        ]),
        "sections": _table("sections", section_rows),
        "annotations": ann_rows,
        "gene_labels": _table("gene_labels", label_rows),
    }
    result.images = {s["image"].sha256: s["image"].src for s in sections.values()}
    return result


def _fold_consequences(problems: _Problems, start: int, broken: dict[str, str]) -> None:
    """Replace the problems (from ``start`` on) that only follow from an unreadable file by
    one line per file that says how many there were."""
    if not broken:
        return
    kept, folded = [], {}
    for p in problems[start:]:
        reason = p.split(": ", 1)[1] if ": " in p else p
        cause = next((f for key, f in broken.items() if reason.startswith(key)), None)
        if cause is None:
            kept.append(p)
        else:
            where = p.split(":", 1)[0]
            folded[(where, cause)] = folded.get((where, cause), 0) + 1
    del problems[start:]
    problems.extend(kept)
    for (where, cause), n in folded.items():
        problems.add(where, f"{n:,} row(s) name structures, experiments or genes that "
                            f"{cause} should have defined; fix {cause} first (not listed)")


def _check_experiments(
    con: duckdb.DuckDBPyConnection, experiments: dict[int, dict[str, Any]],
    genes: dict[str, dict[str, Any]], problems: _Problems,
) -> None:
    if not experiments:
        return
    new = pa.table({
        "experiment_id": pa.array(list(experiments), pa.int64()),
        "acronym": [e["gene"] for e in experiments.values()],
        "stage": [e["stage"] for e in experiments.values()],
        "line": [e["line"] for e in experiments.values()],
    })
    with registered(con, new, "_ishwh_exp"):
        clashes = con.execute(
            """
            select n.line, n.experiment_id, g.acronym, e.stage
            from _ishwh_exp n join experiments e using (experiment_id)
            left join genes g on g.gene_id = e.gene_id
            where g.acronym is distinct from n.acronym or e.stage <> n.stage
            order by n.line
            """
        ).fetchall()
    for line, eid, acr, stage in clashes:
        problems.add(_at("sections.csv", line),
                     f"experiment {eid} is already in the warehouse as {acr} {stage}")


def _section_rows(
    con: duckdb.DuckDBPyConnection, sections: dict[tuple[int, int], dict[str, Any]],
    problems: _Problems,
) -> list[dict[str, Any]]:
    """Give every section its id (existing or derived) and check it against the warehouse."""
    usable = {k: s for k, s in sections.items() if "image" in s and not s["image"].error}
    if not usable:
        return []
    keys = list(usable)
    new = pa.table({
        "experiment_id": pa.array([k[0] for k in keys], pa.int64()),
        "section_number": pa.array([k[1] for k in keys], pa.int32()),
        "derived_id": pa.array([section_id(*k) for k in keys], pa.int64()),
        "sha256": [usable[k]["image"].sha256 for k in keys],
    })
    with registered(con, new, "_ishwh_sec"):
        same_key = con.execute(
            """
            select n.experiment_id, n.section_number, s.section_id, s.sha256
            from _ishwh_sec n join sections s using (experiment_id, section_number)
            """
        ).fetchall()
        taken = con.execute(
            """
            select n.experiment_id, n.section_number, s.experiment_id, s.section_number
            from _ishwh_sec n join sections s on s.section_id = n.derived_id
            where (s.experiment_id, s.section_number) <> (n.experiment_id, n.section_number)
            """
        ).fetchall()
    existing = {(e, n): (sid, sha) for e, n, sid, sha in same_key}
    out = []
    for (eid, num), s in usable.items():
        img: _Image = s["image"]
        where = _at("sections.csv", s["line"])
        if (eid, num) in existing:
            sid, sha = existing[(eid, num)]
            if sha is not None and sha != img.sha256:
                problems.add(where, f"experiment {eid} section {num} is already in the "
                                    "warehouse with a different image")
        else:
            sid = section_id(eid, num)
        out.append({"section_id": sid, "experiment_id": eid, "section_number": num,
                    "image_path": images.content_relpath(img.src, img.sha256),
                    "width": img.width, "height": img.height, "position": s["position"],
                    "sha256": img.sha256})
    for eid, num, oe, on in taken:
        if (eid, num) not in existing:
            problems.add(
                _at("sections.csv", usable[(eid, num)]["line"]),
                f"section id {section_id(eid, num)} (experiment {eid} section {num}) "
                f"is already used by experiment {oe} section {on} in the warehouse",
            )
    return out


def _read_csv_frame(
    folder: Path, name: str, required: tuple[str, ...], problems: _Problems
) -> pl.DataFrame | None:
    """The ``required`` columns of a (possibly large) CSV as strings, plus ``line``.

    Read with the csv module (exact line numbers, quoting) into column lists; the checks
    then run vectorised on the frame, which keeps millions of annotation rows fast.
    """
    path = folder / name
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            if not _header_ok(name, header, required, problems):
                return None
            idx = [header.index(c) for c in required]
            cols: list[list[str]] = [[] for _ in required]
            lines: list[int] = []
            for fields in reader:
                if not fields:  # a blank line, as csv.DictReader skips them
                    continue
                if len(fields) > len(header):
                    problems.add(_at(name, reader.line_num),
                                 "more fields than the header has columns")
                lines.append(reader.line_num)
                for col, i in zip(cols, idx, strict=True):
                    col.append(fields[i] if i < len(fields) else "")
    except UnicodeDecodeError:
        problems.add(*_not_utf8(path, name))
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


def _known_experiments(
    con: duckdb.DuckDBPyConnection, ids: Iterable[int], manifest: dict[int, Any]
) -> set[int]:
    ask = sorted({i for i in ids if i not in manifest})
    if not ask:
        return set(manifest)
    with registered(con, pa.table({"experiment_id": pa.array(ask, pa.int64())}), "_ishwh_ids"):
        found = con.execute(
            "select experiment_id from _ishwh_ids join experiments using (experiment_id)"
        ).fetchall()
    return set(manifest) | {r[0] for r in found}


def _annotations(
    con: duckdb.DuckDBPyConnection, folder: Path, experiments: dict[int, Any],
    structures: dict[int, str], by_acronym: dict[str, list[int]], problems: _Problems,
) -> pa.Table:
    """Check annotations.csv (vectorised) and return its rows for the loader."""
    name = "annotations.csv"
    empty = _table("annotations", [])
    if not (folder / name).is_file():
        return empty
    df = _read_csv_frame(folder, name, ANNOTATIONS_COLUMNS, problems)
    if df is None or df.height == 0:
        return empty
    found: list[tuple[int, int, str]] = []  # (line, order within the line, reason)

    def report(rows: pl.DataFrame, order: int, reason: Callable[[dict[str, Any]], str]) -> None:
        found.extend((r["line"], order, reason(r)) for r in rows.iter_rows(named=True))

    # Experiments: an integer, listed in sections.csv or already in the warehouse.
    df = df.with_columns(eid=pl.col("experiment_id").cast(pl.Int64, strict=False))
    report(df.filter(pl.col("eid").is_null()), 0,
           lambda r: f"experiment_id {r['experiment_id']!r} is not an integer")
    known = _known_experiments(con, df["eid"].drop_nulls().unique().to_list(), experiments)
    unknown = pl.col("eid").is_not_null() & ~pl.col("eid").is_in(list(known))
    report(df.filter(unknown), 0,
           lambda r: f"unknown experiment {r['eid']} (not in sections.csv nor the warehouse)")
    df = df.with_columns(eid=pl.when(unknown).then(None).otherwise(pl.col("eid")))

    # Structures: an id of the ontology or an unambiguous acronym.
    acronyms = pl.DataFrame(
        {"structure": list(by_acronym),
         "acr_id": [ids[0] if len(ids) == 1 else None for ids in by_acronym.values()],
         "n_ids": [len(ids) for ids in by_acronym.values()]},
        schema={"structure": pl.String, "acr_id": pl.Int64, "n_ids": pl.Int64},
    )
    df = df.with_columns(num=pl.col("structure").cast(pl.Int64, strict=False)).join(
        acronyms, on="structure", how="left", maintain_order="left")
    by_id = pl.col("num").is_not_null()
    bad_id = by_id & ~pl.col("num").is_in(list(structures))
    report(df.filter(bad_id), 1, lambda r: f"unknown structure id {r['num']}")
    report(df.filter(~by_id & pl.col("n_ids").is_null()), 1,
           lambda r: f"unknown structure {r['structure']!r}")
    report(df.filter(~by_id & (pl.col("n_ids") > 1)), 1,
           lambda r: f"structure acronym {r['structure']!r} is ambiguous (ids "
                     f"{', '.join(map(str, sorted(by_acronym[r['structure']])))}); use the id")
    df = df.with_columns(
        sid=pl.when(by_id).then(pl.when(bad_id).then(None).otherwise(pl.col("num")))
        .otherwise(pl.col("acr_id")))

    # Calls: one of the enumeration in any case, or empty for unknown (NULL).
    for order, (col, allowed) in enumerate(
            (("pattern", PATTERNS), ("intensity", GRADES), ("density", GRADES)), start=2):
        low = pl.col(col).str.to_lowercase()
        report(df.filter((low != "") & ~low.is_in(list(allowed))), order,
               lambda r, col=col, allowed=allowed:
               f"bad {col} {r[col]!r} (one of: {', '.join(allowed)}, or empty for unknown)")
        df = df.with_columns(pl.when(low.is_in(list(allowed))).then(low).alias(col))

    # Duplicates: the same experiment and structure twice.
    df = df.filter(pl.col("eid").is_not_null() & pl.col("sid").is_not_null()).with_columns(
        first=pl.col("line").min().over("eid", "sid"))
    report(df.filter(pl.col("line") != pl.col("first")), 5,
           lambda r: f"duplicate annotation of experiment {r['eid']} in structure "
                     f"{structures[r['sid']]} ({r['sid']}); also on line {r['first']}")
    df = df.filter(pl.col("line") == pl.col("first"))

    rows = df.select(experiment_id="eid", structure_id="sid", pattern="pattern",
                     intensity="intensity", density="density", line="line").to_arrow()
    with registered(con, rows, "_ishwh_ann"):
        clashes = con.execute(
            """
            select n.line, n.experiment_id, n.structure_id
            from _ishwh_ann n join annotations a using (experiment_id, structure_id)
            where a.pattern is distinct from n.pattern
               or a.intensity is distinct from n.intensity
               or a.density is distinct from n.density
            """
        ).fetchall()
    found.extend((line, 6, f"experiment {eid} is already annotated differently in structure "
                           f"{structures[sid]} ({sid})") for line, eid, sid in clashes)
    for line, _, reason in sorted(found, key=lambda f: (f[0], f[1])):
        problems.add(_at(name, line), reason)
    return rows.drop_columns(["line"]).cast(_SCHEMAS["annotations"])


def _gene_labels(
    con: duckdb.DuckDBPyConnection, folder: Path, genes: dict[str, dict[str, Any]],
    wh: _Warehouse, problems: _Problems,
) -> list[dict[str, Any]]:
    name = "gene_labels.csv"
    if not (folder / name).is_file():
        return []
    rows = _read_csv(folder, name, GENE_LABELS_COLUMNS, problems) or []
    out, lines, seen = [], [], {}
    for line, row in rows:
        where = _at(name, line)
        gene, task, label = row["gene"], row["task"], row["label"].lower()
        gid = genes[gene]["gene_id"] if gene in genes else (wh.genes.get(gene) or (None,))[0]
        if gid is None:
            problems.add(where, f"unknown gene {gene!r} (not in sections.csv nor the warehouse)")
        if not task:
            problems.add(where, "empty task")
        if label not in _TRUE | _FALSE:
            problems.add(where, f"bad label {row['label']!r} (0 or 1)")
        if gid is None or not task or label not in _TRUE | _FALSE:
            continue
        if (gene, task) in seen:
            problems.add(where, f"duplicate label of gene {gene} for task {task!r}; also on "
                                f"line {seen[(gene, task)]}")
            continue
        seen[(gene, task)] = line
        out.append({"gene_id": gid, "task": task, "label": label in _TRUE})
        lines.append(line)
    if out:
        new = _table("gene_labels", out).append_column("line", pa.array(lines, pa.int64()))
        with registered(con, new, "_ishwh_gl"):
            clashes = con.execute(
                """
                select n.line, n.task from _ishwh_gl n join gene_labels g using (gene_id, task)
                where g.label <> n.label order by n.line
                """
            ).fetchall()
        for line, task in clashes:
            problems.add(_at(name, line), f"the warehouse already has the other label for "
                                          f"task {task!r}")
    return out


# --------------------------------------------------------------------------- ingest


def _references(folder: Path, known: set[int], problems: _Problems
                ) -> dict[str, tuple[Any, float | None, str]]:
    """Read and check ``reference/<STAGE>.npz`` or ``.mhd`` (optional)."""
    from ishwh.atlas import reference as ref_mod  # noqa: PLC0415

    out: dict[str, tuple[Any, float | None, str]] = {}
    ref_dir = folder / "reference"
    if not ref_dir.is_dir():
        return out
    for path in sorted(ref_dir.iterdir()):
        if path.suffix.lower() not in (".npz", ".mhd"):
            continue
        where = f"reference/{path.name}"
        stage = _STAGE_BY_KEY.get(path.stem.upper())
        if stage is None:
            problems.add(where, f"unknown stage {path.stem!r} (one of: {', '.join(STAGES)})")
            continue
        if stage in out:
            problems.add(where, f"a second reference of stage {stage}")
            continue
        try:
            vol, spacing = ref_mod.read_reference_file(path)
            ref_mod.check_ids(vol, known, where)
        except IshwhError as exc:
            problems.add(where, exc.message.removeprefix(f"{where}: ")
                         .removeprefix(f"{path.name}: "))
            continue
        out[stage] = (vol, spacing, path.name)
    return out


def ingest_dir(
    db_path: str | os.PathLike, folder: str | os.PathLike, *, link: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Check a manifest folder, then load it all-or-nothing into the warehouse.

    Parameters
    ----------
    db_path:
        An initialised warehouse (held open read-write for the whole ingest, so nothing
        changes between checking and loading).
    folder:
        The manifest folder (see this module's docstring and ``docs/manifest.md``).
    link:
        Hard-link (or, across file systems, symlink) the images instead of copying them.
    progress:
        Where to report the image check (:class:`ishwh.progress.Progress`); None: nowhere.

    Returns
    -------
    ``{"folder", "db", "new": {table: n_new_rows}, "rows": {table: n_rows_in_manifest},
    "images_added": n, "nothing_new": bool}``.

    Raises
    ------
    ManifestError
        With every problem (``file:line: reason``); the warehouse is left untouched.
    """
    folder = Path(folder)
    with warehouse.connect(db_path) as con:
        p = plan(con, folder, progress=progress)
        if p.problems:
            raise ManifestError(p.problems, hint="fix the manifest and ingest it again")
        root = warehouse.images_dir(db_path)
        added_images = 0
        # Images first: if loading failed afterwards, unreferenced content-addressed files
        # are harmless; rows pointing to missing files would not be.
        for sha, src in p.images.items():
            if not (root / images.content_relpath(src, sha)).exists():
                images.place_image(src, root, sha, link=link)
                added_images += 1
        new = loader.load(con, loader.Batch(**p.tables))
        if p.references:
            from ishwh.atlas import reference as ref_mod  # noqa: PLC0415

            with warehouse.transaction(con):
                new["reference_atlases"] = sum(
                    ref_mod.store(con, stage, vol, spacing, f"dir:{folder.resolve()}/{name}")
                    for stage, (vol, spacing, name) in p.references.items())
    return {
        "folder": str(folder),
        "db": str(db_path),
        "new": new,
        "rows": {t: tab.num_rows for t, tab in p.tables.items()},
        "images_added": added_images,
        "nothing_new": not any(new.values()) and not added_images,
    }
