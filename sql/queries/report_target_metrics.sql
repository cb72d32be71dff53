-- report_target_metrics: the multi-class table of the report: macro AUC, kappa, balanced
-- accuracy and grade error per stage x level x target x model x feature set x split method.
-- Grain: one row per stage x level x target x model x feature set x split method x label mode
-- (repeats averaged: n_repeats). Inputs: target_level_metrics (its model: run_targets'),
-- selected_runs.
-- std_macro_auc: mean over repeats of the std across the level's structures.
-- param runs: run ids, e.g. [1, 2] (optional: every finished run)
with runs as (
    select run_id from main.selected_runs
    where ($runs is null and is_default) or list_contains($runs, run_id)
),

final as (
    select
        m.stage,
        m.level,
        m.target,
        m.model,
        m.feature_set,
        m.split_method,
        m.label_mode,
        count(*) as n_repeats,
        max(m.n_structures) as n_structures,
        avg(m.mean_macro_auc) as macro_auc,
        avg(m.std_macro_auc) as std_macro_auc,
        avg(m.mean_kappa) as kappa,
        avg(m.mean_balanced_accuracy) as balanced_accuracy,
        avg(m.mean_accuracy) as accuracy,
        avg(m.mean_mae) as mae,
        avg(m.mean_kappa_prior) as kappa_prior,
        avg(m.mean_balanced_accuracy_prior) as balanced_accuracy_prior
    from target_level_metrics m
    join runs using (run_id)
    group by all
)

select f.*
from final f
left join stages s using (stage)
order by s.stage_order, f.target, f.level, f.model, f.feature_set, f.split_method
