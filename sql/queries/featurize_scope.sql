-- featurize_scope: the experiments featurize works on, one row per experiment.
-- Only experiments with sections count.
-- param stages: the stages in scope, e.g. ["E13.5", "P4"]
-- Ordered by experiment id: chunks of this list are the unit of work and of commit.
with counted as (
    select experiment_id, count(*) as n_sections
    from sections
    group by experiment_id
),

final as (
    select e.experiment_id, e.stage, c.n_sections
    from experiments e
    join counted c using (experiment_id)
    where list_contains($stages, e.stage)
)

select * from final order by experiment_id
