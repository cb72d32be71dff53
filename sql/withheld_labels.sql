-- withheld_labels: the binary truth (detected vs not) of the withheld annotations.
-- Grain: one row per experiment x structure with a known withheld call.
-- Inputs: withheld_annotations (the truth of stages the experts never annotated; only the
-- evaluation views read it, never fit or annotate). The same rule as the labels view:
-- detected = any of pattern / intensity / density is known and not 'undetected'.
create or replace view withheld_labels as
with withheld as (
    select * from main.withheld_annotations
),

final as (
    select
        experiment_id,
        structure_id,
        (coalesce(pattern <> 'undetected', false)
            or coalesce(intensity <> 'undetected', false)
            or coalesce(density <> 'undetected', false)) as detected
    from withheld
    where pattern is not null or intensity is not null or density is not null
)

select * from final
