-- structure_auc: test-set AUC of every run x structure, in SQL.
-- Grain: one row per run x structure that has predictions.
-- Inputs: predictions (test-set scores with the truth), runs, structures.
-- AUC is the rank (Mann-Whitney) form with ties counted half:
--   (sum of the average ranks of the positives - n_pos (n_pos + 1) / 2) / (n_pos n_neg),
-- equal to scikit-learn's roc_auc_score. A structure whose test set lacks either class
-- has auc NULL (excluded from the rollups, and counted there as excluded).
create or replace view structure_auc as
with predictions as (
    select run_id, structure_id, score, detected from main.predictions
),

runs as (
    select run_id, stage, feature_set_id from main.runs
),

structures as (
    select structure_id, level from main.structures
),

ranked as (
    select
        run_id,
        structure_id,
        detected,
        rank() over (partition by run_id, structure_id order by score)
            + (count(*) over (partition by run_id, structure_id, score) - 1) / 2.0 as avg_rank
    from predictions
),

per_task as (
    select
        run_id,
        structure_id,
        count(*) filter (where detected) as n_pos,
        count(*) filter (where not detected) as n_neg,
        coalesce(sum(avg_rank) filter (where detected), 0) as rank_sum_pos
    from ranked
    group by run_id, structure_id
),

final as (
    select
        p.run_id,
        p.structure_id,
        s.level,
        r.stage,
        r.feature_set_id,
        p.n_pos,
        p.n_neg,
        case when p.n_pos > 0 and p.n_neg > 0
            then (p.rank_sum_pos - p.n_pos * (p.n_pos + 1) / 2.0) / (p.n_pos::double * p.n_neg)
        end as auc
    from per_task p
    join runs r using (run_id)
    left join structures s using (structure_id)
)

select * from final
