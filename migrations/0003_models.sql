-- 0003_models: fitted classifiers that outlive their run, and the annotations they predict.
--
-- run_training: how a run's models were trained (one row per run that stored models).
--   train_stages  the stages whose annotated experiments trained the models (the run's
--                 evaluated stage is runs.stage; they differ for cross-stage transfer runs)
--   holdout       'split' (train side of the stage's split; predictions = its test side) or
--                 'none' (production: every annotated experiment; predictions = out-of-fold)
--   feature_norm  'pooled': weights apply to the raw vectors (the trainer's standardisation
--                 folded in); 'stage': weights apply to vectors z-scored with the mean and
--                 std of their own stage (over all its experiments with a vector)
--   n_folds       cross-fitting folds of the out-of-fold scores (calibration, thresholds)
create table run_training (
    run_id        integer primary key,
    train_stages  varchar[] not null,
    holdout       varchar not null check (holdout in ('split', 'none')),
    feature_norm  varchar not null check (feature_norm in ('pooled', 'stage')),
    n_folds       integer not null,
    n_train       integer not null
);

-- models: one fitted L2 logistic regression per run x task.
-- score = vec . weights + intercept (vec z-scored per stage first when feature_norm = 'stage').
-- probability = 1 / (1 + exp(-(platt_a * score + platt_b)))  (Platt, on out-of-fold scores)
-- called = score >= threshold (threshold chosen on out-of-fold scores: max F1)
create table models (
    run_id       integer not null,
    task_kind    varchar not null check (task_kind in ('structure', 'gene')),
    task         varchar not null,          -- structure id as text, or the gene task name
    structure_id bigint,                    -- structure tasks: the structure
    c            double not null,
    intercept    double not null,
    weights      float[] not null,          -- one per feature of the run's feature set
    n_pos        integer not null,          -- training positives / negatives
    n_neg        integer not null,
    platt_a      double not null,
    platt_b      double not null,
    threshold    double not null,
    primary key (run_id, task_kind, task)
);

-- predictions gain a subset: 'test' (held out by the split, or a stage the run did not
-- train on) or 'oof' (cross-fitted out-of-fold scores of training experiments).
alter table predictions add column subset varchar not null default 'test';

-- predicted_annotations: a run's models applied to every experiment of a stage with a vector.
-- Key (run_id, experiment_id, structure_id) is kept by `annotate` replacing a run x stage in
-- one transaction; it is not declared, because an index makes that replace ~20x slower.
-- raw_probability / raw_called: before hierarchy consistency (equal to probability / called
-- unless is_consistent).
create table predicted_annotations (
    run_id          integer not null,
    experiment_id   bigint not null,
    structure_id    bigint not null,
    score           double not null,
    probability     double not null check (probability >= 0 and probability <= 1),
    called          boolean not null,
    raw_probability double not null,
    raw_called      boolean not null,
    is_consistent   boolean not null
);
