-- run_comparisons: stored paired comparisons of two feature sets on the same split, readable.
-- Grain: one row per compared pair of runs (`ishwh compare` writes them).
-- mean_diff = mean over structures of (metric of run a - metric of run b); p_value: two-sided
-- Wilcoxon signed-rank; boot_lo/boot_hi: 95 % bootstrap interval of mean_diff.
-- Inputs: run_comparisons, runs, run_targets, feature_sets, stages.
-- param runs: run ids, e.g. [1, 2] (optional: every comparison); both runs must be in it
with info as (
    select r.run_id, r.stage, coalesce(t.target, 'detected') as target,
           coalesce(t.model, 'binary') as model, f.name as feature_set
    from runs r
    left join run_targets t using (run_id)
    left join feature_sets f using (feature_set_id)
),

final as (
    select
        a.stage,
        s.stage_order,
        a.target,
        c.run_a,
        a.feature_set as feature_set_a,
        a.model as model_a,
        c.run_b,
        b.feature_set as feature_set_b,
        b.model as model_b,
        c.metric,
        c.n_structures,
        c.mean_a,
        c.mean_b,
        c.mean_diff,
        c.boot_lo,
        c.boot_hi,
        c.median_diff,
        c.n_a_better,
        c.wilcoxon_stat,
        c.p_value,
        printf('%.2g', c.p_value) as p_value_text   -- for reading (reports round to 3 digits)
    from run_comparisons c
    join info a on a.run_id = c.run_a
    join info b on b.run_id = c.run_b
    left join stages s on s.stage = a.stage
    where $runs is null
        or (list_contains($runs, c.run_a) and list_contains($runs, c.run_b))
)

select * exclude (stage_order) from final
order by stage_order, target, run_a, run_b
