-- 0001_init: the whole warehouse schema of the design contract.
-- Tables only; views live in sql/ and are re-created after every migration.
-- Enumerations are checked by the database (CHECK constraints), not only by Python.

create table genes (
    gene_id     bigint primary key,
    acronym     varchar not null unique,
    name        varchar,
    entrez_id   bigint
);

create table structures (
    structure_id bigint primary key,
    acronym      varchar not null,
    name         varchar,
    parent_id    bigint,
    level        integer not null,          -- the paper's ontology level = Allen st_level
    graph_order  integer,
    color_hex    varchar
);

create table experiments (
    experiment_id bigint primary key,
    gene_id       bigint not null,
    stage         varchar not null check (stage in
                    ('E11.5', 'E13.5', 'E15.5', 'E18.5', 'P4', 'P14', 'P28', 'P56')),
    plane         varchar not null default 'sagittal'
                    check (plane in ('sagittal', 'coronal', 'horizontal')),
    source        varchar                   -- 'dir:<path>', 'synthetic:<preset>', 'allen'
);

create table sections (
    section_id     bigint primary key,
    experiment_id  bigint not null,
    section_number integer not null,
    image_path     varchar not null,        -- relative to the warehouse image folder
    width          integer not null check (width > 0),
    height         integer not null check (height > 0),
    position       double check (position is null or (position >= 0 and position <= 1)),
    sha256         varchar,
    unique (experiment_id, section_number)
);

create table annotations (
    experiment_id bigint not null,
    structure_id  bigint not null,
    -- NULL = unknown ("Cannot Annotate" / empty in Allen's data), never read as undetected
    pattern   varchar check (pattern   in ('undetected', 'full', 'regional', 'gradient')),
    intensity varchar check (intensity in ('undetected', 'low', 'medium', 'high')),
    density   varchar check (density   in ('undetected', 'low', 'medium', 'high')),
    primary key (experiment_id, structure_id)
);

-- Gene-level binary tasks (GO-like terms).
create table gene_labels (
    gene_id bigint not null,
    task    varchar not null,
    label   boolean not null,
    primary key (gene_id, task)
);

-- Coarse 3-D expression grid per experiment (Allen grid-level energy; -1 = no data).
create table expression_grids (
    experiment_id bigint primary key,
    nx integer not null, ny integer not null, nz integer not null,
    spacing_um double,
    energy float[] not null                 -- x fastest, length nx*ny*nz
);

create sequence feature_set_seq start 1;
create table feature_sets (
    feature_set_id integer primary key default nextval('feature_set_seq'),
    name        varchar not null unique,    -- <backbone>.<layer>.<pool> | bow... | grid...
    extractor   varchar not null check (extractor in ('cnn', 'bow', 'grid')),
    dim         integer not null check (dim > 0),
    params      json,
    created_at  timestamp not null default current_timestamp,
    finished_at timestamp                   -- NULL while featurize is still filling it
);

create table experiment_features (
    feature_set_id integer not null,
    experiment_id  bigint not null,
    vec            float[] not null,
    primary key (feature_set_id, experiment_id)
);

-- Per-section vectors, kept where a later step needs them (e.g. bag-of-words counts).
create table section_features (
    feature_set_id integer not null,
    section_id     bigint not null,
    vec            float[] not null,
    primary key (feature_set_id, section_id)
);

-- Bag-of-words codebooks: one per feature set, stage and SIFT scale.
create table codebooks (
    feature_set_id integer not null,
    stage          varchar not null,
    scale          integer not null,
    n_words        integer not null,
    centers        float[] not null,        -- n_words x 128, row-major
    inertia        double,
    primary key (feature_set_id, stage, scale)
);

create sequence split_seq start 1;
create table split_defs (
    split_id    integer primary key default nextval('split_seq'),
    stage       varchar not null,
    method      varchar not null check (method in ('paper', 'stratified')),
    seed        integer not null,
    repeat_index integer not null default 0,
    params      json,
    created_at  timestamp not null default current_timestamp,
    unique (stage, method, seed, repeat_index)
);

create table splits (
    split_id      integer not null,
    experiment_id bigint not null,
    subset        varchar not null check (subset in ('train', 'test')),
    primary key (split_id, experiment_id)
);

create sequence run_seq start 1;
create table runs (
    run_id         integer primary key default nextval('run_seq'),
    feature_set_id integer not null,
    stage          varchar not null,
    split_id       integer not null,
    tasks          varchar not null check (tasks in ('structures', 'genes', 'all')),
    levels         varchar,
    label_mode     varchar not null default 'true' check (label_mode in ('true', 'shuffled')),
    params         json,
    fingerprint    varchar not null,        -- hash of everything that defines the run
    status         varchar not null default 'running' check (status in ('running', 'finished')),
    versions       json,
    timings        json,
    started_at     timestamp not null default current_timestamp,
    finished_at    timestamp
);

-- One row per run x task: fitted (with the chosen C) or skipped (with the reason).
create table run_tasks (
    run_id       integer not null,
    task_kind    varchar not null check (task_kind in ('structure', 'gene')),
    task         varchar not null,          -- structure id as text, or the gene task name
    status       varchar not null check (status in ('fitted', 'skipped')),
    reason       varchar,
    c            double,
    n_train_pos  integer,
    n_train_neg  integer,
    primary key (run_id, task_kind, task)
);

create table predictions (
    run_id        integer not null,
    experiment_id bigint not null,
    structure_id  bigint not null,
    score         double not null,
    detected      boolean not null,         -- the truth
    primary key (run_id, structure_id, experiment_id)
);

create table gene_predictions (
    run_id        integer not null,
    experiment_id bigint not null,
    task          varchar not null,
    score         double not null,
    label         boolean not null,
    primary key (run_id, task, experiment_id)
);
