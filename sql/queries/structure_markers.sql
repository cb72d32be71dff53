-- structure_markers: the genes most confidently expressed in a structure at a stage
-- param structure: the structure's acronym (or its id)
-- param stage: the stage (e.g. P4)
-- param limit: how many genes at most (optional: 20)
-- Grain: one row per gene with a predicted annotation of the structure or one of its
-- descendants at the stage, from the latest run that annotated the stage. probability is
-- the highest over the structure and its descendants (expressed anywhere in it) and
-- where_acronym names the one that has it; called says whether any of them was called; n_called
-- counts them; expert_detected is the experts' call of the structure itself (labels; NULL
-- when not annotated); rank orders them: probability (highest first), then gene.
with recursive target as (
    select structure_id
    from main.structures
    where acronym = $structure or cast(structure_id as varchar) = $structure
),

subtree as (
    select structure_id from target
    union all
    select s.structure_id
    from main.structures s
    join subtree t on s.parent_id = t.structure_id
),

stage_experiments as (
    select experiment_id, gene_id from main.experiments where stage = $stage
),

latest_run as (
    select max(p.run_id) as run_id
    from main.predicted_annotations p
    where p.experiment_id in (select experiment_id from stage_experiments)
),

predicted as (
    select p.experiment_id, p.structure_id, p.probability, p.called
    from main.predicted_annotations p
    where p.run_id = (select run_id from latest_run)
        and p.structure_id in (select structure_id from subtree)
        and p.experiment_id in (select experiment_id from stage_experiments)
),

per_gene as (
    select
        experiment_id,
        max(probability) as probability,
        arg_max(structure_id, probability) as where_id,
        bool_or(called) as called,
        count(*) filter (where called) as n_called
    from predicted
    group by experiment_id
),

ranked as (
    select
        g.acronym as gene,
        p.experiment_id,
        (select run_id from latest_run) as run_id,
        p.probability,
        s.acronym as where_acronym,
        p.called,
        p.n_called,
        l.detected as expert_detected,
        row_number() over (order by p.probability desc, g.acronym, p.experiment_id) as rank
    from per_gene p
    join stage_experiments e using (experiment_id)
    join main.genes g using (gene_id)
    join main.structures s on s.structure_id = p.where_id
    left join main.labels l
        on l.experiment_id = p.experiment_id
        and l.structure_id = (select structure_id from target)
),

final as (
    select * from ranked where rank <= coalesce($limit, 20)
)

select * from final
order by rank
