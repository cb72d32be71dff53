-- table1: the paper's Table 1 analogue, in long form.
-- Grain: one row per stage x ontology level x feature set x label mode.
-- Inputs: level_auc, selected_runs (finished runs).
-- Several runs of one cell (repeated splits, `fit --repeats`) are averaged: mean_auc is the
-- mean of the runs' level means and std_auc the mean of their standard deviations; n_runs
-- says how many. With one run per cell the numbers are level_auc's own.
-- param runs: run ids, e.g. [1, 2] (optional: every finished run)
with runs as (
    select run_id
    from main.selected_runs  -- finished runs, chosen by $runs
    where ($runs is null and is_default) or list_contains($runs, run_id)
),

level_auc as (
    select * from main.level_auc
),

final as (
    select
        l.stage,
        l.level,
        l.feature_set,
        l.label_mode,
        count(*) as n_runs,
        string_agg(l.run_id::varchar, ',' order by l.run_id) as run_ids,
        max(l.n_structures) as n_structures,
        max(l.n_excluded) as n_excluded,
        avg(l.mean_auc) as mean_auc,
        avg(l.std_auc) as std_auc
    from level_auc l
    join runs using (run_id)
    group by all
)

select final.*
from final
left join main.stages s using (stage)
order by
    s.stage_order,
    level, feature_set, label_mode
