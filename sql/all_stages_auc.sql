-- all_stages_auc: the all-stages rollup per feature set, as in the paper's abstract.
-- ("average AUC of 0.894 +- 0.014").
-- Grain: one row per feature set x label mode x split method x levels.
-- Inputs: stage_auc, stages (developmental order). Runs of one stage (repeated splits) are
-- first averaged, so each stage counts once; mean_auc / std_auc are the mean and sample std across stages of the stage
-- means. n_runs counts the runs behind the numbers.
create or replace view all_stages_auc as
with stage_auc as (
    select * from main.stage_auc
),

per_stage as (
    select
        feature_set,
        label_mode,
        split_method,
        levels,
        stage,
        s.stage_order,
        count(*) as n_runs,
        avg(mean_auc) as mean_auc
    from stage_auc
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
        sum(n_runs) as n_runs,
        string_agg(stage, ',' order by stage_order) as stages,
        avg(mean_auc) as mean_auc,
        stddev_samp(mean_auc) as std_auc
    from per_stage
    group by all
)

select * from final
