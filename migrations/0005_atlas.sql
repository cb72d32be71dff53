-- 0005_atlas: reference atlases, section-to-atlas registration, structure-feature layouts.
-- See docs/atlas.md. feature_sets is re-created (create -> copy -> swap) because its
-- extractor CHECK must admit 'atlas'; ids, names and the id sequence are kept.

-- One reference annotation volume per stage. Axes (the contract, as in Allen's annotation
-- files): axis 0 anterior->posterior, axis 1 superior->inferior, axis 2 lateral->medial.
-- The volume is stored in the warehouse (one file holds everything, and it is checked against
-- the ontology in the same transaction): annotation = np.savez_compressed bytes of the int32
-- array (self-describing: shape and dtype travel with it); sha256 = of the raw int32 C-order
-- bytes, so two files with the same voxels are the same reference.
create table reference_atlases (
    stage        varchar primary key,
    nx           integer not null check (nx > 0),   -- axis 0 (anterior -> posterior)
    ny           integer not null check (ny > 0),   -- axis 1 (superior -> inferior)
    nz           integer not null check (nz > 0),   -- axis 2 (lateral -> medial)
    spacing_um   double,
    annotation   blob not null,
    sha256       varchar not null,
    n_labels     integer not null,                  -- distinct non-zero ids
    source       varchar,
    created_at   timestamp not null default current_timestamp
);

-- One row per registered section: the 2-D transform that carries the reference slice
-- annotation[:, :, slice_index].T (rows = axis 1, columns = axis 0) onto the section image.
-- affine = the 2x3 matrix, row-major (a00, a01, a02, a10, a11, a12), in pixels of the
-- full-size section image: image (x, y) = A @ (column, row, 1) of the slice.
-- quality = Dice of the section's tissue mask and the projected reference mask (0..1);
-- ok = quality reached the threshold in params; sections not ok are never used by features.
create table section_alignments (
    section_id   bigint primary key,
    stage        varchar not null,
    slice_index  integer not null,
    affine       double[] not null,
    angle_deg    double,
    scale        double,
    method       varchar not null,
    quality      double not null,
    ok           boolean not null,
    params       json,
    created_at   timestamp not null default current_timestamp
);

-- Structure feature sets (extractor 'atlas') store one vector per experiment: k statistics
-- for each structure, flattened in slot order (vec[slot * k + j]). This table records the
-- order, and per structure how many of the stage's registered sections showed it.
create table feature_set_structures (
    feature_set_id  integer not null,
    structure_id    bigint not null,
    slot            integer not null,
    n_sections_seen integer not null,       -- registered sections where it covered >= min px
    primary key (feature_set_id, structure_id)
);

create table feature_sets_0005 (
    feature_set_id integer primary key default nextval('feature_set_seq'),
    name        varchar not null unique,
    extractor   varchar not null check (extractor in ('cnn', 'bow', 'grid', 'atlas')),
    dim         integer not null check (dim > 0),
    params      json,
    created_at  timestamp not null default current_timestamp,
    finished_at timestamp
);
insert into feature_sets_0005 select * from feature_sets;
drop table feature_sets;
alter table feature_sets_0005 rename to feature_sets;
