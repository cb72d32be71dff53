-- stage_auc: one number per run and stage, the paper's "0.894 +- 0.014" form.
-- Grain: one row per run (a run is one feature set x stage x split x label mode).
-- Inputs: structure_auc, level_auc, run_info.
-- mean_auc / std_auc: mean and sample std over every structure of the run with an AUC (all
-- levels pooled); mean_level_auc: the mean of the run's level means (each level weighted
-- equally); n_excluded: structures whose test set lacked a class.
create or replace view stage_auc as
with structure_auc as (
    select * from main.structure_auc
),

level_auc as (
    select run_id, avg(mean_auc) as mean_level_auc, count(mean_auc) as n_levels
    from main.level_auc
    group by run_id
),

runs as (
    select run_id, feature_set, label_mode, split_method, repeat_index, levels
    from main.run_info
),

per_run as (
    select
        run_id,
        stage,
        feature_set_id,
        count(auc) as n_structures,
        count(*) - count(auc) as n_excluded,
        avg(auc) as mean_auc,
        stddev_samp(auc) as std_auc
    from structure_auc
    group by all
),

final as (
    select
        p.run_id,
        p.stage,
        r.feature_set,
        r.label_mode,
        r.split_method,
        r.repeat_index,
        r.levels,
        p.n_structures,
        p.n_excluded,
        p.mean_auc,
        p.std_auc,
        l.n_levels,
        l.mean_level_auc
    from per_run p
    join runs r using (run_id)
    left join level_auc l using (run_id)
)

select * from final
