-- transfer_auc: cross-stage AUC beside within-stage AUC, per run x ontology level.
-- Grain: one row per finished run trained on other stages than (or more stages than) the one
-- it is evaluated on (holdout 'split', true labels) x level.
-- Inputs: level_auc, runs, run_training (runs without a row are within-stage split runs).
-- scheme: 'transfer' (the evaluated stage is not a training stage: leave-one-stage-out) or
-- 'joint' (other stages added to the stage's own training side). within_auc: the mean over
-- within-stage runs of the same feature set on the same split (so the very same test
-- experiments) of their level mean AUC; auc_drop = within_auc - transfer_auc.
create or replace view transfer_auc as
with level_auc as (
    select run_id, stage, level, feature_set, label_mode, n_structures, mean_auc
    from main.level_auc
),

training as (
    select
        r.run_id,
        r.split_id,
        coalesce(t.train_stages, [r.stage]) as train_stages,
        coalesce(t.holdout, 'split') as holdout,
        coalesce(t.feature_norm, 'pooled') as feature_norm
    from main.runs r
    left join main.run_training t using (run_id)
    where r.status = 'finished'
),

classified as (
    select
        l.*,
        t.split_id,
        t.train_stages,
        t.feature_norm,
        case
            when t.train_stages = [l.stage] then 'within'
            when list_contains(t.train_stages, l.stage) then 'joint'
            else 'transfer'
        end as scheme
    from level_auc l
    join training t using (run_id)
    where t.holdout = 'split' and l.label_mode = 'true'
),

within as (
    select
        stage,
        level,
        feature_set,
        split_id,
        avg(mean_auc) as within_auc,
        count(*) as n_within_runs
    from classified
    where scheme = 'within'
    group by all
),

final as (
    select
        c.run_id,
        c.stage,
        c.level,
        c.feature_set,
        c.scheme,
        array_to_string(c.train_stages, ',') as train_stages,
        c.feature_norm,
        c.n_structures,
        c.mean_auc as transfer_auc,
        w.within_auc,
        w.within_auc - c.mean_auc as auc_drop,
        w.n_within_runs
    from classified c
    left join within w using (stage, level, feature_set, split_id)
    where c.scheme <> 'within'
)

select * from final
