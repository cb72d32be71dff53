"""The split store: a stage's stored train/test split, made once and reused by every fit.

A split is keyed by ``(stage, method, seed, repeat)`` (``split_defs``) and assigns every
experiment of the stage to 'train' or 'test' (``splits``), whole genes at a time, balanced
over every structure and gene task of the stage, so every feature set and every target of a
stage is evaluated on the same experiments.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa

from ishwh import store, warehouse
from ishwh.fit import splits as splits_mod
from ishwh.fit import tasks as tasks_mod
from ishwh.fit.run_store import json_text

NO_SPLIT = 0             # runs.split_id of a run without a split (holdout 'none')


def get_or_make_split(
    con: duckdb.DuckDBPyConnection,
    stage: str,
    method: str,
    seed: int,
    repeat_index: int,
    experiment_ids: np.ndarray,
    gene_ids: np.ndarray,
    label_sets: list[tasks_mod.TaskMatrix],
) -> tuple[int, dict[int, str]]:
    """The stored split of ``(stage, method, seed, repeat)``, made and stored if new.

    Returns ``(split_id, {experiment_id: 'train' | 'test'})``.
    """
    rows = con.execute(
        "select split_id from split_defs where stage = ? and method = ? and seed = ? "
        "and repeat_index = ?", [stage, method, seed, repeat_index]).fetchall()
    if rows:
        split_id = int(rows[0][0])
    else:
        units, unit_of_row = np.unique(gene_ids, return_inverse=True)
        pos, neg = tasks_mod.unit_counts(label_sets, unit_of_row, len(units))
        res = splits_mod.make_split(method, pos, neg, seed=[seed, repeat_index])
        test_rows = res.test[unit_of_row]
        params = {k: v for k, v in res.params.items() if k != "seed"}
        params.update({"unit": "gene", "n_units": int(len(units)),
                       "n_experiments": int(len(experiment_ids)), "n_tasks": int(pos.shape[1]),
                       "rng_seed": [seed, repeat_index]})
        with warehouse.transaction(con):
            split_id = int(con.execute(
                "insert into split_defs (stage, method, seed, repeat_index, params) "
                "values (?, ?, ?, ?, ?) returning split_id",
                [stage, method, seed, repeat_index, json_text(params)]).fetchall()[0][0])
            store.insert_arrow(con, "splits", pa.table({
                "split_id": pa.array(np.full(len(experiment_ids), split_id, dtype=np.int32)),
                "experiment_id": pa.array(experiment_ids),
                "subset": pa.array(np.where(test_rows, "test", "train").tolist()),
            }))
    got = con.execute("select experiment_id, subset from splits where split_id = ?",
                      [split_id]).fetchall()
    return split_id, {int(e): s for e, s in got}


def side_of(subset: dict[int, str], experiment_ids: np.ndarray) -> np.ndarray:
    """'train', 'test' or '' (not in the split) for each experiment."""
    return np.array([subset.get(int(e), "") for e in experiment_ids])


__all__ = ["NO_SPLIT", "get_or_make_split", "side_of"]
