"""AUC in SQL equals scikit-learn's roc_auc_score (ties counted half), and the rollups add up."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from ishwh import warehouse


def _setup(con) -> None:
    con.execute("insert into structures (structure_id, acronym, level) values "
                "(1, 'A', 1), (2, 'B', 1), (3, 'C', 2)").fetchall()
    con.execute("insert into feature_sets (name, extractor, dim, finished_at) "
                "values ('grid.t', 'grid', 2, current_timestamp)").fetchall()
    con.execute("insert into split_defs (stage, method, seed) values ('E11.5', 'stratified', 0)"
                ).fetchall()


def _insert_run(con, run_id: int) -> None:
    con.execute("insert into runs (run_id, feature_set_id, stage, split_id, tasks, fingerprint, "
                "status) values (?, 1, 'E11.5', 1, 'all', 'x', 'finished')", [run_id]).fetchall()


def _insert(con, table, **cols) -> None:
    con.register("_rows", pa.table(cols))
    names = ", ".join(cols)
    con.execute(f"insert into {table} ({names}) select {names} from _rows").fetchall()
    con.unregister("_rows")


@pytest.fixture(scope="module")
def con(tmp_path_factory):
    """One warehouse for every example: each example writes inside a rolled-back transaction."""
    path = tmp_path_factory.mktemp("auc") / "wh.duckdb"
    warehouse.init(path)
    with warehouse.connect(path) as c:
        _setup(c)
        yield c


scores_and_labels = st.integers(2, 60).flatmap(lambda n: st.tuples(
    st.lists(st.one_of(st.integers(-3, 3).map(float),
                       st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)),
             min_size=n, max_size=n),
    st.lists(st.booleans(), min_size=n, max_size=n)))


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=scores_and_labels)
def test_structure_auc_equals_sklearn(con, data):
    scores, labels = data
    n = len(scores)
    con.execute("begin transaction")
    try:
        _insert_run(con, 7)
        _insert(con, "predictions", run_id=pa.array([7] * n, pa.int32()),
                experiment_id=pa.array(range(n), pa.int64()),
                structure_id=pa.array([1] * n, pa.int64()),
                score=pa.array(scores, pa.float64()), detected=pa.array(labels))
        _insert(con, "gene_predictions", run_id=pa.array([7] * n, pa.int32()),
                experiment_id=pa.array(range(n), pa.int64()), task=["GO:1"] * n,
                score=pa.array(scores, pa.float64()), label=pa.array(labels))
        got = con.execute("select n_pos, n_neg, auc from structure_auc where run_id = 7"
                          ).fetchall()[0]
        got_gene = con.execute("select auc from gene_task_auc where run_id = 7"
                               ).fetchall()[0][0]
    finally:
        con.execute("rollback")
    assert got[0] == sum(labels) and got[1] == n - sum(labels)
    if 0 < sum(labels) < n:
        want = roc_auc_score(labels, scores)
        assert got[2] == pytest.approx(want, abs=1e-9)
        assert got_gene == pytest.approx(want, abs=1e-9)
    else:                     # a test set lacking a class has no AUC
        assert got[2] is None and got_gene is None


def test_rollups_match_numpy(db_path):
    rng = np.random.default_rng(0)
    want = {}
    with warehouse.connect(db_path) as con:
        _setup(con)
        _insert_run(con, 1)
        rows = {"run_id": [], "experiment_id": [], "structure_id": [], "score": [],
                "detected": []}
        for sid in (1, 2, 3):
            y = rng.random(30) < 0.4
            if sid == 3:
                y[:] = False                   # no positives in test: excluded
            s = rng.integers(0, 5, 30) + y * rng.random(30)
            rows["run_id"] += [1] * 30
            rows["experiment_id"] += list(range(30))
            rows["structure_id"] += [sid] * 30
            rows["score"] += s.tolist()
            rows["detected"] += y.tolist()
            if sid != 3:
                want[sid] = roc_auc_score(y, s)
        _insert(con, "predictions", run_id=pa.array(rows["run_id"], pa.int32()),
                experiment_id=pa.array(rows["experiment_id"], pa.int64()),
                structure_id=pa.array(rows["structure_id"], pa.int64()),
                score=pa.array(rows["score"]), detected=pa.array(rows["detected"]))
        lvl = con.execute("select level, n_structures, n_excluded, mean_auc, std_auc "
                          "from level_auc where run_id = 1 order by level").fetchall()
        stage = con.execute("select n_structures, n_excluded, mean_auc, std_auc, split_method "
                            "from stage_auc where run_id = 1").fetchall()[0]
        overall = con.execute("select n_stages, mean_auc from all_stages_auc").fetchall()
    a = np.array([want[1], want[2]])
    assert lvl[0][:3] == (1, 2, 0)
    assert lvl[0][3] == pytest.approx(a.mean()) and lvl[0][4] == pytest.approx(a.std(ddof=1))
    assert lvl[1][:3] == (2, 0, 1) and lvl[1][3] is None
    assert stage[:2] == (2, 1) and stage[2] == pytest.approx(a.mean())
    assert stage[4] == "stratified"
    assert overall == [(1, pytest.approx(a.mean()))]
