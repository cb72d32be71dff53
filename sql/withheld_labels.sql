-- withheld_labels: the binary truth (detected vs not) of the withheld annotations.
-- Grain: one row per experiment x structure with a known withheld call.
-- Inputs: withheld_annotations (the truth of stages the experts never annotated; only the
-- evaluation views read it, never fit or annotate). The same rule as the labels view: the
-- macro detected_call of sql/labels.sql (NULL = all three calls unknown: left out).
create or replace view withheld_labels as
with withheld as (
    select * from main.withheld_annotations
),

final as (
    select
        experiment_id,
        structure_id,
        detected_call(pattern, intensity, density) as detected
    from withheld
    where detected_call(pattern, intensity, density) is not null
)

select * from final
