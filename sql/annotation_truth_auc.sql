-- annotation_truth_auc: a run's annotations of a never-annotated stage scored against the
-- withheld truth, per ontology level (the analogue of level_auc for predicted_annotations).
-- Grain: one row per run x stage x level, plus one per run x stage with level NULL (all
-- structures of the stage together).
-- Inputs: truth_structure_auc, run_info (the run's feature set). n_structures counts structures with an
-- AUC, n_excluded those whose truth lacks a class; mean_auc / std_auc over structures;
-- accuracy is the share of experiment x structure calls (predicted_annotations.called) that
-- agree with the truth, over all the level's structures (balanced_accuracy: the mean of
-- sensitivity and specificity over those calls).
create or replace view annotation_truth_auc as
with structure_auc as (
    select * from main.truth_structure_auc
),

runs as (
    select run_id, feature_set from main.run_info
),

final as (
    select
        a.run_id,
        a.stage,
        a.level,
        r.feature_set,
        count(a.auc) as n_structures,
        count(*) - count(a.auc) as n_excluded,
        avg(a.auc) as mean_auc,
        stddev_samp(a.auc) as std_auc,
        sum(a.n_calls)::bigint as n_calls,
        sum(a.accuracy * a.n_calls) / sum(a.n_calls) as accuracy,
        (sum(a.sensitivity * a.n_pos) / nullif(sum(a.n_pos) filter (where a.sensitivity is not null), 0)
            + sum(a.specificity * a.n_neg)
            / nullif(sum(a.n_neg) filter (where a.specificity is not null), 0)) / 2
            as balanced_accuracy
    from structure_auc a
    join runs r using (run_id)
    group by grouping sets ((a.run_id, a.stage, a.level, r.feature_set),
                            (a.run_id, a.stage, r.feature_set))
)

select * from final
