-- reliability: how well a run's calibrated probabilities match the truth on held-out rows.
-- Grain: one row per run x subset x probability bin (ten equal-width bins).
-- Inputs: predictions (held-out scores: subset 'test', or 'oof' = cross-fitted out of fold),
-- models (Platt a, b per structure), runs. probability = 1 / (1 + exp(-(a score + b))).
-- A run with holdout 'split' is calibrated on out-of-fold scores of its training experiments
-- and evaluated here on its test experiments: an honest reliability diagram. For holdout
-- 'none' the rows are the same out-of-fold scores the calibration was fitted on.
create or replace view reliability as
with predictions as (
    select run_id, structure_id, score, detected, subset from main.predictions
),

models as (
    select run_id, structure_id, platt_a, platt_b
    from main.models
    where task_kind = 'structure'
),

runs as (
    select run_id, stage from main.runs
),

scored as (
    select
        p.run_id,
        p.subset,
        p.detected,
        1.0 / (1.0 + exp(-(m.platt_a * p.score + m.platt_b))) as probability
    from predictions p
    join models m using (run_id, structure_id)
),

final as (
    select
        s.run_id,
        r.stage,
        s.subset,
        least(floor(s.probability * 10), 9)::integer as bin,
        count(*) as n,
        avg(s.probability) as mean_probability,
        avg(s.detected::integer) as observed_rate
    from scored s
    join runs r using (run_id)
    group by all
)

select * from final
