-- report_predicted_heatmap: a gene x structure sample of one run's annotations of one stage (the report's heatmap)
-- param run: the run whose predicted_annotations are drawn
-- param stage: the stage (usually one the experts never annotated)
-- param n_genes: how many genes (those with the most called structures)
-- param n_structures: how many structures (the most often called among those genes)
-- Grain: one row per chosen gene x chosen structure, with the probability and the call;
-- gene_rank orders genes (most calls first), graph_order orders structures.
with predicted as (
    select p.experiment_id, p.structure_id, p.probability, p.called, g.acronym as gene
    from main.predicted_annotations p
    join main.experiments e using (experiment_id)
    join main.genes g using (gene_id)
    where p.run_id = $run and e.stage = $stage
),

top_genes as (
    select experiment_id, gene,
           row_number() over (order by count(*) filter (where called) desc, gene) as gene_rank
    from predicted
    group by experiment_id, gene
    qualify gene_rank <= $n_genes
),

top_structures as (
    select p.structure_id
    from predicted p
    join top_genes t using (experiment_id)
    group by p.structure_id
    order by count(*) filter (where p.called) desc, avg(p.probability) desc, p.structure_id
    limit $n_structures
),

final as (
    select
        t.gene,
        t.gene_rank,
        s.acronym as structure,
        s.level,
        s.graph_order,
        p.probability,
        p.called
    from predicted p
    join top_genes t using (experiment_id)
    join top_structures using (structure_id)
    join main.structures s using (structure_id)
)

select * from final
order by gene_rank, graph_order
