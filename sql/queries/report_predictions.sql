-- report_predictions: test-set scores with the truth and the names of gene and structure.
-- The input of the ROC curves and of the manual-vs-predicted figure.
-- Grain: one row per run x structure x test experiment (finished runs only).
-- Inputs: predictions, selected_runs, experiments, genes, structures.
-- param runs: run ids, e.g. [1, 2] (optional: every finished run)
-- param level: ontology level, e.g. 5 (optional: every level)
-- param structures: structure ids, e.g. [15565, 15566] (optional: every structure)
with runs as (
    select run_id, stage
    from main.selected_runs  -- finished runs, chosen by $runs
    where ($runs is null and is_default) or list_contains($runs, run_id)
),

predictions as (
    select * from main.predictions
    where $structures is null
        or list_contains($structures, structure_id)
),

structures as (
    select structure_id, acronym, level, graph_order from main.structures
    where $level is null or level = $level
),

experiments as (
    select experiment_id, gene_id from main.experiments
),

genes as (
    select gene_id, acronym as gene from main.genes
),

final as (
    select
        p.run_id,
        r.stage,
        p.structure_id,
        s.acronym,
        s.level,
        s.graph_order,
        p.experiment_id,
        g.gene,
        p.score,
        p.detected
    from predictions p
    join runs r using (run_id)
    join structures s using (structure_id)
    left join experiments e using (experiment_id)
    left join genes g using (gene_id)
)

select * from final
order by run_id, graph_order, structure_id, experiment_id
