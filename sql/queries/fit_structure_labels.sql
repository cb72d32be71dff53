-- fit_structure_labels: the structure tasks of one stage (labels view x structure level).
-- Grain: one row per experiment x structure with a known label.
-- param stage: the stage, e.g. E13.5
select
    l.experiment_id,
    l.structure_id,
    s.level,
    l.detected
from labels l
join experiments e using (experiment_id)
join structures s using (structure_id)
where e.stage = $stage
order by l.structure_id, l.experiment_id
