-- skipped_tasks: the tasks fit did not train, grouped by the reason it gave.
-- Grain: one row per run x task kind x reason (finished runs only).
-- Inputs: run_tasks, selected_runs, run_info, structures.
-- examples lists up to eight of the skipped tasks (structure acronyms or gene-task names).
-- param runs: run ids, e.g. [1, 2] (optional: every finished run)
with runs as (
    select run_id, stage, feature_set_id, label_mode
    from main.selected_runs  -- finished runs, chosen by $runs
    where ($runs is null and is_default) or list_contains($runs, run_id)
),

run_tasks as (
    select * from main.run_tasks where status = 'skipped'
),

run_info as (
    select run_id, feature_set from main.run_info
),

structures as (
    select structure_id, acronym from main.structures
),

named as (
    select
        t.run_id,
        r.stage,
        f.feature_set,
        r.label_mode,
        t.task_kind,
        coalesce(t.reason, 'no reason recorded') as reason,
        coalesce(s.acronym, t.task) as task_name
    from run_tasks t
    join runs r using (run_id)
    join run_info f using (run_id)
    left join structures s
        on t.task_kind = 'structure' and s.structure_id = try_cast(t.task as bigint)
),

final as (
    select
        run_id,
        stage,
        feature_set,
        label_mode,
        task_kind,
        reason,
        count(*) as n_tasks,
        array_to_string(list_slice(list(task_name order by task_name), 1, 8), ', ')
            || case when count(*) > 8 then ', ...' else '' end as examples
    from named
    group by all
)

select * from final
order by run_id, task_kind, n_tasks desc, reason
