-- selected_runs: the finished runs, the runs a report (or a named report query) may cover.
-- Grain: one row per finished run.
-- Inputs: runs. The named queries narrow it with their optional $runs parameter
-- (`ishwh sql --query table1 --param runs=[1,2]`).
create or replace view selected_runs as
with runs as (
    select * from main.runs
),

final as (
    select *
    from runs
    where status = 'finished'
)

select * from final
