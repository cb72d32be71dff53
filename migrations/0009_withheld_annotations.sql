-- 0009_withheld_annotations: the truth of stages the experts never annotated.
-- One row per experiment x structure, the columns of `annotations` plus `source`. A source
-- that knows the calls of an unannotated stage (the synthetic atlas at P4, P14, P28) puts
-- them here instead of in `annotations`, so that fit and annotate, which read `annotations`
-- (through the `labels` view) only, never see them; the view annotation_truth_auc scores
-- predicted_annotations against them.
create table withheld_annotations (
    experiment_id bigint not null,
    structure_id  bigint not null,
    pattern   varchar check (pattern   in ('undetected', 'full', 'regional', 'gradient')),
    intensity varchar check (intensity in ('undetected', 'low', 'medium', 'high')),
    density   varchar check (density   in ('undetected', 'low', 'medium', 'high')),
    source    varchar not null,             -- who knows the truth, e.g. 'synthetic:paper:seed0'
    primary key (experiment_id, structure_id)
);
