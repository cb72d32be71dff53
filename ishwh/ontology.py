"""Structure ontologies: Allen structure-graph JSON (nested or flat) and structures.csv.

The paper's "ontology level" is Allen's ``st_level`` (graph 17, Developing Mouse, root
15564). Every reader returns the same rows: ``structure_id, acronym, name, parent_id,
level, graph_order, color_hex``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any


def _walk(nodes: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    stack = list(nodes)[::-1]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(node.get("children") or []))


def _row(node: dict[str, Any]) -> dict[str, Any]:
    level = node.get("st_level", node.get("level"))
    parent = node.get("parent_structure_id", node.get("parent_id"))
    return {
        "structure_id": int(node["id"] if "id" in node else node["structure_id"]),
        "acronym": node.get("acronym"),
        "name": node.get("name"),
        "parent_id": None if parent in (None, "") else int(parent),
        "level": None if level in (None, "") else int(level),
        "graph_order": None if node.get("graph_order") in (None, "") else int(node["graph_order"]),
        "color_hex": node.get("color_hex_triplet"),
    }


def structures_from_graph_json(obj: Any) -> list[dict[str, Any]]:
    """Rows from an Allen structure graph: ``{"msg": [...]}`` or a bare list, nested
    (``children``) or flat (RMA ``Structure`` rows). Order: graph order as given."""
    nodes = obj.get("msg", obj) if isinstance(obj, dict) else obj
    if isinstance(nodes, dict):
        nodes = [nodes]
    if not isinstance(nodes, list):
        raise ValueError("structure graph JSON must hold a list of structures under 'msg'")
    return [_row(n) for n in _walk(nodes)]


def fill_root_levels(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The one rule for a missing ``st_level``: Allen's graph root has none, and the warehouse
    needs one. A structure without a level whose parent is not among ``rows`` (a root) gets
    level 0, in place. Returns the other structures without a level: their level cannot be
    known (Allen's levels are not depth: a level-9 structure may hang under a level-7 one),
    so each caller refuses them in its own way (a manifest problem, an error)."""
    ids = {r["structure_id"] for r in rows}
    unknown = []
    for r in rows:
        if r["level"] is None:
            if r["parent_id"] is None or r["parent_id"] not in ids:
                r["level"] = 0
            else:
                unknown.append(r)
    return unknown
