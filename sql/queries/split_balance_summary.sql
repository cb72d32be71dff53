-- split_balance_summary: how evenly each split spreads the classes of the structures its runs trained on
-- Grain: one row per split used by a finished run (the one split-balance summary: the report
-- shows it, and it compares split methods, iterative stratification vs the paper's
-- rejection sampling).
-- Inputs: split_balance (per split x structure), splits, selected_runs, run_tasks.
-- worst_dev_pos / mean_dev_pos: largest and mean |test_share_pos - test_fraction| over the
-- structures (0 = every structure's positives split like the experiments);
-- min_ratio_agreement / median_ratio_agreement: the paper's train-vs-test class-ratio
-- agreement (1 = identical ratios); worst_share_error: max over structures and classes of
-- |test share - test_fraction| (lower is better); n_test_one_class: structures whose test
-- set lacks positives or negatives (they get no AUC).
-- param runs: run ids, e.g. [1, 2] (optional: every finished run)
with runs as (
    select run_id, split_id
    from main.selected_runs  -- finished runs, chosen by $runs
    where ($runs is null and is_default) or list_contains($runs, run_id)
),

run_structures as (
    select distinct r.split_id, try_cast(t.task as bigint) as structure_id
    from runs r
    join main.run_tasks t using (run_id)
    where t.task_kind = 'structure'
),

split_balance as (
    select b.*
    from main.split_balance b
    join run_structures using (split_id, structure_id)
),

sizes as (
    select
        split_id,
        count(*) filter (where subset = 'train') as n_train,
        count(*) filter (where subset = 'test') as n_test
    from main.splits
    where split_id in (select split_id from runs)
    group by split_id
),

per_split as (
    select
        split_id,
        stage,
        method,
        seed,
        repeat_index,
        count(*) as n_structures,
        max(abs(test_share_pos - test_fraction)) as worst_dev_pos,
        avg(abs(test_share_pos - test_fraction)) as mean_dev_pos,
        min(ratio_agreement) as min_ratio_agreement,
        median(ratio_agreement) as median_ratio_agreement,
        max(greatest(abs(test_share_pos - test_fraction), abs(test_share_neg - test_fraction)))
            as worst_share_error,
        count(*) filter (where n_test_pos = 0 or n_test_neg = 0) as n_test_one_class
    from split_balance
    group by all
),

final as (
    select
        p.split_id, p.stage, p.method, p.seed, p.repeat_index, z.n_train, z.n_test,
        p.n_structures, p.worst_dev_pos, p.mean_dev_pos, p.min_ratio_agreement,
        p.median_ratio_agreement, p.worst_share_error, p.n_test_one_class
    from per_split p
    join sizes z using (split_id)
)

select final.*
from final
left join main.stages s using (stage)
order by
    s.stage_order,
    split_id
