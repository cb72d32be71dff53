-- fit_target_labels: the annotation grades of one stage, for multi-class targets.
-- Grain: one row per experiment x structure with an annotation.
-- param stage: the stage, e.g. E13.5
-- pattern / intensity / density are the annotators' calls (NULL = unknown).
select
    a.experiment_id,
    a.structure_id,
    s.level,
    a.pattern,
    a.intensity,
    a.density
from annotations a
join experiments e using (experiment_id)
join structures s using (structure_id)
where e.stage = $stage
order by a.structure_id, a.experiment_id
