"""Binary tasks of one stage as dense matrices: structure tasks and gene-level tasks.

A :class:`TaskMatrix` holds, for the experiments of a stage (rows) and the tasks (columns),
the labels ``y`` and a mask of which entries are known (an experiment may lack an annotation
for a structure; such an entry is neither positive nor negative). Structure tasks come from
the ``labels`` view (one task per structure at each requested ontology level), gene tasks
from ``gene_labels`` (each experiment inherits its gene's label).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np

from ishwh.query import query_text


@dataclass
class TaskMatrix:
    """Labels of ``len(names)`` tasks over the experiments ``experiment_ids``."""

    kind: str                     # 'structure' or 'gene'
    names: list[str]              # structure id as text, or the gene task name
    groups: np.ndarray            # (T,) ontology level (structures) or 0 (genes)
    experiment_ids: np.ndarray    # (n,)
    y: np.ndarray                 # (n, T) bool
    mask: np.ndarray              # (n, T) bool: label known

    @property
    def n_tasks(self) -> int:
        return len(self.names)

    def take_rows(self, rows: np.ndarray) -> TaskMatrix:
        return TaskMatrix(self.kind, self.names, self.groups, self.experiment_ids[rows],
                          self.y[rows], self.mask[rows])

    def take_tasks(self, cols: np.ndarray) -> TaskMatrix:
        return TaskMatrix(self.kind, [self.names[i] for i in cols], self.groups[cols],
                          self.experiment_ids, self.y[:, cols], self.mask[:, cols])

    def counts(self) -> tuple[np.ndarray, np.ndarray]:
        """Positives and negatives per task, (T,) each."""
        return (self.y & self.mask).sum(0), (~self.y & self.mask).sum(0)


def _dense(
    experiment_ids: np.ndarray, rows_exp: np.ndarray, rows_task: np.ndarray,
    rows_label: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Long (experiment, task, label) rows -> task keys, y (n, T), mask (n, T)."""
    keys, col = np.unique(rows_task, return_inverse=True)
    row = np.searchsorted(experiment_ids, rows_exp)
    ok = (row < len(experiment_ids))
    ok[ok] = experiment_ids[row[ok]] == rows_exp[ok]
    y = np.zeros((len(experiment_ids), len(keys)), dtype=bool)
    mask = np.zeros_like(y)
    y[row[ok], col[ok]] = rows_label[ok]
    mask[row[ok], col[ok]] = True
    return keys, y, mask


def stage_experiments(con: duckdb.DuckDBPyConnection, stage: str) -> tuple[np.ndarray, np.ndarray]:
    """``(experiment_ids, gene_ids)`` of a stage, ordered by experiment id."""
    tbl = con.sql(query_text("fit_stage_experiments"),
                  params={"stage": stage}).to_arrow_table()
    return (tbl.column("experiment_id").to_numpy().astype(np.int64),
            tbl.column("gene_id").to_numpy().astype(np.int64))


def structure_tasks(
    con: duckdb.DuckDBPyConnection, stage: str, experiment_ids: np.ndarray,
    levels: list[int] | None = None,
) -> TaskMatrix:
    """One task per structure with a label at ``stage`` (restricted to ``levels`` if given)."""
    tbl = con.sql(query_text("fit_structure_labels"),
                  params={"stage": stage}).to_arrow_table()
    sid = tbl.column("structure_id").to_numpy().astype(np.int64)
    lvl = tbl.column("level").to_numpy().astype(np.int64)
    if levels is not None:
        keep = np.isin(lvl, np.asarray(levels, dtype=np.int64))
        tbl, sid, lvl = tbl.filter(keep), sid[keep], lvl[keep]
    keys, y, mask = _dense(
        experiment_ids, tbl.column("experiment_id").to_numpy().astype(np.int64), sid,
        tbl.column("detected").to_numpy(zero_copy_only=False).astype(bool))
    level_of = dict(zip(sid.tolist(), lvl.tolist(), strict=True))
    return TaskMatrix("structure", [str(k) for k in keys.tolist()],
                      np.array([level_of[k] for k in keys.tolist()], dtype=np.int64),
                      experiment_ids, y, mask)


def gene_tasks(
    con: duckdb.DuckDBPyConnection, stage: str, experiment_ids: np.ndarray
) -> TaskMatrix:
    """One task per ``gene_labels.task``; each experiment carries its gene's label."""
    tbl = con.sql(query_text("fit_gene_labels"), params={"stage": stage}).to_arrow_table()
    task = np.asarray(tbl.column("task").to_pylist(), dtype=object)
    keys, y, mask = _dense(
        experiment_ids, tbl.column("experiment_id").to_numpy().astype(np.int64),
        task.astype(str) if task.size else np.zeros(0, dtype=str),
        tbl.column("detected").to_numpy(zero_copy_only=False).astype(bool))
    return TaskMatrix("gene", [str(k) for k in keys.tolist()],
                      np.zeros(len(keys), dtype=np.int64), experiment_ids, y, mask)


def trainable(
    tasks: TaskMatrix, train_rows: np.ndarray, min_pos: int, min_neg: int
) -> tuple[np.ndarray, dict[int, str], np.ndarray, np.ndarray]:
    """Which tasks have enough training positives and negatives.

    Returns ``(kept column indices, {skipped column: reason}, n_train_pos, n_train_neg)``.
    """
    tr = tasks.take_rows(train_rows)
    n_pos, n_neg = tr.counts()
    reasons: dict[int, str] = {}
    for j in range(tasks.n_tasks):
        if n_pos[j] < min_pos:
            reasons[j] = f"{int(n_pos[j])} positive(s) in train (need {min_pos})"
        elif n_neg[j] < min_neg:
            reasons[j] = f"{int(n_neg[j])} negative(s) in train (need {min_neg})"
    kept = np.array([j for j in range(tasks.n_tasks) if j not in reasons], dtype=np.int64)
    return kept, reasons, n_pos, n_neg


def unit_counts(
    tasks: list[TaskMatrix], unit_of_row: np.ndarray, n_units: int
) -> tuple[np.ndarray, np.ndarray]:
    """Positive and negative counts per split unit (gene) and task, over all task matrices."""
    pos_cols, neg_cols = [], []
    for tm in tasks:
        if tm.n_tasks == 0:
            continue
        p = np.zeros((n_units, tm.n_tasks))
        n = np.zeros((n_units, tm.n_tasks))
        np.add.at(p, unit_of_row, (tm.y & tm.mask).astype(np.float64))
        np.add.at(n, unit_of_row, (~tm.y & tm.mask).astype(np.float64))
        pos_cols.append(p)
        neg_cols.append(n)
    if not pos_cols:
        z = np.zeros((n_units, 0))
        return z, z
    return np.concatenate(pos_cols, axis=1), np.concatenate(neg_cols, axis=1)
