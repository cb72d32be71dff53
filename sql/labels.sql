-- labels: the binary task of the paper, detected vs not.
-- Grain: one row per experiment x structure with a known annotation.
-- Inputs: annotations. The rule lives here, once, for every table of calls: the macro
-- detected_call(pattern, intensity, density): detected = any of the three calls is known and
-- not 'undetected'; NULL when all three are unknown (NULL): such a row has no label and is
-- left out. The table macro labels_of(calls) applies it to a table of calls by name (this
-- view: the expert annotations; the evaluation view of the withheld truth: its table).
create or replace macro detected_call(pattern, intensity, density) as
    case
        when pattern is null and intensity is null and density is null then null
        else coalesce(pattern <> 'undetected', false)
            or coalesce(intensity <> 'undetected', false)
            or coalesce(density <> 'undetected', false)
    end;

create or replace macro labels_of(calls) as table
select
    experiment_id,
    structure_id,
    detected_call(pattern, intensity, density) as detected
from query_table(calls)
where detected_call(pattern, intensity, density) is not null;

create or replace view labels as
select * from labels_of('annotations')
