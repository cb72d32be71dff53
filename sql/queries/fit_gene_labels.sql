-- fit_gene_labels: gene-level tasks (GO-like terms) of one stage, on every experiment of the gene.
-- Grain: one row per experiment x task.
-- param stage: the stage, e.g. E13.5
select
    e.experiment_id,
    g.task,
    g.label as detected
from gene_labels g
join experiments e using (gene_id)
where e.stage = $stage
order by g.task, e.experiment_id
