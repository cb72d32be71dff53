-- level_auc: the paper's rollup, mean and std of structure AUCs per run x stage x level.
-- Grain: one row per run x ontology level.
-- Inputs: structure_auc, run_info. n_structures counts structures with an AUC;
-- n_excluded counts those whose test set lacked a class (auc NULL).
create or replace view level_auc as
with structure_auc as (
    select * from main.structure_auc
),

runs as (
    select run_id, feature_set, label_mode from main.run_info
),

final as (
    select
        a.run_id,
        a.stage,
        a.level,
        r.feature_set,
        r.label_mode,
        count(a.auc) as n_structures,
        count(*) - count(a.auc) as n_excluded,
        avg(a.auc) as mean_auc,
        stddev_samp(a.auc) as std_auc
    from structure_auc a
    join runs r using (run_id)
    group by all
)

select * from final
