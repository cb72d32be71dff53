-- target_rollup: the level and stage rollups of target_metrics (like level_auc and stage_auc,
-- for every target), in one place.
-- Grain: one row per run x ontology level (is_stage false) plus one row per run with every
-- structure pooled (is_stage true, level NULL).
-- Inputs: target_metrics, run_info (the run's feature set and split), run_targets (model; 'binary' for
-- detected runs). mean_* / std_*: mean and sample std across the level's structures (the
-- paper's std; levels pooled in the stage row); n_structures counts structures with a macro
-- AUC, n_excluded those without (a test set with one class).
create or replace view target_rollup as
with target_metrics as (
    select * from main.target_metrics
),

runs as (
    select run_id, feature_set, split_method, repeat_index, label_mode, levels
    from main.run_info
),

models as (
    select run_id, model from main.run_targets
),

final as (
    select
        m.run_id,
        m.stage,
        m.level,
        grouping(m.level) = 1 as is_stage,
        m.target,
        coalesce(t.model, 'binary') as model,
        r.feature_set,
        r.split_method,
        r.repeat_index,
        r.label_mode,
        r.levels,
        count(m.macro_auc) as n_structures,
        count(*) - count(m.macro_auc) as n_excluded,
        avg(m.macro_auc) as mean_macro_auc,
        stddev_samp(m.macro_auc) as std_macro_auc,
        avg(m.accuracy) as mean_accuracy,
        avg(m.balanced_accuracy) as mean_balanced_accuracy,
        avg(m.kappa) as mean_kappa,
        stddev_samp(m.kappa) as std_kappa,
        avg(m.mae) as mean_mae,
        avg(m.balanced_accuracy_prior) as mean_balanced_accuracy_prior,
        avg(m.kappa_prior) as mean_kappa_prior
    from target_metrics m
    join runs r using (run_id)
    left join models t using (run_id)
    group by grouping sets (
        (m.run_id, m.stage, m.level, m.target, t.model, r.feature_set, r.split_method,
         r.repeat_index, r.label_mode, r.levels),
        (m.run_id, m.stage, m.target, t.model, r.feature_set, r.split_method, r.repeat_index,
         r.label_mode, r.levels)
    )
)

select * from final
