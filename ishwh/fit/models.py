"""Fitted classifiers that outlive their run: store, read and apply them.

A run's models are rows of ``models`` (one per task): weights on the run's feature set with
the trainer's standardisation folded in, so that a score is one dot product plus the
intercept, and the task's Platt scaling and call threshold (both chosen on out-of-fold
scores, see :mod:`ishwh.fit.calibration`). ``run_training`` says how they were trained
(stages, holdout, feature normalisation, folds).

Feature normalisation. ``'pooled'``: the weights apply to the raw vectors. ``'stage'``: every
stage's vectors are first z-scored with the mean and std of that stage (all its experiments
with a vector; no labels are used), before training and before scoring. This removes what
differs between stages wholesale (brightness, size, the share of tissue in the image) so a
model trained on some stages can score another; docs/annotate.md measures both.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

from ishwh import store
from ishwh.errors import InvalidInput, NotFound
from ishwh.fit.splits import iterative_stratification

FEATURE_NORMS = ("pooled", "stage")
FEATURE_NORM_CHOICES = ("auto", *FEATURE_NORMS)
HOLDOUTS = ("split", "none")


@dataclass
class StoredModels:
    """The structure (or gene) models of one run, as arrays."""

    run_id: int
    feature_set: str
    feature_set_id: int
    stage: str
    train_stages: list[str]
    holdout: str
    feature_norm: str
    tasks: list[str]             # structure id as text, or the gene task name
    structure_ids: np.ndarray    # (T,) int64 (structure tasks; -1 for gene tasks)
    weights: np.ndarray          # (T, d) float32
    intercept: np.ndarray        # (T,)
    platt_a: np.ndarray
    platt_b: np.ndarray
    threshold: np.ndarray        # called = score >= threshold
    local_start: np.ndarray | None = None   # structure features: each model's own columns
    local_width: np.ndarray | None = None
    dim: int | None = None       # length of the run's vectors (None: = weights' length)

    def scores(self, X: np.ndarray, block: int = 512) -> np.ndarray:
        """Scores (n, T) of rows ``X`` (normalised as the run's ``feature_norm`` says).

        Float64 products in row blocks: memory stays ~ block x d whatever the stage size.
        """
        want = self.dim or self.weights.shape[1]
        if X.ndim != 2 or X.shape[1] != want:
            raise InvalidInput(f"vectors have {X.shape[-1]} features; the models of run "
                               f"{self.run_id} take {want}")
        return self.dot(X, self.weights, self.intercept, block, self.local_start,
                        self.local_width)

    @staticmethod
    def dot(X: np.ndarray, weights: np.ndarray, intercept: np.ndarray,
            block: int = 512, local_start: np.ndarray | None = None,
            local_width: np.ndarray | None = None) -> np.ndarray:
        """``X @ weights.T + intercept`` in float64, in row blocks (also used by ``fit``).

        With ``local_start``/``local_width`` (structure features, one width for all models):
        model t reads columns ``local_start[t] ..`` with its first ``width`` weights and the
        last ``len(weights) - width`` columns of ``X`` with the rest.
        """
        if local_start is None:
            wt = weights.astype(np.float64).T
            out = np.empty((X.shape[0], wt.shape[1]))
            for i in range(0, X.shape[0], block):
                out[i:i + block] = X[i:i + block].astype(np.float64) @ wt
            out += intercept
            return out
        width = int(local_width[0]) if len(local_width) else 0
        if len(local_width) and (np.asarray(local_width) != width).any():
            raise ValueError("models of one run read the same number of own columns")
        cols = np.asarray(local_start, dtype=np.int64)[:, None] + np.arange(width)   # (T, K)
        w_own = weights[:, :width].astype(np.float64)
        n_shared = weights.shape[1] - width
        w_sh = weights[:, width:].astype(np.float64).T
        out = np.empty((X.shape[0], weights.shape[0]))
        for i in range(0, X.shape[0], block):
            xb = X[i:i + block].astype(np.float64)
            out[i:i + block] = np.einsum("ntk,tk->nt", xb[:, cols], w_own)
            if n_shared:
                out[i:i + block] += xb[:, X.shape[1] - n_shared:] @ w_sh
        out += intercept
        return out


@dataclass
class Fitted:
    """A run's fitted models (columns: the kept tasks, kind by kind) and its predictions."""

    c: np.ndarray
    weights: np.ndarray
    intercept: np.ndarray
    platt_a: np.ndarray
    platt_b: np.ndarray
    threshold: np.ndarray
    scores: np.ndarray           # (predicted rows, tasks)
    device: str
    local_start: np.ndarray | None = None    # structure features (see models.StoredModels)
    local_width: np.ndarray | None = None


def resolve_feature_norm(feature_norm: str, stage: str, train_stages: list[str],
                         holdout: str) -> str:
    """'auto' -> 'stage' when the models train on other stages than the evaluated one or are
    production models (``holdout='none'``: made to annotate other stages), else 'pooled'.

    Within one stage the two give the same model (standardisation is affine: the trainer
    z-scores its training rows anyway), so 'pooled' keeps existing within-stage fits unchanged;
    across stages per-stage standardisation is what makes transfer work (docs/annotate.md).
    """
    if feature_norm not in FEATURE_NORM_CHOICES:
        raise InvalidInput(f"feature normalisation must be one of "
                           f"{', '.join(FEATURE_NORM_CHOICES)}, not {feature_norm!r}",
                           param="feature_norm")
    if feature_norm != "auto":
        return feature_norm
    return "stage" if holdout == "none" or list(train_stages) != [stage] else "pooled"


def stage_standardize(X: np.ndarray) -> np.ndarray:
    """``X`` z-scored with its own rows' mean and std (float32; constant columns -> 0)."""
    mean = X.mean(0, dtype=np.float64)
    sd = X.std(0, dtype=np.float64)
    sd = np.where(sd > 0, sd, 1.0)
    return ((X - mean) / sd).astype(np.float32)


def gene_folds(gene_ids: np.ndarray, y: np.ndarray, mask: np.ndarray, n_folds: int,
               seed: int) -> np.ndarray:
    """Cross-fitting fold of every row: whole genes per fold, classes balanced per task.

    A gene's experiments at several training stages stay in one fold, so an out-of-fold
    score never comes from a model that saw the same gene at another stage.
    """
    units, unit_of_row = np.unique(gene_ids, return_inverse=True)
    pos = np.zeros((units.size, y.shape[1]))
    neg = np.zeros((units.size, y.shape[1]))
    np.add.at(pos, unit_of_row, (y & mask).astype(np.float64))
    np.add.at(neg, unit_of_row, (~y & mask).astype(np.float64))
    rng = np.random.default_rng([seed, 104729])
    fold_of_unit = iterative_stratification(np.concatenate([pos, neg], axis=1),
                                            [1.0] * n_folds, rng)
    return np.asarray(fold_of_unit)[unit_of_row]


# --------------------------------------------------------------------------- warehouse


def write_run_training(con: duckdb.DuckDBPyConnection, run_id: int, train_stages: list[str],
                       holdout: str, feature_norm: str, n_folds: int, n_train: int) -> None:
    """One ``run_training`` row (the caller owns the transaction)."""
    con.execute("insert into run_training values (?, ?, ?, ?, ?, ?)",
                [run_id, train_stages, holdout, feature_norm, n_folds, n_train]).fetchall()


def _ints_or_nulls(values: np.ndarray | None, n: int) -> pa.Array:
    if values is None:
        return pa.nulls(n, pa.int32())
    return pa.array(np.asarray(values, dtype=np.int32))


def write_models(
    con: duckdb.DuckDBPyConnection, run_id: int, task_kind: list[str], task: list[str],
    c: np.ndarray, weights: np.ndarray, intercept: np.ndarray, n_pos: np.ndarray,
    n_neg: np.ndarray, platt_a: np.ndarray, platt_b: np.ndarray, threshold: np.ndarray,
    local_start: np.ndarray | None = None, local_width: np.ndarray | None = None,
) -> None:
    """Insert a run's models through Arrow (the caller owns the transaction)."""
    t = len(task)
    if t == 0:
        return
    sid = [int(x) if k == "structure" else None for k, x in zip(task_kind, task, strict=True)]
    tbl = pa.table({
        "run_id": pa.array(np.full(t, run_id, dtype=np.int32)),
        "task_kind": pa.array(task_kind, pa.string()),
        "task": pa.array(task, pa.string()),
        "structure_id": pa.array(sid, pa.int64()),
        "c": pa.array(np.asarray(c, dtype=np.float64)),
        "intercept": pa.array(np.asarray(intercept, dtype=np.float64)),
        "weights": store.matrix_to_list_array(weights),
        "n_pos": pa.array(np.asarray(n_pos, dtype=np.int32)),
        "n_neg": pa.array(np.asarray(n_neg, dtype=np.int32)),
        "platt_a": pa.array(np.asarray(platt_a, dtype=np.float64)),
        "platt_b": pa.array(np.asarray(platt_b, dtype=np.float64)),
        "threshold": pa.array(np.asarray(threshold, dtype=np.float64)),
        "local_start": _ints_or_nulls(local_start, t),
        "local_width": _ints_or_nulls(local_width, t),
    })
    store.insert_arrow(con, "models", tbl)


def run_header(con: duckdb.DuckDBPyConnection, run_id: int) -> dict:
    """What annotate needs to know of a run before reading its models; refuses bad runs."""
    rows = con.execute(
        "select r.run_id, r.stage, r.status, r.feature_set_id, f.name, f.dim, t.train_stages, "
        "t.holdout, t.feature_norm, (select count(*) from models m where m.run_id = r.run_id "
        "and m.task_kind = 'structure') from runs r "
        "left join feature_sets f using (feature_set_id) "
        "left join run_training t using (run_id) where r.run_id = ?", [int(run_id)]).fetchall()
    if not rows:
        last = con.execute("select max(run_id) from runs where status = 'finished'").fetchall()
        raise NotFound(f"no run {run_id}",
                       hint="fit one with `ishwh fit`" if last[0][0] is None
                       else "`ishwh status` lists the runs")
    (rid, stage, status, fsid, fs_name, dim, train_stages, holdout, norm, n_models) = rows[0]
    if status != "finished":
        raise InvalidInput(f"run {run_id} is not finished (status {status!r})",
                           hint="let its fit complete, or fit again (a new fit cleans it up)")
    if fs_name is None:
        raise NotFound(f"the feature set of run {run_id} no longer exists")
    if not n_models or train_stages is None:
        raise NotFound(f"run {run_id} has no stored structure models",
                       hint="it was fitted by an older ishwh or without structure tasks; "
                            "fit it again with --force")
    return {"run_id": int(rid), "stage": stage, "feature_set_id": int(fsid),
            "feature_set": fs_name, "dim": int(dim), "train_stages": list(train_stages),
            "holdout": holdout, "feature_norm": norm, "n_models": int(n_models)}


def read_models(con: duckdb.DuckDBPyConnection, run_id: int,
                task_kind: str = "structure") -> StoredModels:
    """The stored models of a run (refuses unknown, unfinished and model-less runs)."""
    h = run_header(con, run_id)
    tbl = con.sql(
        "select task, coalesce(structure_id, -1) as structure_id, intercept, weights, "
        "platt_a, platt_b, threshold, local_start, local_width from models "
        "where run_id = $run and task_kind = $kind order by structure_id, task",
        params={"run": int(run_id), "kind": task_kind}).to_arrow_table()
    col = lambda name: tbl.column(name).to_numpy(zero_copy_only=False)  # noqa: E731
    local = tbl.num_rows > 0 and tbl.column("local_start").null_count == 0
    dim = vector_dim(con, h["feature_set"]) if local else h["dim"]
    return StoredModels(
        run_id=h["run_id"], feature_set=h["feature_set"], feature_set_id=h["feature_set_id"],
        stage=h["stage"], train_stages=h["train_stages"], holdout=h["holdout"],
        feature_norm=h["feature_norm"], tasks=tbl.column("task").to_pylist(),
        structure_ids=col("structure_id").astype(np.int64),
        weights=store.list_array_to_matrix(tbl.column("weights"), None if local else dim),
        intercept=col("intercept").astype(np.float64), platt_a=col("platt_a"),
        platt_b=col("platt_b"), threshold=col("threshold"),
        local_start=col("local_start").astype(np.int64) if local else None,
        local_width=col("local_width").astype(np.int64) if local else None,
        dim=dim)


def vector_dim(con: duckdb.DuckDBPyConnection, feature_set: str) -> int:
    """Length of the vectors fit and annotate read for ``feature_set`` (a combined
    structure-feature set: the atlas set's and the global set's dims added)."""
    total = 0
    for name in feature_set.split("+"):
        rows = con.execute("select dim from feature_sets where name = ?", [name]).fetchall()
        if not rows:
            raise NotFound(f"feature set {name!r} no longer exists")
        total += int(rows[0][0])
    return total


def stage_vectors(con: duckdb.DuckDBPyConnection, feature_set: str, stage: str,
                  feature_norm: str) -> tuple[np.ndarray, np.ndarray]:
    """``(experiment_ids, X)`` of a stage, normalised as ``feature_norm`` says (a
    structure-feature set ``atlas.<what>+<global>``: both sets' vectors side by side)."""
    from ishwh.fit import structure_features as sf  # noqa: PLC0415 (sf imports this module)

    if sf.is_structure_set(feature_set):
        ids, X = sf.read_vectors(con, feature_set, stage)
    else:
        ids, X = store.read_experiment_features(con, feature_set, stage)
    if feature_norm == "stage" and ids.size:
        X = stage_standardize(X)
    return ids, X


__all__ = ["FEATURE_NORMS", "FEATURE_NORM_CHOICES", "HOLDOUTS", "Fitted", "StoredModels",
           "gene_folds", "read_models", "resolve_feature_norm", "run_header",
           "stage_standardize", "stage_vectors", "vector_dim", "write_models",
           "write_run_training"]
