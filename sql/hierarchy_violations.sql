-- hierarchy_violations: predicted annotations that break the ontology, before and after
-- `annotate --consistent`.
-- Grain: one row per run x stage of predicted_annotations.
-- Inputs: predicted_annotations, experiments, structure_ancestors. A violation is an
-- (experiment, structure, ancestor) triple, both predicted, where the structure is more
-- probable than its ancestor (probability) or called while the ancestor is not (call). *_before read raw_probability / raw_called, *_after the stored
-- probability / called (equal unless is_consistent).
create or replace view hierarchy_violations as
with pairs as (
    select structure_id, ancestor_id from main.structure_ancestors where depth > 0
),

predicted as (
    select p.*, e.stage
    from main.predicted_annotations p
    join main.experiments e using (experiment_id)
),

final as (
    select
        d.run_id,
        d.stage,
        bool_and(d.is_consistent) as is_consistent,
        count(*) as n_pairs,
        count(*) filter (where d.raw_probability > a.raw_probability)
            as n_probability_violations_before,
        count(*) filter (where d.probability > a.probability)
            as n_probability_violations_after,
        count(*) filter (where d.raw_called and not a.raw_called) as n_call_violations_before,
        count(*) filter (where d.called and not a.called) as n_call_violations_after
    from predicted d
    join pairs x on x.structure_id = d.structure_id
    join predicted a
        on a.run_id = d.run_id
        and a.experiment_id = d.experiment_id
        and a.structure_id = x.ancestor_id
    group by d.run_id, d.stage
)

select * from final
