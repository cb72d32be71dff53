"""The run store: ``runs`` rows from start to finish, and the tables a run owns.

Every kind of fit (global features, structure features, multi-class targets) writes a run the
same way: :func:`start_run` inserts the ``runs`` row as ``running`` (with its fingerprint),
the fitting happens, and :func:`finish_run` writes everything the run produced and marks it
``finished`` in ONE transaction, replacing the finished runs it supersedes (``--force``).
A killed fit therefore never shows as finished nor leaves half its rows;
:func:`clean_unfinished` deletes what it left ``running``.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Callable, Sequence
from importlib import metadata

import duckdb
import numpy as np
import pyarrow as pa

from ishwh import store, warehouse

FIT_VERSION = 2          # bump when a change alters what an identical fit would produce

# Tables whose rows belong to a run (deleted with it); ``runs`` last.
RUN_TABLES = ("predictions", "gene_predictions", "run_tasks", "models", "run_training",
              "predicted_annotations", "class_predictions", "target_classes", "run_targets",
              "runs")


def json_text(obj) -> str:
    """JSON text; numpy scalars and arrays become plain numbers and lists."""
    def default(o):
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        return str(o)
    return json.dumps(obj, default=default)


def fingerprint(d: dict) -> str:
    """The identity of a fit: same inputs, same parameters, same code -> same fingerprint."""
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:32]


def versions(device: str) -> dict:
    """Code and library versions recorded with a run."""
    out = {"fit_version": FIT_VERSION, "python": platform.python_version(), "device": device}
    for pkg in ("ishwh", "numpy", "torch", "scikit-learn", "duckdb"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def delete_runs(con: duckdb.DuckDBPyConnection, run_ids: Sequence[int]) -> None:
    """Delete runs and every row they own (the caller owns the transaction)."""
    ids = [int(x) for x in run_ids]
    if not ids:
        return
    for table in RUN_TABLES:
        con.execute(f"delete from {table} where list_contains($ids, run_id)",
                    {"ids": ids}).fetchall()


def clean_unfinished(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Delete runs a killed fit left ``running`` (call only while holding the write lock)."""
    ids = [r[0] for r in con.execute(
        "select run_id from runs where status = 'running'").fetchall()]
    if ids:
        with warehouse.transaction(con):
            delete_runs(con, ids)
    return ids


def finished_runs(con: duckdb.DuckDBPyConnection, fp: str) -> list[int]:
    """Finished runs with fingerprint ``fp``, oldest first."""
    return [int(x[0]) for x in con.execute(
        "select run_id from runs where fingerprint = ? and status = 'finished' "
        "order by run_id", [fp]).fetchall()]


def start_run(con: duckdb.DuckDBPyConnection, *, feature_set_id: int, stage: str,
              split_id: int, tasks: str, levels: str | None, label_mode: str, params: dict,
              fp: str, run_versions: dict) -> int:
    """Insert a ``running`` row; returns its run id."""
    return int(con.execute(
        "insert into runs (feature_set_id, stage, split_id, tasks, levels, label_mode, params, "
        "fingerprint, status, versions) values (?, ?, ?, ?, ?, ?, ?, ?, 'running', ?) "
        "returning run_id",
        [feature_set_id, stage, split_id, tasks, levels, label_mode, json_text(params), fp,
         json_text(run_versions)]).fetchall()[0][0])


def task_table(run_id: int, kinds: Sequence[str], names: Sequence[str],
               reasons: Sequence[str | None], c: Sequence[float | None],
               n_pos: Sequence[int], n_neg: Sequence[int]) -> pa.Table:
    """``run_tasks`` rows: one per task, ``status`` 'skipped' where a reason is given."""
    return pa.table({
        "run_id": pa.array([run_id] * len(names), pa.int32()),
        "task_kind": pa.array(list(kinds), pa.string()),
        "task": pa.array([str(x) for x in names], pa.string()),
        "status": pa.array(["skipped" if r is not None else "fitted" for r in reasons],
                           pa.string()),
        "reason": pa.array(list(reasons), pa.string()),
        "c": pa.array(list(c), pa.float64()),
        "n_train_pos": pa.array([int(x) for x in n_pos], pa.int32()),
        "n_train_neg": pa.array([int(x) for x in n_neg], pa.int32()),
    })


def finish_run(con: duckdb.DuckDBPyConnection, run_id: int, *, replace: Sequence[int],
               tables: Sequence[tuple[str, pa.Table | None]], timings: dict,
               run_versions: dict | None = None, t_write: float | None = None,
               t_start: float | None = None, t_before: float = 0.0,
               extra: Callable[[duckdb.DuckDBPyConnection], None] | None = None) -> None:
    """Write a run's rows and mark it finished, all in one transaction.

    ``replace``: finished runs the new one supersedes (deleted first). ``tables``: (table,
    Arrow table or None) inserted in order. ``extra(con)`` writes what needs SQL of its own
    (inside the same transaction). ``t_write``: ``perf_counter`` when writing began; with it
    ``timings['write_s']`` is set just before the run is marked finished; with ``t_start``
    (when the run began) ``timings['total_s']`` too, plus ``t_before`` seconds spent before
    (reading, splitting).
    """
    with warehouse.transaction(con):
        delete_runs(con, replace)
        for name, tbl in tables:
            if tbl is not None:
                store.insert_arrow(con, name, tbl)
        if extra is not None:
            extra(con)
        if t_write is not None:
            timings["write_s"] = round(time.perf_counter() - t_write, 4)
        if t_start is not None:
            timings["total_s"] = round(time.perf_counter() - t_start + t_before, 4)
        if run_versions is None:
            con.execute("update runs set status = 'finished', finished_at = current_timestamp, "
                        "timings = ? where run_id = ?", [json_text(timings), run_id]).fetchall()
        else:
            con.execute("update runs set status = 'finished', finished_at = current_timestamp, "
                        "timings = ?, versions = ? where run_id = ?",
                        [json_text(timings), json_text(run_versions), run_id]).fetchall()


__all__ = ["FIT_VERSION", "RUN_TABLES", "clean_unfinished", "delete_runs", "finish_run",
           "finished_runs", "fingerprint", "json_text", "start_run", "task_table", "versions"]
