-- labels: the binary task of the paper, detected vs not.
-- Grain: one row per experiment x structure with a known annotation.
-- Inputs: annotations. detected = any of pattern / intensity / density is known and not
-- 'undetected'; a row whose three calls are all unknown (NULL) has no label and is left out.
create or replace view labels as
with annotations as (
    select * from main.annotations
),

final as (
    select
        experiment_id,
        structure_id,
        (coalesce(pattern <> 'undetected', false)
            or coalesce(intensity <> 'undetected', false)
            or coalesce(density <> 'undetected', false)) as detected
    from annotations
    where pattern is not null or intensity is not null or density is not null
)

select * from final
