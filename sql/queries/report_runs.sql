-- report_runs: every parameter and version that defines a run, for the report's appendix.
-- Grain: one row per finished run.
-- Inputs: selected_runs, run_info, feature_sets (params), run_tasks.
-- param runs: run ids, e.g. [1, 2] (optional: every finished run)
with runs as (
    select *
    from main.selected_runs  -- finished runs, chosen by $runs
    where ($runs is null and is_default) or list_contains($runs, run_id)
),

task_counts as (
    select
        run_id,
        count(*) filter (where status = 'fitted') as n_fitted,
        count(*) filter (where status = 'skipped') as n_skipped
    from main.run_tasks
    group by run_id
),

final as (
    select
        r.run_id,
        i.feature_set,
        i.extractor,
        i.dim,
        r.stage,
        r.split_id,
        i.split_method,
        i.split_seed,
        i.repeat_index,
        r.tasks,
        r.levels,
        r.label_mode,
        coalesce(t.n_fitted, 0) as n_fitted,
        coalesce(t.n_skipped, 0) as n_skipped,
        r.params::varchar as params,
        f.params::varchar as feature_params,
        r.versions::varchar as versions,
        r.timings::varchar as timings,
        r.started_at,
        r.finished_at
    from runs r
    join main.run_info i using (run_id)
    left join main.feature_sets f on f.feature_set_id = r.feature_set_id
    left join task_counts t using (run_id)
)

select * from final
order by run_id
