-- report_predictions: test-set scores with the truth and the names of gene and structure,
-- the input of the ROC curves and of the manual-vs-predicted figure.
-- Grain: one row per run x structure x test experiment (finished runs only).
-- Inputs: predictions, selected_runs, experiments, genes, structures.
-- Optional filters: `set variable report_runs = [1]`, `set variable report_level = 5`,
-- `set variable report_structures = [15565, 15566]`.
with runs as (
    select run_id, stage
    from main.selected_runs  -- finished runs, filtered by report_runs
),

predictions as (
    select * from main.predictions
    where getvariable('report_structures') is null
        or list_contains(getvariable('report_structures'), structure_id)
),

structures as (
    select structure_id, acronym, level, graph_order from main.structures
    where getvariable('report_level') is null or level = getvariable('report_level')
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
