-- target_metrics: test-set metrics of every run x structure, for every target (detected,
-- pattern, intensity, density). Each formula lives here once:
--   macro_auc: mean over the classes present in the test set of the one-vs-rest AUC (task_auc,
--     the one AUC formula); for a binary 'detected' run the AUC itself. NULL with < 2 classes.
--     = sklearn roc_auc_score(y, P, multi_class='ovr', average='macro').
--   accuracy: share of rows whose predicted class (class_outcomes) is the truth.
--   balanced_accuracy: mean over the truth classes present of their recall
--     (= sklearn balanced_accuracy_score).
--   kappa: quadratic-weighted Cohen's kappa on the grades (0 = undetected .. 3 = high):
--     1 - sum (t - p)^2 / (sum t^2 + sum p^2 - 2 sum t sum p / n)
--     (= sklearn cohen_kappa_score(t, p, weights='quadratic', labels=[0, 1, 2, 3])); NULL for
--     the nominal pattern target and when the denominator is 0.
--   mae: mean absolute error in grades (NULL for pattern).
--   accuracy_prior, balanced_accuracy_prior, kappa_prior: the same formulas on the
--     prior-corrected decision (class_outcomes.prior_predicted: highest probability / training
--     share), which does not collapse to 'undetected' under strong regularisation; NULL for
--     binary 'detected' runs.
-- Grain: one row per run x structure with test predictions.
-- Inputs: class_outcomes, task_auc, runs, structures.
create or replace view target_metrics as
with class_outcomes as (
    select * from main.class_outcomes
),

class_auc as (
    select run_id, structure_id, avg(auc) as macro_auc, count(auc) as n_auc_classes
    from main.task_auc
    where task_kind = 'class'
    group by all
),

binary_auc as (
    select run_id, structure_id, auc as macro_auc
    from main.task_auc
    where task_kind = 'structure'
),

runs as (
    select run_id, stage from main.runs
),

structures as (
    select structure_id, level from main.structures
),

recall as (
    select
        run_id,
        structure_id,
        truth,
        avg(case when predicted = truth then 1.0 else 0.0 end) as recall,
        avg(case when prior_predicted = truth then 1.0 else 0.0 end) as prior_recall
    from class_outcomes
    group by all
),

per_structure as (
    select
        run_id,
        structure_id,
        any_value(target) as target,
        count(*) as n_test,
        count(distinct truth) as n_classes,
        avg(case when predicted = truth then 1.0 else 0.0 end) as accuracy,
        sum((truth_grade - predicted_grade) ^ 2) as obs,
        sum(truth_grade ^ 2) + sum(predicted_grade ^ 2)
            - 2.0 * sum(truth_grade) * sum(predicted_grade) / count(*) as expected,
        avg(abs(truth_grade - predicted_grade)) as mae,
        avg(case when prior_predicted = truth then 1.0 else 0.0 end) as accuracy_prior,
        sum((truth_grade - prior_predicted_grade) ^ 2) as obs_prior,
        sum(truth_grade ^ 2) + sum(prior_predicted_grade ^ 2)
            - 2.0 * sum(truth_grade) * sum(prior_predicted_grade) / count(*) as expected_prior,
        count(prior_predicted) as n_prior
    from class_outcomes
    group by all
),

balanced as (
    select run_id, structure_id, avg(recall) as balanced_accuracy,
           avg(prior_recall) as balanced_accuracy_prior
    from recall
    group by all
),

final as (
    select
        p.run_id,
        p.structure_id,
        s.level,
        r.stage,
        p.target,
        p.n_test,
        p.n_classes,
        case when p.n_classes >= 2 then coalesce(b.macro_auc, c.macro_auc) end as macro_auc,
        p.accuracy,
        q.balanced_accuracy,
        case when p.target <> 'pattern' and p.expected > 0
            then 1.0 - p.obs / p.expected end as kappa,
        case when p.target <> 'pattern' then p.mae end as mae,
        case when p.n_prior > 0 then p.accuracy_prior end as accuracy_prior,
        case when p.n_prior > 0 then q.balanced_accuracy_prior end as balanced_accuracy_prior,
        case when p.n_prior > 0 and p.target <> 'pattern' and p.expected_prior > 0
            then 1.0 - p.obs_prior / p.expected_prior end as kappa_prior
    from per_structure p
    join runs r using (run_id)
    join balanced q using (run_id, structure_id)
    left join structures s using (structure_id)
    left join binary_auc b using (run_id, structure_id)
    left join class_auc c using (run_id, structure_id)
)

select * from final
