"""``featurize --extractor atlas``: stain statistics inside each structure's projected mask.

This module holds the measurements; :mod:`ishwh.atlas.runner` moves them between the
warehouse and the engines (the plan, one chunk computed, one chunk written). Per section:
register it to the stage's reference (stored in ``section_alignments``; an
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

from collections.abc import Sequence

import duckdb
import numpy as np
import scipy.sparse as sp

SET_NAME = "atlas.stain"
WHAT = ("stain", "cnn")
UNSEEN = "nearest seen ancestor"   # what a structure no section showed gets (fill_unseen)
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


def fill_unseen(pooled: np.ndarray, seen: np.ndarray, parent: np.ndarray,
                keep: Sequence[int] = ()) -> np.ndarray:
    """Structures an experiment's sections never showed take the statistics of their
    nearest ancestor that was shown (columns ``keep``, e.g. ``seen``, stay as they are).

    Six sections of a brain miss many small structures (on the real E11.5 anatomy 10-17 %
    of experiment x structure pairs at levels 5-9); zeros would leave their models only the
    base rate, while the region around them was measured. ``parent``: index or -1."""
    n = pooled.shape[0]
    src = np.where(seen, np.arange(n), parent)
    for _ in range(64):                       # deeper than any ontology
        bad = (src >= 0) & ~seen[np.maximum(src, 0)]
        if not bad.any():
            break
        src = np.where(bad, parent[np.maximum(src, 0)], src)
    out = pooled.copy()
    fill = ~seen & (src >= 0)
    cols = [c for c in range(pooled.shape[1]) if c not in set(keep)]
    out[np.ix_(fill, cols)] = pooled[np.ix_(src[fill], cols)]
    return out
