-- class_confusion: confusion counts of every run x structure (truth x predicted class).
-- Grain: one row per run x structure x truth class x predicted class that occurs.
-- Inputs: class_outcomes, runs, structures. Sum over structures for a level's or a stage's
-- confusion matrix (the report's heatmaps do).
create or replace view class_confusion as
with class_outcomes as (
    select * from main.class_outcomes
),

runs as (
    select run_id, stage from main.runs
),

structures as (
    select structure_id, level from main.structures
),

final as (
    select
        o.run_id,
        o.target,
        r.stage,
        o.structure_id,
        s.level,
        o.truth,
        o.truth_grade,
        o.predicted,
        o.predicted_grade,
        count(*) as n
    from class_outcomes o
    join runs r using (run_id)
    left join structures s using (structure_id)
    group by all
)

select * from final
