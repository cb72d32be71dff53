-- target_level_metrics: the level rollup of target_metrics (like level_auc, every target).
-- Grain: one row per run x ontology level. Inputs: target_rollup (the formulas).
create or replace view target_level_metrics as
select * exclude (is_stage) from main.target_rollup where not is_stage
