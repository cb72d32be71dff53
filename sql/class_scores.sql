-- class_scores: every run's test-set class probabilities in one long shape, binary and
-- multi-class alike (staging for target_metrics and class_confusion).
-- Grain: one row per run x experiment x structure x class.
-- Inputs: predictions (binary 'detected' runs: probability = sigmoid(score) for 'detected',
-- 1 - that for 'undetected'), class_predictions and run_targets (multi-class runs),
-- target_class_order (grade = the class's position, 0 = undetected).
create or replace view class_scores as
with binary_scores as (
    select
        p.run_id,
        'detected' as target,
        p.experiment_id,
        p.structure_id,
        c.class,
        case when c.class = 'detected' then 1.0 / (1.0 + exp(-p.score))
            else 1.0 - 1.0 / (1.0 + exp(-p.score)) end as probability,
        case when p.detected then 'detected' else 'undetected' end as truth
    from main.predictions p
    cross join (values ('undetected'), ('detected')) c(class)
),

multi_scores as (
    select
        p.run_id,
        t.target,
        p.experiment_id,
        p.structure_id,
        p.class,
        p.probability,
        p.truth
    from main.class_predictions p
    join main.run_targets t using (run_id)
),

scores as (
    select * from binary_scores
    union all
    select * from multi_scores
),

final as (
    select
        s.run_id,
        s.target,
        s.experiment_id,
        s.structure_id,
        s.class,
        oc.grade,
        s.probability,
        s.truth,
        ot.grade as truth_grade
    from scores s
    join main.target_class_order oc on oc.target = s.target and oc.class = s.class
    join main.target_class_order ot on ot.target = s.target and ot.class = s.truth
)

select * from final
