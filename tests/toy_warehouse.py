"""A small warehouse with known signal, for the fit tests (test code: not in the wheel).

Genes carry a few latent factors; each structure's label is a noisy linear function of them
(prevalence varying from rare to common) and the feature vectors are the factors mixed into
``dim`` dimensions plus noise. So a working fit must score well above 0.5 at every level, and
one that shuffles the training labels must score 0.5.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import polars as pl

from ishwh import loader, store, warehouse


@dataclass
class ToyAtlas:
    structure_ids: np.ndarray
    levels: np.ndarray
    experiment_ids: dict          # stage -> ids
    feature_set: str


def make_toy_warehouse(
    db_path: str | os.PathLike,
    *,
    n_genes: int = 120,
    stages: tuple[str, ...] = ("E11.5",),
    structures_per_level: tuple[int, ...] = (3, 4, 6),
    dim: int = 64,
    n_factors: int = 4,
    label_noise: float = 0.6,
    missing: float = 0.05,
    n_gene_tasks: int = 2,
    feature_set: str = "grid.toy",
    seed: int = 0,
) -> ToyAtlas:
    """Create (or extend) a warehouse at ``db_path`` with a toy atlas and one feature set."""
    rng = np.random.default_rng(seed)
    warehouse.init(db_path)
    genes = pl.DataFrame({"gene_id": np.arange(1, n_genes + 1),
                          "acronym": [f"G{i}" for i in range(1, n_genes + 1)]})
    sids, lvls, parents = [], [], []
    sid = 100
    for lvl, k in enumerate(structures_per_level, start=1):
        for _ in range(k):
            sids.append(sid)
            lvls.append(lvl)
            parents.append(None)
            sid += 1
    structures = pl.DataFrame({"structure_id": sids, "acronym": [f"S{s}" for s in sids],
                               "level": lvls, "parent_id": parents},
                              schema_overrides={"parent_id": pl.Int64})
    factors = rng.standard_normal((n_genes, n_factors))
    weights = rng.standard_normal((n_factors, len(sids)))
    prevalence = rng.uniform(0.15, 0.85, len(sids))
    exps, anns, exp_ids = [], [], {}
    mix = rng.standard_normal((n_factors, dim)) / np.sqrt(n_factors)
    feats = {}
    for si, stage in enumerate(stages):
        ids = (si + 1) * 100_000 + np.arange(1, n_genes + 1)
        exp_ids[stage] = ids
        stage_shift = rng.standard_normal((n_factors, len(sids))) * 0.3
        logits = factors @ (weights + stage_shift)
        logits = logits / logits.std(0) + label_noise * rng.standard_normal(logits.shape)
        thresh = np.array([np.quantile(logits[:, j], 1 - prevalence[j])
                           for j in range(len(sids))])
        detected = logits > thresh
        known = rng.random(detected.shape) >= missing
        gi, sj = np.nonzero(known)
        exps.append(pl.DataFrame({"experiment_id": ids, "gene_id": np.arange(1, n_genes + 1),
                                  "stage": [stage] * n_genes}))
        anns.append(pl.DataFrame({
            "experiment_id": ids[gi], "structure_id": np.asarray(sids)[sj],
            "pattern": np.where(detected[gi, sj], "full", "undetected")}))
        feats[stage] = (ids, (factors @ mix + rng.standard_normal((n_genes, dim))
                              ).astype(np.float32))
    gl = None
    if n_gene_tasks:
        g_logit = factors @ rng.standard_normal((n_factors, n_gene_tasks))
        g_lab = g_logit + label_noise * rng.standard_normal(g_logit.shape) > 0
        gg, tt = np.nonzero(np.ones_like(g_lab))
        gl = pl.DataFrame({"gene_id": gg + 1, "task": [f"GO:{t:07d}" for t in tt],
                           "label": g_lab[gg, tt]})
    with warehouse.connect(db_path) as con:
        loader.load(con, loader.Batch(genes=genes, structures=structures,
                                      experiments=pl.concat(exps), annotations=pl.concat(anns),
                                      gene_labels=gl))
        with warehouse.transaction(con):
            fsid = con.execute(
                "insert into feature_sets (name, extractor, dim, params, finished_at) "
                "values (?, 'grid', ?, '{\"toy\": true}', current_timestamp) "
                "returning feature_set_id", [feature_set, dim]).fetchall()[0][0]
            for ids, x in feats.values():
                store.write_experiment_features(con, fsid, ids, x)
    return ToyAtlas(np.asarray(sids), np.asarray(lvls), exp_ids, feature_set)
