-- report_truth_auc: the selected runs' annotations of never-annotated stages scored against the withheld truth, per level and over all structures
-- Grain: one row per run x stage x level, plus one per run x stage with level NULL (all
-- structures: mean AUC over every structure with an AUC, accuracy over every call).
-- Inputs: annotation_truth_auc, selected_runs, stages.
-- param runs: run ids, e.g. [1, 2] (optional: every run that annotated, production runs included)
with selected as (
    select run_id from main.selected_runs
    where $runs is null or list_contains($runs, run_id)
),

final as (
    select a.*, s.stage_order
    from main.annotation_truth_auc a
    join selected using (run_id)
    left join main.stages s using (stage)
)

select * from final
order by run_id, stage_order, level nulls last
