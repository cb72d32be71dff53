-- stage_auc: one number per run and stage, the paper's "0.894 +- 0.014" form.
-- Grain: one row per run (a run is one feature set x stage x split x label mode).
-- Inputs: structure_auc, level_auc, runs, split_defs, feature_sets.
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
    select run_id, label_mode, split_id, levels from main.runs
),

split_defs as (
    select split_id, method as split_method, repeat_index from main.split_defs
),

feature_sets as (
    select feature_set_id, name as feature_set from main.feature_sets
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
        f.feature_set,
        r.label_mode,
        d.split_method,
        d.repeat_index,
        r.levels,
        p.n_structures,
        p.n_excluded,
        p.mean_auc,
        p.std_auc,
        l.n_levels,
        l.mean_level_auc
    from per_run p
    join runs r using (run_id)
    left join split_defs d using (split_id)
    left join feature_sets f using (feature_set_id)
    left join level_auc l using (run_id)
)

select * from final
