-- calibration_error: the expected calibration error (ECE) of a run's held-out probabilities.
-- Grain: one row per run x subset ('test' or 'oof', see reliability).
-- Inputs: reliability. ece = sum over bins of n_bin / n * |mean probability - observed rate|
-- (ten equal-width bins, all structures pooled); brier-free, in [0, 1], 0 = calibrated.
create or replace view calibration_error as
with reliability as (
    select * from main.reliability
),

final as (
    select
        run_id,
        stage,
        subset,
        sum(n) as n,
        sum(n * abs(mean_probability - observed_rate)) / sum(n) as ece
    from reliability
    group by all
)

select * from final
