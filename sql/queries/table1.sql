-- table1: the paper's Table 1 analogue, in long form.
-- Grain: one row per stage x ontology level x feature set x split method x label mode.
-- Inputs: level_auc, runs, split_defs, selected_runs (finished runs), stages.
-- mean_auc: the level's mean test AUC over its structures; std_auc: the paper's standard
-- deviation, ACROSS THE LEVEL'S STRUCTURES (the spread of structure AUCs, not an interval).
-- Repeats (`fit --repeats`: the same cell on other splits of the same method) are averaged
-- explicitly: mean_auc is the mean over repeats of the level means, std_auc the mean over
-- repeats of the across-structure stds; n_repeats says how many (the spread ACROSS repeats,
-- mean +- 95 % interval, is in the repeat_metrics view). Split methods are never mixed: a
-- 'paper' and a 'stratified' run of one feature set are two rows.
-- param runs: run ids, e.g. [1, 2] (optional: every finished run)
with runs as (
    select run_id, split_id
    from main.selected_runs  -- finished runs, chosen by $runs
    where ($runs is null and is_default) or list_contains($runs, run_id)
),

split_defs as (
    select split_id, method as split_method from main.split_defs
),

level_auc as (
    select * from main.level_auc
),

final as (
    select
        l.stage,
        l.level,
        l.feature_set,
        d.split_method,
        l.label_mode,
        count(*) as n_repeats,
        string_agg(l.run_id::varchar, ',' order by l.run_id) as run_ids,
        max(l.n_structures) as n_structures,
        max(l.n_excluded) as n_excluded,
        avg(l.mean_auc) as mean_auc,
        avg(l.std_auc) as std_auc
    from level_auc l
    join runs using (run_id)
    left join split_defs d using (split_id)
    group by all
)

select final.*
from final
left join main.stages s using (stage)
order by s.stage_order, level, feature_set, split_method, label_mode
