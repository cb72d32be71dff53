-- truth_structure_auc: how well a run annotated a stage the experts never annotated, per
-- structure: AUC of predicted_annotations.score against the withheld truth (the AUC itself:
-- task_auc, task_kind 'withheld') and the accuracy of the calls.
-- Grain: one row per run x stage x structure with predicted annotations and withheld truth.
-- Inputs: task_auc, predicted_annotations, withheld_labels, experiments, structures.
-- auc is NULL when the stage's truth lacks a class for the structure.
create or replace view truth_structure_auc as
with task_auc as (
    select run_id, task as stage, structure_id, n_pos, n_neg, auc
    from main.task_auc
    where task_kind = 'withheld'
),

calls as (
    select
        p.run_id,
        e.stage,
        p.structure_id,
        count(*) as n_calls,
        avg((p.called = t.detected)::int) as accuracy,
        avg(p.called::int) filter (where t.detected) as sensitivity,
        avg((not p.called)::int) filter (where not t.detected) as specificity
    from main.predicted_annotations p
    join main.withheld_labels t using (experiment_id, structure_id)
    join main.experiments e using (experiment_id)
    group by all
),

structures as (
    select structure_id, level from main.structures
),

final as (
    select
        a.run_id,
        a.stage,
        a.structure_id,
        s.level,
        a.n_pos,
        a.n_neg,
        a.auc,
        c.n_calls,
        c.accuracy,
        c.sensitivity,
        c.specificity
    from task_auc a
    join calls c using (run_id, stage, structure_id)
    left join structures s using (structure_id)
)

select * from final
