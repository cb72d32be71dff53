-- table1_overall: the bottom line of Table 1, one number per feature set.
-- Grain: one row per feature set x label mode.
-- Inputs: stage_auc, selected_runs (finished runs).
-- The all_stages_auc definition (the paper's "0.894 +- 0.014" form) over the chosen runs:
-- a stage's number is the mean AUC over all its structures (stage_auc.mean_auc; repeated
-- runs of a stage averaged), and overall_mean / overall_std are the mean and sample std of
-- those stage numbers across stages (std NULL with a single stage).
-- param runs: run ids, e.g. [1, 2] (optional: every finished run)
with runs as (
    select run_id
    from main.selected_runs  -- finished runs, chosen by $runs
    where ($runs is null and is_default) or list_contains($runs, run_id)
),

stage_auc as (
    select * from main.stage_auc
),

per_stage as (
    select feature_set, label_mode, stage, s.stage_order, count(*) as n_runs,
           avg(mean_auc) as mean_auc
    from stage_auc
    join runs using (run_id)
    left join main.stages s using (stage)
    group by all
),

final as (
    select
        feature_set,
        label_mode,
        count(mean_auc) as n_stages,
        sum(n_runs) as n_runs,
        string_agg(stage, ',' order by stage_order) as stages,
        avg(mean_auc) as overall_mean,
        stddev_samp(mean_auc) as overall_std
    from per_stage
    group by all
)

select * from final
order by label_mode desc, overall_mean desc nulls last, feature_set
