-- feature_set_stage_auc: each feature set's stage number (mean AUC over all structures of the
-- stage, levels pooled; repeats averaged), for the layer (Figure 5) and pooling figures.
-- Grain: one row per stage x feature set x split method x label mode x levels asked.
-- Inputs: stage_auc, selected_runs, stages. std_auc: mean over repeats of the std across
-- structures.
-- param runs: run ids, e.g. [1, 2] (optional: every finished run)
with runs as (
    select run_id from main.selected_runs
    where ($runs is null and is_default) or list_contains($runs, run_id)
),

final as (
    select
        a.stage,
        a.feature_set,
        a.split_method,
        a.label_mode,
        a.levels,
        count(*) as n_repeats,
        avg(a.mean_auc) as mean_auc,
        avg(a.std_auc) as std_auc,
        max(a.n_structures) as n_structures
    from stage_auc a
    join runs using (run_id)
    group by all
)

select f.*
from final f
left join stages s using (stage)
order by s.stage_order, f.feature_set, f.split_method, f.label_mode
