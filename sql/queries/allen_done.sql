-- allen_done: which experiments already have sections, annotations or an expression grid
-- (so `ishwh ingest allen` can resume without re-downloading or re-decoding them).
-- Grain: one row per part x experiment.
-- Inputs: sections, annotations, expression_grids.
with section_parts as (
    select distinct 'sections' as part, experiment_id from sections
),

annotation_parts as (
    select distinct 'annotations' as part, experiment_id from annotations
),

grid_parts as (
    select 'grids' as part, experiment_id from expression_grids
),

final as (
    select * from section_parts
    union all
    select * from annotation_parts
    union all
    select * from grid_parts
)

select * from final
order by part, experiment_id
