-- selected_runs: the finished runs a report (or a named report query) covers.
-- Grain: one row per finished run.
-- Inputs: runs, run_training. Optional filter, read when the view is queried:
-- `set variable report_runs = [1, 2]` (unset: every finished within-stage split run; runs
-- trained on other stages or without a split are left to transfer_auc and annotate, so they
-- never mix into Table 1's cells).
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
    select *
    from runs
    where status = 'finished'
        and (getvariable('report_runs') is null
            and run_id not in (select run_id from other_schemes)
            or list_contains(getvariable('report_runs'), run_id))
)

select * from final
