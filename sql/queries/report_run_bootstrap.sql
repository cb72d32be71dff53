-- report_run_bootstrap: each run's stage mean (macro AUC over structures) with its 95 %
-- bootstrap interval over structures, as `ishwh compare` stored it.
-- Grain: one row per run. Inputs: run_bootstrap, runs, run_targets, feature_sets,
-- selected_runs.
-- param runs: run ids, e.g. [1, 2] (optional: every finished run)
select
    r.run_id,
    r.stage,
    coalesce(t.target, 'detected') as target,
    coalesce(t.model, 'binary') as model,
    f.name as feature_set,
    b.n_structures,
    b.mean,
    b.boot_lo,
    b.boot_hi,
    b.n_boot,
    b.seed
from run_bootstrap b
join selected_runs r using (run_id)
left join run_targets t using (run_id)
left join feature_sets f using (feature_set_id)
left join stages s using (stage)
where ($runs is null and r.is_default) or list_contains($runs, b.run_id)
order by s.stage_order, target, b.mean desc
