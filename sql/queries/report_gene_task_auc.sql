-- report_gene_task_auc: test-set AUC of every gene-level (GO-like) task of a run.
-- Grain: one row per run x gene task (finished runs only).
-- Inputs: gene_predictions, runs, feature_sets.
-- Same rank (Mann-Whitney) AUC as structure_auc, ties counted half; NULL when the test set
-- lacks a class.
-- Optional filter: `set variable report_runs = [1, 2]`.
with runs as (
    select run_id, stage, feature_set_id, label_mode
    from main.runs
    where status = 'finished'
        and (getvariable('report_runs') is null
            or list_contains(getvariable('report_runs'), run_id))
),

gene_predictions as (
    select run_id, task, score, label from main.gene_predictions
    where run_id in (select run_id from runs)
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
        f.name as feature_set,
        r.label_mode,
        p.task,
        p.n_pos,
        p.n_neg,
        case when p.n_pos > 0 and p.n_neg > 0
            then (p.rank_sum_pos - p.n_pos * (p.n_pos + 1) / 2.0) / (p.n_pos::double * p.n_neg)
        end as auc
    from per_task p
    join runs r using (run_id)
    join main.feature_sets f using (feature_set_id)
)

select * from final
order by run_id, task
