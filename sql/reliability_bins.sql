-- reliability_bins: the reliability diagram (calibration) of every run with stored models:
-- held-out probabilities in ten bins against how often the experts called the structure.
-- Grain: one row per run x probability bin (0 = [0, 0.1), ..., 9 = [0.9, 1]) with rows.
-- Inputs: predictions (held-out scores only: the test side of a split, a stage the run did
-- not train on, or the out-of-fold scores of a production run), models (the Platt
-- calibration stored with each classifier: probability = 1 / (1 + exp(-(a score + b)))).
-- The expected calibration error of a run is sum(n * abs(mean_probability - observed)) /
-- sum(n) over its bins.
create or replace view reliability_bins as
with held_out as (
    select
        p.run_id,
        1.0 / (1.0 + exp(-(m.platt_a * p.score + m.platt_b))) as probability,
        p.detected
    from main.predictions p
    join main.models m
        on m.run_id = p.run_id and m.task_kind = 'structure' and m.structure_id = p.structure_id
    where p.subset in ('test', 'oof')
),

final as (
    select
        run_id,
        least(floor(probability * 10), 9)::integer as bin,
        count(*) as n,
        avg(probability) as mean_probability,
        avg(detected::integer) as observed
    from held_out
    group by all
)

select * from final
