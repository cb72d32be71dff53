-- selected_runs: the finished runs a report (or a named report query) may cover.
-- Grain: one row per finished run.
-- Inputs: runs. is_default: the run is covered when no runs are named (today: every finished
-- run). The named queries choose with their optional $runs parameter:
--   where ($runs is null and is_default) or list_contains($runs, run_id)
-- (`ishwh sql --query table1 --param runs=[1,2]`).
create or replace view selected_runs as
with runs as (
    select * from main.runs
),

final as (
    select *, true as is_default
    from runs
    where status = 'finished'
)

select * from final
