-- split_balance_worst: the worst-balanced structure of every stored split, to compare split
-- methods (the default, iterative stratification, against the paper's rejection sampling).
-- Grain: one row per split. Inputs: split_balance (structures with >= 3 positives and >= 3
-- negatives overall; the others cannot be balanced by any split).
-- worst_ratio_agreement: min over structures of the train/test class-ratio agreement (higher
-- is better); worst_share_error: max over structures and classes of |test share - test
-- fraction| (lower is better); n_test_missing_class: structures without an AUC in test.
with split_balance as (
    select * from main.split_balance where is_balanceable
),

final as (
    select
        split_id,
        stage,
        method,
        seed,
        repeat_index,
        count(*) as n_structures,
        min(ratio_agreement) as worst_ratio_agreement,
        avg(ratio_agreement) as mean_ratio_agreement,
        max(greatest(abs(test_share_pos - test_fraction), abs(test_share_neg - test_fraction)))
            as worst_share_error,
        count(*) filter (where n_test_pos = 0 or n_test_neg = 0) as n_test_missing_class
    from split_balance
    group by all
)

select * from final
order by stage, method, seed, repeat_index
