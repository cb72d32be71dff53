-- report_class_confusion: confusion counts of the multi-class runs, summed over structures.
-- Grain: one row per run x truth class x predicted class. Inputs: class_confusion,
-- run_targets, runs, feature_sets, selected_runs.
-- param runs: run ids, e.g. [1, 2] (optional: every finished run)
with runs as (
    select run_id from main.selected_runs
    where ($runs is null and is_default) or list_contains($runs, run_id)
),

info as (
    select r.run_id, f.name as feature_set, t.model
    from main.runs r
    join main.run_targets t using (run_id)
    left join main.feature_sets f using (feature_set_id)
),

final as (
    select
        c.run_id,
        c.stage,
        c.target,
        i.model,
        i.feature_set,
        c.truth,
        c.truth_grade,
        c.predicted,
        c.predicted_grade,
        sum(c.n)::bigint as n
    from class_confusion c
    join runs using (run_id)
    join info i using (run_id)
    group by all
)

select * from final
order by run_id, truth_grade, predicted_grade
