-- report_reliability: the reliability diagram's bins of each selected run with stored models, with its expected calibration error
-- Grain: one row per run x subset ('test' or 'oof') x probability bin (held-out rows only).
-- Inputs: reliability and calibration_error (the views), selected_runs, feature_sets.
-- param runs: run ids, e.g. [1, 2] (optional: every finished run with stored models)
with selected as (
    select run_id, feature_set_id from main.selected_runs
    where $runs is null or list_contains($runs, run_id)
),

final as (
    select
        b.run_id,
        b.stage,
        f.name as feature_set,
        b.subset,
        b.bin,
        b.bin / 10.0 as bin_low,
        (b.bin + 1) / 10.0 as bin_high,
        b.n,
        b.mean_probability,
        b.observed_rate,
        c.ece
    from main.reliability b
    join selected s using (run_id)
    join main.feature_sets f using (feature_set_id)
    join main.calibration_error c using (run_id, subset)
)

select * from final
order by run_id, subset, bin
