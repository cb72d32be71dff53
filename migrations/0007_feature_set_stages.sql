-- 0007_feature_set_stages: where a feature set stands at each stage.
-- One row per feature set x stage that featurize finished or skipped; a set is usable by
-- fit at a stage once that stage is 'finished', even if another stage was 'skipped' (the bag
-- of words skips a stage with fewer non-zero SIFT descriptors than its codebook has words).
create table feature_set_stages (
    feature_set_id integer not null,
    stage          varchar not null,
    status         varchar not null check (status in ('finished', 'skipped')),
    reason         varchar,                 -- why it was skipped (NULL when finished)
    recorded_at    timestamp not null default current_timestamp,
    primary key (feature_set_id, stage)
);
