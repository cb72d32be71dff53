-- target_stage_metrics: the stage rollup of target_metrics: every structure of a run pooled.
-- Grain: one row per run. Inputs: target_rollup (the formulas).
create or replace view target_stage_metrics as
select * exclude (is_stage, level) from main.target_rollup where is_stage
