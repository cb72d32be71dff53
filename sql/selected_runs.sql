-- selected_runs: the finished runs a report (or a named report query) covers.
-- Grain: one row per finished run.
-- Inputs: runs. Optional filter, read when the view is queried:
-- `set variable report_runs = [1, 2]` (unset: every finished run).
create or replace view selected_runs as
with runs as (
    select * from main.runs
),

final as (
    select *
    from runs
    where status = 'finished'
        and (getvariable('report_runs') is null
            or list_contains(getvariable('report_runs'), run_id))
)

select * from final
