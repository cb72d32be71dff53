"""The structure tree of the synthetic atlas: generated (levels 1..L, a given count per
level) or read from a real Allen structure-graph JSON file (graph 17, ventricles excluded)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ishwh.errors import InvalidInput
from ishwh.ontology import fill_root_levels, structures_from_graph_json

FIRST_ID = 15565  # Allen DevMouse structure ids start just above the graph-17 root (15564)
_LEVEL1 = ["Pr", "Me", "Rh", "Sp", "Te", "Di", "Cb", "Ob", "Hy", "Th", "Pa", "Is"]
_LEVEL1_NAMES = {
    "Pr": "prosencephalic", "Me": "mesencephalic", "Rh": "rhombencephalic", "Sp": "spinal",
    "Te": "telencephalic", "Di": "diencephalic", "Cb": "cerebellar", "Ob": "olfactory",
    "Hy": "hypothalamic", "Th": "thalamic", "Pa": "pallial", "Is": "isthmic",
}


@dataclass
class Ontology:
    """A structure tree in graph order (pre-order: parents before children)."""

    ids: np.ndarray          # (S,) int64 structure ids
    acronyms: list[str]
    names: list[str]
    parent: np.ndarray       # (S,) int64 index of the parent in this tree, -1 for a top node
    parent_ids: list[int | None]  # the parent id to store (may point outside the tree)
    level: np.ndarray        # (S,) int32 ontology level (Allen st_level)
    depth: np.ndarray        # (S,) int32 depth in this tree (0 = top node)

    @property
    def size(self) -> int:
        return len(self.ids)

    def children(self) -> list[list[int]]:
        out: list[list[int]] = [[] for _ in range(self.size)]
        for i, p in enumerate(self.parent):
            if p >= 0:
                out[p].append(i)
        return out

    def subtree_matrix(self) -> sp.csr_matrix:
        """(S, S) 0/1 matrix: row s has a 1 at every structure in the subtree of s."""
        rows, cols = [], []
        for i in range(self.size):
            j = i
            while j >= 0:  # i belongs to the subtree of each of its ancestors
                rows.append(j)
                cols.append(i)
                j = int(self.parent[j])
        data = np.ones(len(rows), dtype=np.float64)
        return sp.csr_matrix((data, (rows, cols)), shape=(self.size, self.size))

    def rows(self) -> list[dict]:
        """Rows for the ``structures`` table."""
        return [
            {
                "structure_id": int(self.ids[i]),
                "acronym": self.acronyms[i],
                "name": self.names[i],
                "parent_id": self.parent_ids[i],
                "level": int(self.level[i]),
                "graph_order": i,
            }
            for i in range(self.size)
        ]

    def graph_json(self) -> dict:
        """The tree as Allen structure-graph JSON (``{"msg": [nested nodes]}``)."""
        nodes = [
            {
                "id": int(self.ids[i]),
                "acronym": self.acronyms[i],
                "name": self.names[i],
                "parent_structure_id": self.parent_ids[i],
                "st_level": int(self.level[i]),
                "graph_order": i,
                "children": [],
            }
            for i in range(self.size)
        ]
        top = []
        for i, p in enumerate(self.parent):
            (nodes[p]["children"] if p >= 0 else top).append(nodes[i])
        return {"success": True, "msg": top}


def _code(index: int, depth: int) -> str:
    """Child code by depth: UPPER letters, digits, lower letters, digits, ... (so the
    concatenated acronym is unique: two digit levels are never adjacent)."""
    kind = depth % 3
    if kind == 2:
        return str(index + 1)
    letters = ""
    n = index
    while True:
        letters = chr(ord("A") + n % 26) + letters
        n = n // 26 - 1
        if n < 0:
            break
    return letters if kind == 1 else letters.lower()


def generate(level_counts: tuple[int, ...], rng: np.random.Generator) -> Ontology:
    """A random tree with ``level_counts[l-1]`` structures at level ``l``.

    Each structure's parent is on the level above; parents are drawn with uneven weights,
    so some structures have many children and some none (as in the real ontology).
    """
    # Parents come from the level above or, less often, up to three levels above (as in
    # the real ontology, where e.g. a level-9 structure may hang under a level-7 one); this
    # keeps deep structures from shrinking to nothing when a level has few structures.
    kids: dict[tuple[int, int], list[int]] = {}
    for lvl, count in enumerate(level_counts):
        if lvl == 0:
            continue
        cands = [(pl, k) for pl in range(max(0, lvl - 3), lvl) for k in range(level_counts[pl])]
        weights = np.array([0.5 ** (lvl - 1 - pl) for pl, _ in cands]) * rng.gamma(
            2.0, size=len(cands))
        weights /= weights.sum()
        n_above = level_counts[lvl - 1]
        if count >= n_above:  # every structure of the level above gets a child first
            assign = list(range(n_above)) + list(
                rng.choice(len(cands), size=count - n_above, p=weights))
            assign = [cands.index((lvl - 1, a)) if i < n_above else a
                      for i, a in enumerate(assign)]
        else:
            assign = list(rng.choice(len(cands), size=count, replace=False, p=weights))
        for k, a in enumerate(sorted(assign)):
            kids.setdefault(cands[a], []).append((lvl, k))
    ids, acr, names, parent, level, depth = [], [], [], [], [], []

    def visit(lvl: int, k: int, par: int, prefix: str, name: str, title: str) -> None:
        me = len(ids)
        ids.append(FIRST_ID + me)
        acr.append(prefix)
        names.append(name)
        parent.append(par)
        level.append(lvl + 1)
        depth.append(0 if par < 0 else depth[par] + 1)
        for j, (clvl, child) in enumerate(kids.get((lvl, k), [])):
            code = _code(j, depth[me] + 1)
            name = f"synthetic {title} subdivision {prefix + code}"
            visit(clvl, child, me, prefix + code, name, title)

    for k in range(level_counts[0]):
        stem = _LEVEL1[k] if k < len(_LEVEL1) else f"R{k}"
        title = _LEVEL1_NAMES.get(stem, "region")
        visit(0, k, -1, stem, f"synthetic {title} region {k + 1}", title)
    par = np.asarray(parent, dtype=np.int64)
    return Ontology(
        ids=np.asarray(ids, dtype=np.int64),
        acronyms=acr,
        names=names,
        parent=par,
        parent_ids=[None if p < 0 else int(FIRST_ID + p) for p in par],
        level=np.asarray(level, dtype=np.int32),
        depth=np.asarray(depth, dtype=np.int32),
    )


def from_graph_file(path: str | Path, max_level: int = 10) -> Ontology:
    """The real ontology from an Allen structure-graph JSON file: structures with st_level
    1..``max_level``, ventricles (acronyms ``v_*``) and their subtrees excluded."""
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
        rows = structures_from_graph_json(obj)
    except (OSError, ValueError, KeyError) as exc:
        raise InvalidInput(f"cannot read ontology {path}: {exc}") from exc
    unknown = fill_root_levels(rows)  # the root gets 0, and levels 0 are left out below
    if unknown:
        raise InvalidInput(f"ontology {path}: structure {unknown[0]['structure_id']} has no "
                           "st_level")
    by_id = {r["structure_id"]: r for r in rows}
    keep = []
    for r in sorted(rows, key=lambda r: (r["graph_order"] is None, r["graph_order"] or 0)):
        lvl = r["level"]
        if not (1 <= lvl <= max_level) or (r["acronym"] or "").startswith("v_"):
            continue
        anc, ok = r["parent_id"], True
        while anc is not None and anc in by_id:  # drop subtrees of excluded ventricles
            if (by_id[anc]["acronym"] or "").startswith("v_"):
                ok = False
                break
            anc = by_id[anc]["parent_id"]
        if ok:
            keep.append(r)
    if not keep:
        raise InvalidInput(f"ontology {path} has no structures at levels 1..{max_level}")
    index = {r["structure_id"]: i for i, r in enumerate(keep)}
    parent = np.full(len(keep), -1, dtype=np.int64)
    for i, r in enumerate(keep):
        anc = r["parent_id"]
        while anc is not None and anc not in index and anc in by_id:
            anc = by_id[anc]["parent_id"]  # attach to the nearest kept ancestor
        parent[i] = index.get(anc, -1) if anc is not None else -1
    depth = np.zeros(len(keep), dtype=np.int32)
    for i in range(len(keep)):  # graph order puts parents first
        depth[i] = 0 if parent[i] < 0 else depth[parent[i]] + 1
    if any(parent[i] >= i for i in range(len(keep))):
        raise InvalidInput(f"ontology {path} is not in graph order (a parent after its child)")
    return Ontology(
        ids=np.array([r["structure_id"] for r in keep], dtype=np.int64),
        acronyms=[r["acronym"] for r in keep],
        names=[r["name"] for r in keep],
        parent=parent,
        parent_ids=[r["parent_id"] for r in keep],
        level=np.array([r["level"] for r in keep], dtype=np.int32),
        depth=depth,
    )
