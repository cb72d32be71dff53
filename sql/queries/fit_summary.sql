-- fit_summary: what `ishwh fit` prints, the level rollup of the given runs.
-- Grain: one row per run x ontology level.
-- param run_ids: run ids, e.g. [1, 2]
select run_id, stage, level, n_structures, n_excluded, mean_auc, std_auc
from level_auc
where list_contains($run_ids, run_id)
order by run_id, level
