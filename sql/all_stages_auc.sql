-- all_stages_auc: the all-stages number per feature set, the paper's "0.894 +- 0.014" form.
-- Grain: one row per feature set x label mode x split method x levels asked.
-- Inputs: stage_auc, selected_runs (the default runs: every finished run), stages.
-- A stage's number is the mean AUC over all its structures, levels pooled
-- (stage_auc.mean_auc); the repeats of a stage (`fit --repeats`, same split method) are
-- averaged first, so each stage counts once; mean_auc / std_auc are the mean and the sample
-- std ACROSS STAGES of those stage numbers (std NULL with a single stage). Split methods are
-- never mixed. The one definition is the table macro all_stages_auc_over(run_ids) (NULL:
-- the default runs); this view is it over the default runs, and the named query
-- table1_overall is it over the chosen runs ($runs).
create or replace macro all_stages_auc_over(run_ids) as table
with runs as (
    select run_id
    from main.selected_runs
    where (run_ids is null and is_default) or list_contains(run_ids, run_id)
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
        avg(mean_auc) as mean_auc,
        stddev_samp(mean_auc) as std_auc
    from per_stage
    group by all
)

select * from final;

create or replace view all_stages_auc as
select * from all_stages_auc_over(null)
