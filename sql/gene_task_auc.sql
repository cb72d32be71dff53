-- gene_task_auc: test-set AUC of every run x gene-level task (GO-like terms), in SQL.
-- Grain: one row per run x gene task with predictions.
-- Inputs: gene_predictions, runs, feature_sets.
-- The same rank (Mann-Whitney) AUC as structure_auc, ties counted half; NULL when the test
-- set lacks a class.
create or replace view gene_task_auc as
with gene_predictions as (
    select run_id, task, score, label from main.gene_predictions
),

runs as (
    select run_id, stage, feature_set_id, label_mode from main.runs
),

feature_sets as (
    select feature_set_id, name as feature_set from main.feature_sets
),

ranked as (
    select
        run_id,
        task,
        label,
        rank() over (partition by run_id, task order by score)
            + (count(*) over (partition by run_id, task, score) - 1) / 2.0 as avg_rank
    from gene_predictions
),

per_task as (
    select
        run_id,
        task,
        count(*) filter (where label) as n_pos,
        count(*) filter (where not label) as n_neg,
        coalesce(sum(avg_rank) filter (where label), 0) as rank_sum_pos
    from ranked
    group by run_id, task
),

final as (
    select
        p.run_id,
        r.stage,
        r.feature_set_id,
        f.feature_set,
        r.label_mode,
        p.task,
        p.n_pos,
        p.n_neg,
        case when p.n_pos > 0 and p.n_neg > 0
            then (p.rank_sum_pos - p.n_pos * (p.n_pos + 1) / 2.0) / (p.n_pos::double * p.n_neg)
        end as auc
    from per_task p
    join runs r using (run_id)
    left join feature_sets f using (feature_set_id)
)

select * from final
