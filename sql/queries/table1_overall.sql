-- table1_overall: the bottom line of Table 1, one number per feature set and split method.
-- Grain: one row per feature set x label mode x split method x levels asked.
-- Inputs: stage_auc, selected_runs, stages. The all_stages_auc definition over the chosen
-- runs: a stage's number is the mean AUC over all its structures (repeats of a stage averaged
-- first); overall_mean / overall_std are the mean and the sample std ACROSS STAGES of those
-- stage numbers (std NULL with a single stage). Split methods are never mixed.
-- param runs: run ids, e.g. [1, 2] (optional: every finished run)
with runs as (
    select run_id
    from main.selected_runs  -- finished runs, chosen by $runs
    where ($runs is null and is_default) or list_contains($runs, run_id)
),

per_stage as (
    select
        a.feature_set,
        a.label_mode,
        a.split_method,
        a.levels,
        a.stage,
        s.stage_order,
        count(*) as n_runs,
        avg(a.mean_auc) as mean_auc
    from main.stage_auc a
    join runs using (run_id)
    left join main.stages s using (stage)
    group by all
),

final as (
    select
        feature_set,
        label_mode,
        split_method,
        levels,
        count(mean_auc) as n_stages,
        sum(n_runs)::bigint as n_runs,
        string_agg(stage, ',' order by stage_order) as stages,
        avg(mean_auc) as overall_mean,
        stddev_samp(mean_auc) as overall_std
    from per_stage
    group by all
)

select * from final
order by label_mode desc, overall_mean desc nulls last, feature_set, split_method
