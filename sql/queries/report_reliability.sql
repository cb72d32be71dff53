-- report_reliability: the reliability diagram's bins of each selected run with stored models, and its expected calibration error
-- Grain: one row per run x probability bin (held-out probabilities only; see reliability_bins).
-- Inputs: reliability_bins, selected_runs, feature_sets. ece (per run, repeated on its
-- rows) = sum(n * abs(mean_probability - observed)) / sum(n).
-- Optional filter: `set variable report_runs = [1, 2]`.
with bins as (
    select b.*, r.stage, r.feature_set_id
    from main.reliability_bins b
    join main.selected_runs r using (run_id)
),

final as (
    select
        b.run_id,
        b.stage,
        f.name as feature_set,
        b.bin,
        b.bin / 10.0 as bin_low,
        (b.bin + 1) / 10.0 as bin_high,
        b.n,
        b.mean_probability,
        b.observed,
        sum(b.n * abs(b.mean_probability - b.observed)) over (partition by b.run_id)
            / sum(b.n) over (partition by b.run_id) as ece
    from bins b
    join main.feature_sets f using (feature_set_id)
)

select * from final
order by run_id, bin
