-- fit_target_summary: what `ishwh fit --target` prints: the level rollup of multi-class runs.
-- Grain: one row per run x ontology level.
-- param run_ids: run ids, e.g. [1, 2]
select run_id, stage, level, target, n_structures, n_excluded, mean_macro_auc,
       std_macro_auc, mean_kappa, mean_balanced_accuracy, mean_mae, mean_kappa_prior
from target_level_metrics
where list_contains($run_ids, run_id)
order by run_id, level
