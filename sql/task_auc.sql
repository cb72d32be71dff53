-- task_auc: test-set AUC of every run x task (structures and gene-level tasks), in SQL.
-- Grain: one row per run x task kind x task with predictions.
-- Inputs: predictions (structure tasks), gene_predictions (gene-level tasks such as GO terms).
-- AUC is the rank (Mann-Whitney) form with ties counted half:
--   (sum of the average ranks of the positives - n_pos (n_pos + 1) / 2) / (n_pos n_neg),
-- equal to scikit-learn's roc_auc_score. A task whose test set lacks either class has auc
-- NULL (excluded from the rollups, and counted there as excluded). The one home of the AUC
-- formula: structure_auc and gene_task_auc select from here.
create or replace view task_auc as
with scored as (
    select run_id, 'structure' as task_kind, structure_id, null::varchar as task,
           score, detected
    from main.predictions
    union all
    select run_id, 'gene' as task_kind, null::bigint as structure_id, task,
           score, label as detected  -- the truth is `detected` in every view
    from main.gene_predictions
),

ranked as (
    select
        run_id,
        task_kind,
        structure_id,
        task,
        detected,
        rank() over (partition by run_id, task_kind, structure_id, task order by score)
            + (count(*) over (partition by run_id, task_kind, structure_id, task, score) - 1)
            / 2.0 as avg_rank
    from scored
),

per_task as (
    select
        run_id,
        task_kind,
        structure_id,
        task,
        count(*) filter (where detected) as n_pos,
        count(*) filter (where not detected) as n_neg,
        coalesce(sum(avg_rank) filter (where detected), 0) as rank_sum_pos
    from ranked
    group by run_id, task_kind, structure_id, task
),

final as (
    select
        run_id,
        task_kind,
        structure_id,
        task,
        n_pos,
        n_neg,
        case when n_pos > 0 and n_neg > 0
            then (rank_sum_pos - n_pos * (n_pos + 1) / 2.0) / (n_pos::double * n_neg)
        end as auc
    from per_task
)

select * from final
