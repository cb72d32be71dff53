-- allen_stage_sections: the Allen sections of one stage, to be placed by Allen's alignments.
-- Grain: one row per section of an experiment ingested from the Allen API (source 'allen')
-- at the stage, with its stored image size; in experiment then section order.
-- param stage: the stage, e.g. 'E13.5'
select
    s.experiment_id,
    s.section_id,
    s.width,
    s.height
from sections s
join experiments e using (experiment_id)
where e.stage = $stage and e.source = 'allen'
order by s.experiment_id, s.section_id
