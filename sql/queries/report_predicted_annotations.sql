-- report_predicted_annotations: predicted_annotations of the selected runs with the names a reader needs (the report's export)
-- Grain: one row per run x experiment x structure (the contract columns first).
-- Inputs: predicted_annotations, selected_runs, experiments, genes, structures.
-- param runs: run ids, e.g. [1, 2] (optional: every run that annotated, production runs included)
with predicted as (
    select p.*
    from main.predicted_annotations p
    join main.selected_runs r using (run_id)
    where $runs is null or list_contains($runs, run_id)
),

final as (
    select
        p.run_id,
        p.experiment_id,
        p.structure_id,
        p.score,
        p.probability,
        p.called,
        e.stage,
        g.acronym as gene,
        s.acronym as structure,
        s.level
    from predicted p
    join main.experiments e using (experiment_id)
    left join main.genes g using (gene_id)
    left join main.structures s using (structure_id)
)

select * from final
order by run_id, experiment_id, structure_id
