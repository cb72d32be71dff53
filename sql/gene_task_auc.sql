-- gene_task_auc: test-set AUC of every run x gene-level task (GO-like terms).
-- Grain: one row per run x gene task with predictions.
-- Inputs: task_auc (the AUC formula), run_info. auc is NULL when the test set
-- lacks a class.
create or replace view gene_task_auc as
with task_auc as (
    select run_id, task, n_pos, n_neg, auc
    from main.task_auc
    where task_kind = 'gene'
),

runs as (
    select run_id, stage, feature_set_id, feature_set, label_mode from main.run_info
),

final as (
    select
        a.run_id,
        r.stage,
        r.feature_set_id,
        r.feature_set,
        r.label_mode,
        a.task,
        a.n_pos,
        a.n_neg,
        a.auc
    from task_auc a
    join runs r using (run_id)
)

select * from final
