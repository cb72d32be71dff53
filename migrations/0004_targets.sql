-- 0004_targets: multi-class targets (pattern, intensity, density), their class scores, and the
-- statistics a reviewer asks for (paired comparisons of feature sets, bootstrap intervals).

-- What a run learned: one row per run made by `fit --target` other than 'detected' (a run
-- without a row here is a binary 'detected' run, whose scores are in predictions).
create table run_targets (
    run_id     integer primary key,
    target     varchar not null check (target in ('detected', 'pattern', 'intensity', 'density')),
    model      varchar not null check (model in ('binary', 'multinomial', 'ordinal')),
    min_class  integer not null             -- training rows a class needs (else merged)
);

-- The rare-class rule, per run x structure x annotated class: which class it was learned as.
-- effective_class = class: kept; another class: merged into it (fewer than min_class training
-- rows); NULL: the structure was skipped (see run_tasks.reason).
create table target_classes (
    run_id          integer not null,
    structure_id    bigint not null,
    class           varchar not null,
    effective_class varchar,
    n_train         integer not null,
    n_test          integer not null,
    primary key (run_id, structure_id, class)
);

-- Test-set class probabilities of multi-class runs: one row per run x experiment x structure x
-- (effective) class; truth is the experiment's effective class.
create table class_predictions (
    run_id        integer not null,
    experiment_id bigint not null,
    structure_id  bigint not null,
    class         varchar not null,
    probability   double not null,
    truth         varchar not null,
    primary key (run_id, structure_id, experiment_id, class)
);

-- Paired comparison of two runs on the same split (per-structure metric differences,
-- Wilcoxon signed-rank test) and bootstrap intervals over structures, computed once by
-- `ishwh compare` (scipy) and stored.
create table run_comparisons (
    run_a          integer not null,
    run_b          integer not null,
    metric         varchar not null,        -- 'macro_auc' (the AUC for 'detected' runs)
    n_structures   integer not null,        -- structures with the metric in both runs
    mean_a         double,
    mean_b         double,
    mean_diff      double,                  -- mean of (a - b) over those structures
    median_diff    double,
    n_a_better     integer,
    n_ties         integer,
    wilcoxon_stat  double,
    p_value        double,                  -- two-sided Wilcoxon signed-rank (scipy, zero_method wilcox)
    boot_lo        double,                  -- 95 % bootstrap interval of mean_diff over structures
    boot_hi        double,
    n_boot         integer,
    seed           integer,
    created_at     timestamp not null default current_timestamp,
    primary key (run_a, run_b, metric)
);

-- Bootstrap over structures of one run's stage mean (resampling structures with replacement).
create table run_bootstrap (
    run_id    integer not null,
    metric    varchar not null,
    n_structures integer not null,
    mean      double,
    boot_lo   double,
    boot_hi   double,
    n_boot    integer not null,
    seed      integer not null,
    primary key (run_id, metric)
);

