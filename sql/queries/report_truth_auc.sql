-- report_truth_auc: the selected runs' annotations of never-annotated stages scored against the withheld truth, per level and over all structures
-- Grain: one row per run x stage x level, plus one row per run x stage with level NULL (all
-- structures: mean AUC over every structure with an AUC, accuracy over every call).
-- Inputs: annotation_truth_auc, truth_structure_auc, selected_runs.
-- Optional filter: `set variable report_runs = [1, 2]`.
with selected as (
    select run_id from main.selected_runs
),

per_level as (
    select a.*
    from main.annotation_truth_auc a
    join selected using (run_id)
),

feature_sets as (
    select distinct run_id, feature_set from per_level
),

overall as (
    select
        a.run_id,
        a.stage,
        null::integer as level,
        any_value(f.feature_set) as feature_set,
        count(a.auc) as n_structures,
        count(*) - count(a.auc) as n_excluded,
        avg(a.auc) as mean_auc,
        stddev_samp(a.auc) as std_auc,
        sum(a.n_calls)::bigint as n_calls,
        sum(a.accuracy * a.n_calls) / sum(a.n_calls) as accuracy,
        null::double as balanced_accuracy
    from main.truth_structure_auc a
    join feature_sets f using (run_id)
    group by a.run_id, a.stage
),

final as (
    select * from per_level
    union all by name
    select * from overall
)

select * from final
order by run_id, (select stage_order from main.stages s where s.stage = final.stage),
    level nulls last
