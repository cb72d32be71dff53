-- featurize_sections: the sections of a list of experiments, one row per section.
-- In experiment then section-number order (the order features are computed and pooled in).
-- param experiment_ids: experiment ids, e.g. [100, 101]
select
    s.experiment_id,
    s.section_id,
    s.section_number,
    s.image_path,
    s.width,
    s.height,
    s.position
from sections s
where list_contains($experiment_ids, s.experiment_id)
order by s.experiment_id, s.section_number
