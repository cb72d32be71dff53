"""The manifest's ontology: ``ontology.json`` (an Allen structure graph) or
``structures.csv``, read into structure rows and checked (duplicate ids, missing parents,
cycles, clashes with the warehouse)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ishwh.manifest.csvfiles import (
    STRUCTURES_COLUMNS,
    Problems,
    WarehouseView,
    at,
    parse_int,
    read_csv,
)
from ishwh.ontology import fill_root_levels, structures_from_graph_json

# Integer columns of structure rows and their width in the warehouse (bits below the sign).
_INT_BITS = {"structure_id": 63, "parent_id": 63, "level": 31, "graph_order": 31}


def ontology_rows(
    folder: Path, problems: Problems
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
    folder: Path, problems: Problems
) -> tuple[str, list[tuple[str, dict[str, Any]]], set[int]]:
    name = "ontology.json"
    try:
        obj = json.loads((folder / name).read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        problems.add(at(name, exc.lineno), f"not valid JSON: {exc.msg}")
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
    folder: Path, problems: Problems
) -> tuple[str, list[tuple[str, dict[str, Any]]], set[int]]:
    name = "structures.csv"
    table = read_csv(folder, name, STRUCTURES_COLUMNS, problems)
    out = []
    for line, row in table or []:
        where = at(name, line)
        sid = parse_int(row["structure_id"])
        parent = parse_int(row["parent_id"]) if row["parent_id"] else None
        level = parse_int(row["level"])
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
                "graph_order": parse_int(row.get("graph_order", "") or "x"),
                "color_hex": row.get("color_hex") or None,
            }))
    return name, out, set()


def check_structures(
    rows: list[tuple[str, dict[str, Any]]], roots: set[int], wh: WarehouseView,
    problems: Problems,
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
