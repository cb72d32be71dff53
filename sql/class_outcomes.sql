-- class_outcomes: the predicted class of every test experiment x structure of a run, by two
-- decision rules.
-- Grain: one row per run x experiment x structure.
-- Inputs: class_scores, target_classes (the training rows of each learned class).
-- predicted: the class of highest probability (ties: the lower grade), scikit-learn's
--   argmax over classes in grade order; it maximises accuracy, so a strongly regularised
--   model whose probabilities stay near the class shares calls (nearly) everything
--   'undetected' (90 % of the calls) and its kappa collapses to 0.
-- prior_predicted: the class of highest probability / training share of the class (ties: the
--   lower grade), the Bayes decision for balanced accuracy; multi-class runs only (their
--   training shares are in target_classes), NULL for binary 'detected' runs, whose call
--   rule is the calibrated max-F1 threshold of `ishwh annotate`.
create or replace view class_outcomes as
with class_scores as (
    select * from main.class_scores
),

class_counts as (
    select run_id, structure_id, effective_class as class, sum(n_train) as n_train
    from main.target_classes
    where effective_class is not null
    group by run_id, structure_id, effective_class
),

priors as (
    select
        run_id,
        structure_id,
        class,
        n_train / sum(n_train) over (partition by run_id, structure_id) as prior
    from class_counts
),

ranked as (
    select
        s.*,
        row_number() over (partition by s.run_id, s.structure_id, s.experiment_id
                           order by s.probability desc, s.grade) as pick,
        row_number() over (partition by s.run_id, s.structure_id, s.experiment_id
                           order by s.probability / p.prior desc nulls last, s.grade)
            as prior_pick,
        p.prior is not null as has_prior
    from class_scores s
    left join priors p
        on p.run_id = s.run_id and p.structure_id = s.structure_id and p.class = s.class
),

final as (
    select
        run_id,
        any_value(target) as target,
        experiment_id,
        structure_id,
        any_value(truth) as truth,
        any_value(truth_grade) as truth_grade,
        any_value(class) filter (where pick = 1) as predicted,
        any_value(grade) filter (where pick = 1) as predicted_grade,
        any_value(class) filter (where prior_pick = 1 and has_prior) as prior_predicted,
        any_value(grade) filter (where prior_pick = 1 and has_prior) as prior_predicted_grade
    from ranked
    group by run_id, experiment_id, structure_id
)

select * from final
