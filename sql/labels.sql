-- labels: the binary task of the paper, detected vs not.
-- Grain: one row per experiment x structure with a known annotation.
-- Inputs: annotations. The rule is the macro detected_call(pattern, intensity, density),
-- defined here and used by withheld_labels too: detected = any of the three calls is known
-- and not 'undetected'; NULL when all three are unknown (NULL): such a row has no label and
-- is left out.
create or replace macro detected_call(pattern, intensity, density) as
    case
        when pattern is null and intensity is null and density is null then null
        else coalesce(pattern <> 'undetected', false)
            or coalesce(intensity <> 'undetected', false)
            or coalesce(density <> 'undetected', false)
    end;

create or replace view labels as
with annotations as (
    select * from main.annotations
),

final as (
    select
        experiment_id,
        structure_id,
        detected_call(pattern, intensity, density) as detected
    from annotations
    where detected_call(pattern, intensity, density) is not null
)

select * from final
