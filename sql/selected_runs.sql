-- selected_runs: the finished runs a report (or a named report query) may cover.
-- Grain: one row per finished run.
-- Inputs: runs, run_training. is_default: the run is covered when no runs are named: every
-- finished within-stage split run (runs trained on other stages or without a split are left
-- to transfer_auc and annotate, so they never mix into Table 1's cells). The named queries
-- choose with their optional $runs parameter:
--   where ($runs is null and is_default) or list_contains($runs, run_id)
-- (`ishwh sql --query table1 --param runs=[1,2]`).
create or replace view selected_runs as
with runs as (
    select * from main.runs
),

other_schemes as (
    select t.run_id
    from main.run_training t
    join main.runs r using (run_id)
    where t.holdout <> 'split' or t.train_stages <> [r.stage]
),

final as (
    select *, run_id not in (select run_id from other_schemes) as is_default
    from runs
    where status = 'finished'
)

select * from final
