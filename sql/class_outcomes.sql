-- class_outcomes: the predicted class of every test experiment x structure of a run.
-- Grain: one row per run x experiment x structure.
-- Inputs: class_scores. predicted = the class of highest probability (ties: the lower
-- grade), as scikit-learn's argmax over classes in grade order.
create or replace view class_outcomes as
with class_scores as (
    select * from main.class_scores
),

ranked as (
    select
        *,
        row_number() over (partition by run_id, structure_id, experiment_id
                           order by probability desc, grade) as pick
    from class_scores
),

final as (
    select
        run_id,
        target,
        experiment_id,
        structure_id,
        truth,
        truth_grade,
        class as predicted,
        grade as predicted_grade
    from ranked
    where pick = 1
)

select * from final