-- Student t quantiles t(0.975, df) for 95 % intervals over repeats (DuckDB has no t
-- distribution); df above 200 use the normal 1.959964. Computed with scipy.stats.t.ppf.
create table t_quantiles (
    df   integer primary key,
    q975 double not null
);
insert into t_quantiles values
    (1, 12.706205), (2, 4.302653), (3, 3.182446), (4, 2.776445), (5, 2.570582), (6, 2.446912),
    (7, 2.364624), (8, 2.306004), (9, 2.262157), (10, 2.228139), (11, 2.200985), (12, 2.178813),
    (13, 2.160369), (14, 2.144787), (15, 2.131450), (16, 2.119905), (17, 2.109816), (18, 2.100922),
    (19, 2.093024), (20, 2.085963), (21, 2.079614), (22, 2.073873), (23, 2.068658), (24, 2.063899),
    (25, 2.059539), (26, 2.055529), (27, 2.051831), (28, 2.048407), (29, 2.045230), (30, 2.042272),
    (31, 2.039513), (32, 2.036933), (33, 2.034515), (34, 2.032245), (35, 2.030108), (36, 2.028094),
    (37, 2.026192), (38, 2.024394), (39, 2.022691), (40, 2.021075), (41, 2.019541), (42, 2.018082),
    (43, 2.016692), (44, 2.015368), (45, 2.014103), (46, 2.012896), (47, 2.011741), (48, 2.010635),
    (49, 2.009575), (50, 2.008559), (51, 2.007584), (52, 2.006647), (53, 2.005746), (54, 2.004879),
    (55, 2.004045), (56, 2.003241), (57, 2.002465), (58, 2.001717), (59, 2.000995), (60, 2.000298),
    (61, 1.999624), (62, 1.998972), (63, 1.998341), (64, 1.997730), (65, 1.997138), (66, 1.996564),
    (67, 1.996008), (68, 1.995469), (69, 1.994945), (70, 1.994437), (71, 1.993943), (72, 1.993464),
    (73, 1.992997), (74, 1.992543), (75, 1.992102), (76, 1.991673), (77, 1.991254), (78, 1.990847),
    (79, 1.990450), (80, 1.990063), (81, 1.989686), (82, 1.989319), (83, 1.988960), (84, 1.988610),
    (85, 1.988268), (86, 1.987934), (87, 1.987608), (88, 1.987290), (89, 1.986979), (90, 1.986675),
    (91, 1.986377), (92, 1.986086), (93, 1.985802), (94, 1.985523), (95, 1.985251), (96, 1.984984),
    (97, 1.984723), (98, 1.984467), (99, 1.984217), (100, 1.983972), (101, 1.983731), (102, 1.983495),
    (103, 1.983264), (104, 1.983038), (105, 1.982815), (106, 1.982597), (107, 1.982383), (108, 1.982173),
    (109, 1.981967), (110, 1.981765), (111, 1.981567), (112, 1.981372), (113, 1.981180), (114, 1.980992),
    (115, 1.980808), (116, 1.980626), (117, 1.980448), (118, 1.980272), (119, 1.980100), (120, 1.979930),
    (121, 1.979764), (122, 1.979600), (123, 1.979439), (124, 1.979280), (125, 1.979124), (126, 1.978971),
    (127, 1.978820), (128, 1.978671), (129, 1.978524), (130, 1.978380), (131, 1.978239), (132, 1.978099),
    (133, 1.977961), (134, 1.977826), (135, 1.977692), (136, 1.977561), (137, 1.977431), (138, 1.977304),
    (139, 1.977178), (140, 1.977054), (141, 1.976931), (142, 1.976811), (143, 1.976692), (144, 1.976575),
    (145, 1.976460), (146, 1.976346), (147, 1.976233), (148, 1.976122), (149, 1.976013), (150, 1.975905),
    (151, 1.975799), (152, 1.975694), (153, 1.975590), (154, 1.975488), (155, 1.975387), (156, 1.975288),
    (157, 1.975189), (158, 1.975092), (159, 1.974996), (160, 1.974902), (161, 1.974808), (162, 1.974716),
    (163, 1.974625), (164, 1.974535), (165, 1.974446), (166, 1.974358), (167, 1.974271), (168, 1.974185),
    (169, 1.974100), (170, 1.974017), (171, 1.973934), (172, 1.973852), (173, 1.973771), (174, 1.973691),
    (175, 1.973612), (176, 1.973534), (177, 1.973457), (178, 1.973381), (179, 1.973305), (180, 1.973231),
    (181, 1.973157), (182, 1.973084), (183, 1.973012), (184, 1.972941), (185, 1.972870), (186, 1.972800),
    (187, 1.972731), (188, 1.972663), (189, 1.972595), (190, 1.972528), (191, 1.972462), (192, 1.972396),
    (193, 1.972332), (194, 1.972268), (195, 1.972204), (196, 1.972141), (197, 1.972079), (198, 1.972017),
    (199, 1.971957), (200, 1.971896);

-- The classes of every target in order (mirrors ishwh/vocab.py; a test checks): grade is the
-- class's position (0 = undetected), the number that quadratic kappa and the grade error use.
create table target_class_order (
    target varchar not null,
    class  varchar not null,
    grade  integer not null,
    primary key (target, class)
);
insert into target_class_order values
    ('detected', 'undetected', 0), ('detected', 'detected', 1),
    ('pattern', 'undetected', 0), ('pattern', 'full', 1), ('pattern', 'regional', 2),
    ('pattern', 'gradient', 3),
    ('intensity', 'undetected', 0), ('intensity', 'low', 1), ('intensity', 'medium', 2),
    ('intensity', 'high', 3),
    ('density', 'undetected', 0), ('density', 'low', 1), ('density', 'medium', 2),
    ('density', 'high', 3);
