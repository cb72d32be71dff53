"""Moving arrays between the warehouse and numpy — the one module that does it.

Feature vectors are ``FLOAT[]`` lists in DuckDB (a fixed ``FLOAT[n]`` is refused above
n = 100,000, and paper-style features reach ~150,000 floats). Both directions go through
Arrow without per-row Python objects: a (n, d) float32 matrix becomes a ListArray over the
same buffer, and a ListArray read back becomes a (n, d) view of its values.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import duckdb
import numpy as np
import pyarrow as pa

from ishwh.errors import NotFound


def matrix_to_list_array(x: np.ndarray) -> pa.ListArray:
    """A (n, d) matrix as an Arrow ``list<float>`` array, without copying the values."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    offsets = pa.array(np.arange(0, (n + 1) * d, d, dtype=np.int32) if n * d < 2**31 else
                       np.arange(0, (n + 1) * d, d, dtype=np.int64))
    values = pa.array(x.reshape(-1))
    if offsets.type == pa.int64():
        return pa.LargeListArray.from_arrays(offsets, values)
    return pa.ListArray.from_arrays(offsets, values)


def list_array_to_matrix(arr: pa.Array | pa.ChunkedArray, dim: int | None = None) -> np.ndarray:
    """A ``list<float>`` Arrow column (equal lengths) as a (n, d) float32 matrix."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    n = len(arr)
    if n == 0:
        return np.zeros((0, dim or 0), dtype=np.float32)
    values = arr.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    d = values.size // n
    if d * n != values.size or (dim is not None and d != dim):
        raise ValueError("feature vectors of unequal length")
    return values.reshape(n, d)


@contextmanager
def registered(con: duckdb.DuckDBPyConnection, table: pa.Table,
               name: str = "_ishwh_rows") -> Iterator[str]:
    """``table`` visible to SQL as ``name`` for the block (unregistered on the way out)."""
    con.register(name, table)
    try:
        yield name
    finally:
        con.unregister(name)


def insert_arrow(con: duckdb.DuckDBPyConnection, table: str, rows: pa.Table) -> None:
    """Insert every row of the Arrow table ``rows`` into ``table`` (columns by name)."""
    if rows.num_rows == 0:
        return
    cols = ", ".join(rows.column_names)
    with registered(con, rows) as name:
        con.execute(f"insert into {table} ({cols}) select {cols} from {name}").fetchall()


def insert_vectors(
    con: duckdb.DuckDBPyConnection,
    table: str,
    key_columns: dict[str, Sequence | np.ndarray],
    x: np.ndarray,
) -> None:
    """Insert rows ``(key columns..., vec)`` into ``table`` (a table with a ``vec`` column)."""
    data = {k: pa.array(np.asarray(v)) for k, v in key_columns.items()}
    data["vec"] = matrix_to_list_array(x)
    insert_arrow(con, table, pa.table(data))


def write_experiment_features(
    con: duckdb.DuckDBPyConnection,
    feature_set_id: int,
    experiment_ids: Sequence[int] | np.ndarray,
    x: np.ndarray,
) -> None:
    """Append experiment vectors of one feature set (the caller owns the transaction)."""
    ids = np.asarray(experiment_ids, dtype=np.int64)
    insert_vectors(
        con,
        "experiment_features",
        {"feature_set_id": np.full(len(ids), feature_set_id, dtype=np.int32), "experiment_id": ids},
        x,
    )


def feature_set_id(con: duckdb.DuckDBPyConnection, name: str) -> int:
    """The id of the feature set ``name``; :class:`NotFound` lists the ones that exist."""
    rows = con.execute("select feature_set_id from feature_sets where name = ?", [name]).fetchall()
    row = rows[0] if rows else None
    if row is None:
        listed = con.execute("select name from feature_sets order by name").fetchall()
        names = [r[0] for r in listed]
        raise NotFound(
            f"no feature set {name!r}",
            hint=("feature sets: " + ", ".join(names)) if names else "run `ishwh featurize` first",
        )
    return int(row[0])


def read_experiment_features(
    con: duckdb.DuckDBPyConnection,
    name: str,
    stage: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(experiment_ids, X)`` of a feature set, ordered by experiment id.

    ``stage`` restricts to the experiments of one stage.
    """
    fsid = feature_set_id(con, name)
    q = (
        "select f.experiment_id, f.vec from experiment_features f "
        "join experiments e using (experiment_id) where f.feature_set_id = $fs "
    )
    params: dict = {"fs": fsid}
    if stage is not None:
        q += "and e.stage = $stage "
        params["stage"] = stage
    q += "order by f.experiment_id"
    tbl = con.sql(q, params=params).to_arrow_table()
    ids = tbl.column("experiment_id").to_numpy().astype(np.int64)
    return ids, list_array_to_matrix(tbl.column("vec"))
