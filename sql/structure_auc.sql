-- structure_auc: test-set AUC of every run x structure (the AUC itself: task_auc).
-- Grain: one row per run x structure that has predictions.
-- Inputs: task_auc, run_info, structures. auc is NULL when the test set lacks a class.
create or replace view structure_auc as
with task_auc as (
    select run_id, structure_id, n_pos, n_neg, auc
    from main.task_auc
    where task_kind = 'structure'
),

runs as (
    select run_id, stage, feature_set_id, feature_set from main.run_info
),

structures as (
    select structure_id, acronym, name as structure_name, level from main.structures
),

final as (
    select
        a.run_id,
        a.structure_id,
        s.acronym,
        s.structure_name,
        s.level,
        r.stage,
        r.feature_set_id,
        r.feature_set,
        a.n_pos,
        a.n_neg,
        a.auc
    from task_auc a
    join runs r using (run_id)
    left join structures s using (structure_id)
)

select * from final
