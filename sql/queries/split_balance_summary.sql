-- split_balance_summary: how evenly each train/test split spreads every structure's
-- positives and negatives.
-- Grain: one row per split used by a finished run.
-- Inputs: splits, split_defs, runs, run_tasks (the structure tasks of the runs), labels.
-- For a structure, test_share_pos = test positives / all positives of the split's
-- experiments; a perfectly balanced split gives every structure the split's test fraction.
-- worst_dev_pos / mean_dev_pos: largest and mean |test_share_pos - test fraction| over
-- structures; n_test_one_class: structures whose test set lacks positives or negatives
-- (their AUC is undefined).
-- Optional filter: `set variable report_runs = [1, 2]`.
with runs as (
    select run_id, split_id, stage
    from main.runs
    where status = 'finished'
        and (getvariable('report_runs') is null
            or list_contains(getvariable('report_runs'), run_id))
),

split_structures as (
    select distinct r.split_id, r.stage, try_cast(t.task as bigint) as structure_id
    from runs r
    join main.run_tasks t using (run_id)
    where t.task_kind = 'structure'
),

splits as (
    select split_id, experiment_id, subset from main.splits
    where split_id in (select split_id from runs)
),

sizes as (
    select
        split_id,
        count(*) filter (where subset = 'train') as n_train,
        count(*) filter (where subset = 'test') as n_test
    from splits
    group by split_id
),

counts as (
    select
        ss.split_id,
        ss.structure_id,
        count(*) filter (where sp.subset = 'train' and l.detected) as train_pos,
        count(*) filter (where sp.subset = 'test' and l.detected) as test_pos,
        count(*) filter (where sp.subset = 'train' and not l.detected) as train_neg,
        count(*) filter (where sp.subset = 'test' and not l.detected) as test_neg
    from split_structures ss
    join splits sp using (split_id)
    join main.labels l
        on l.experiment_id = sp.experiment_id and l.structure_id = ss.structure_id
    group by all
),

per_structure as (
    select
        c.*,
        z.n_test::double / (z.n_train + z.n_test) as test_fraction,
        case when c.train_pos + c.test_pos > 0
            then c.test_pos::double / (c.train_pos + c.test_pos) end as test_share_pos
    from counts c
    join sizes z using (split_id)
),

final as (
    select
        d.split_id,
        d.stage,
        d.method,
        d.seed,
        d.repeat_index,
        z.n_train,
        z.n_test,
        count(p.structure_id) as n_structures,
        max(abs(p.test_share_pos - p.test_fraction)) as worst_dev_pos,
        avg(abs(p.test_share_pos - p.test_fraction)) as mean_dev_pos,
        count(*) filter (where p.test_pos = 0 or p.test_neg = 0) as n_test_one_class
    from main.split_defs d
    join sizes z using (split_id)
    left join per_structure p using (split_id)
    group by all
)

select * from final
order by
    list_position(['E11.5', 'E13.5', 'E15.5', 'E18.5', 'P4', 'P14', 'P28', 'P56'], stage),
    split_id
