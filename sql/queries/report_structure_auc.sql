-- report_structure_auc: structure_auc with the names a reader needs.
-- Grain: one row per run x structure with predictions (finished runs only).
-- Inputs: structure_auc (names included), selected_runs, structures (graph order).
-- param runs: run ids, e.g. [1, 2] (optional: every finished run)
-- param level: ontology level, e.g. 5 (optional: every level)
with runs as (
    select run_id, label_mode
    from main.selected_runs  -- finished runs, chosen by $runs
    where ($runs is null and is_default) or list_contains($runs, run_id)
),

structure_auc as (
    select * from main.structure_auc
),

structures as (
    select structure_id, graph_order from main.structures
),

final as (
    select
        a.run_id,
        a.stage,
        a.level,
        a.feature_set,
        r.label_mode,
        a.structure_id,
        a.acronym,
        a.structure_name,
        s.graph_order,
        a.n_pos,
        a.n_neg,
        a.auc
    from structure_auc a
    join runs r using (run_id)
    left join structures s using (structure_id)
    where $level is null or a.level = $level
)

select * from final
order by run_id, level, graph_order, structure_id
