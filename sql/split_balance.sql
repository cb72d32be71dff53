-- split_balance: how each stored train/test split spreads every structure's classes.
-- Grain: one row per split x structure with at least one label among the split's experiments.
-- Inputs: split_defs, splits, labels, structures.
-- test_share_pos / test_share_neg: the share of the structure's positives / negatives that
-- landed in test (ideal: test_fraction, the split's overall test share).
-- ratio_agreement: min(r_train, r_test) / max(r_train, r_test) with r = positives / negatives
-- (1 = identical class ratios on both sides; 0 = a side lacks a class) — the quantity the
-- paper's procedure thresholds. is_balanceable: >= 3 positives and >= 3 negatives overall.
create or replace view split_balance as
with split_defs as (
    select split_id, stage, method, seed, repeat_index from main.split_defs
),

splits as (
    select split_id, experiment_id, subset from main.splits
),

labels as (
    select experiment_id, structure_id, detected from main.labels
),

structures as (
    select structure_id, acronym, level from main.structures
),

sizes as (
    select split_id, avg(case when subset = 'test' then 1.0 else 0.0 end) as test_fraction
    from splits
    group by split_id
),

counts as (
    select
        sp.split_id,
        l.structure_id,
        count(*) filter (where sp.subset = 'train' and l.detected) as n_train_pos,
        count(*) filter (where sp.subset = 'train' and not l.detected) as n_train_neg,
        count(*) filter (where sp.subset = 'test' and l.detected) as n_test_pos,
        count(*) filter (where sp.subset = 'test' and not l.detected) as n_test_neg
    from splits sp
    join labels l using (experiment_id)
    group by all
),

final as (
    select
        d.split_id,
        d.stage,
        d.method,
        d.seed,
        d.repeat_index,
        c.structure_id,
        s.acronym,
        s.level,
        c.n_train_pos,
        c.n_train_neg,
        c.n_test_pos,
        c.n_test_neg,
        z.test_fraction,
        c.n_test_pos / nullif(c.n_train_pos + c.n_test_pos, 0)::double as test_share_pos,
        c.n_test_neg / nullif(c.n_train_neg + c.n_test_neg, 0)::double as test_share_neg,
        case
            when least(c.n_train_pos, c.n_train_neg, c.n_test_pos, c.n_test_neg) = 0 then 0.0
            else least(c.n_train_pos / c.n_train_neg::double, c.n_test_pos / c.n_test_neg::double)
                / greatest(c.n_train_pos / c.n_train_neg::double,
                           c.n_test_pos / c.n_test_neg::double)
        end as ratio_agreement,
        (c.n_train_pos + c.n_test_pos >= 3 and c.n_train_neg + c.n_test_neg >= 3)
            as is_balanceable
    from counts c
    join split_defs d using (split_id)
    join sizes z using (split_id)
    left join structures s using (structure_id)
)

select * from final
