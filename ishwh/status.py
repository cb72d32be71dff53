"""What a warehouse holds: row counts, stages, feature sets and runs."""

from __future__ import annotations

import os
from typing import Any

import duckdb

from ishwh.warehouse import applied_migrations, connect, verify_file

_COUNTED = (
    "genes", "structures", "experiments", "sections", "annotations", "gene_labels",
    "expression_grids", "feature_sets", "experiment_features", "runs", "predictions",
    "models", "predicted_annotations",
)


def _dicts(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    """Rows of a query as dicts keyed by its column names."""
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def summary(db_path: str | os.PathLike) -> dict[str, Any]:
    """A JSON-ready summary of the warehouse (opened read-only).

    Every block of the file is checked first, whatever its size
    (:func:`ishwh.integrity.check_file`): a damaged warehouse is reported as such, not
    summarised from the parts that still read.
    """
    if os.path.exists(db_path):
        verify_file(db_path, full=True)
    with connect(db_path, read_only=True) as con:
        counts = {t: con.execute(f"select count(*) from {t}").fetchall()[0][0] for t in _COUNTED}
        stages = _dicts(con, """
            select e.stage, count(distinct e.experiment_id) as n_experiments,
                   count(s.section_id) as n_sections,
                   count(distinct a.experiment_id) as n_annotated
            from experiments e
            left join sections s using (experiment_id)
            left join (select distinct experiment_id from annotations) a using (experiment_id)
            left join stages o using (stage)
            group by e.stage, o.stage_order order by o.stage_order
            """)
        feature_sets = _dicts(con, """
            select f.name, f.extractor, f.dim,
                   (select count(*) from experiment_features x
                    where x.feature_set_id = f.feature_set_id) as n_experiments,
                   (select count(*) from runs r
                    where r.feature_set_id = f.feature_set_id) as n_runs,
                   f.finished_at is not null as is_finished
            from feature_sets f order by f.name
            """)
        runs = _dicts(con, """
            select r.run_id, f.name as feature_set, r.stage, r.tasks, r.label_mode, r.status,
                   (select count(*) from predictions p where p.run_id = r.run_id) as n_predictions
            from runs r join feature_sets f using (feature_set_id) order by r.run_id
            """)
        version = max(applied_migrations(con), default=0)
    return {
        "db": str(db_path),
        "schema_version": version,
        "counts": counts,
        "stages": stages,
        "feature_sets": feature_sets,
        "runs": runs,
    }
