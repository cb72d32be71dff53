-- gene_profile: a gene's expert calls and predicted calls across stages and structures
-- param gene: the gene's acronym (e.g. Prox1)
-- Grain: one row per experiment x structure x predicting run (run_id NULL: an expert call
-- with no prediction), for every experiment of the gene. expert_detected is the labels view
-- (NULL: the experts did not annotate it, e.g. P4, P14, P28); probability and called come
-- from predicted_annotations (NULL: no run annotated the experiment). Ordered by stage
-- (developmental: stage_order), structure (graph_order), run.
with gene as (
    select gene_id, acronym as gene from main.genes where acronym = $gene
),

experiments as (
    select e.experiment_id, e.stage, g.gene
    from main.experiments e
    join gene g using (gene_id)
),

expert as (
    select l.experiment_id, l.structure_id, l.detected, a.pattern, a.intensity, a.density
    from main.labels l
    join main.annotations a using (experiment_id, structure_id)
    where l.experiment_id in (select experiment_id from experiments)
),

predicted as (
    select run_id, experiment_id, structure_id, probability, called
    from main.predicted_annotations
    where experiment_id in (select experiment_id from experiments)
),

calls as (
    select
        coalesce(x.experiment_id, p.experiment_id) as experiment_id,
        coalesce(x.structure_id, p.structure_id) as structure_id,
        x.detected as expert_detected,
        x.pattern as expert_pattern,
        x.intensity as expert_intensity,
        x.density as expert_density,
        p.run_id,
        p.probability,
        p.called
    from expert x
    full outer join predicted p using (experiment_id, structure_id)
),

final as (
    select
        e.gene,
        e.stage,
        c.experiment_id,
        c.structure_id,
        s.acronym,
        s.level,
        c.expert_detected,
        c.expert_pattern,
        c.expert_intensity,
        c.expert_density,
        c.run_id,
        c.probability,
        c.called,
        st.stage_order,
        s.graph_order
    from calls c
    join experiments e using (experiment_id)
    join main.structures s using (structure_id)
    left join main.stages st using (stage)
)

select * from final
order by stage_order, stage, experiment_id, graph_order, structure_id, run_id nulls first
