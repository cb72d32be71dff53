"""What a warehouse holds: row counts, stages, feature sets and runs."""

from __future__ import annotations

import os
from typing import Any

from ishwh.warehouse import applied_migrations, connect

_COUNTED = (
    "genes", "structures", "experiments", "sections", "annotations", "gene_labels",
    "expression_grids", "feature_sets", "experiment_features", "runs", "predictions",
)


def summary(db_path: str | os.PathLike) -> dict[str, Any]:
    """A JSON-ready summary of the warehouse (opened read-only)."""
    with connect(db_path, read_only=True) as con:
        counts = {t: con.execute(f"select count(*) from {t}").fetchall()[0][0] for t in _COUNTED}
        stages = con.execute(
            """
            select e.stage, count(distinct e.experiment_id) as n_experiments,
                   count(s.section_id) as n_sections,
                   count(distinct a.experiment_id) as n_annotated
            from experiments e
            left join sections s using (experiment_id)
            left join (select distinct experiment_id from annotations) a using (experiment_id)
            group by e.stage order by e.stage
            """
        ).fetchall()
        feature_sets = con.execute(
            """
            select f.name, f.extractor, f.dim, count(x.experiment_id) as n_experiments,
                   f.finished_at is not null as is_finished
            from feature_sets f left join experiment_features x using (feature_set_id)
            group by all order by f.name
            """
        ).fetchall()
        runs = con.execute(
            """
            select r.run_id, f.name, r.stage, r.tasks, r.label_mode, r.status
            from runs r join feature_sets f using (feature_set_id) order by r.run_id
            """
        ).fetchall()
        version = max(applied_migrations(con), default=0)
    return {
        "db": str(db_path),
        "schema_version": version,
        "counts": counts,
        "stages": [
            dict(zip(("stage", "n_experiments", "n_sections", "n_annotated"), r)) for r in stages
        ],
        "feature_sets": [
            dict(zip(("name", "extractor", "dim", "n_experiments", "is_finished"), r))
            for r in feature_sets
        ],
        "runs": [
            dict(zip(("run_id", "feature_set", "stage", "tasks", "label_mode", "status"), r))
            for r in runs
        ],
    }
