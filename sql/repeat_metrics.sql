-- repeat_metrics: rollups over repeated splits (`fit --repeats N`), mean +- 95 % interval.
-- Grain: one row per stage x level x target x model x feature set x split method x label mode
-- x levels asked; is_stage = the stage row (all structures pooled, target_stage_metrics).
-- Inputs: target_rollup, selected_runs, t_quantiles.
-- Each repeat's number is its across-structure mean (the paper's); the interval is
-- mean +- t(0.975, n - 1) * sd / sqrt(n) over the n repeats (Student t, exact to 6 digits up
-- to 200 repeats, normal beyond); NULL with one repeat. Methods are never mixed.
create or replace view repeat_metrics as
with runs as (
    select run_id from main.selected_runs where is_default
),

per_run as (
    select * from main.target_rollup
),

cells as (
    select
        p.stage,
        p.level,
        p.is_stage,
        p.target,
        p.model,
        p.feature_set,
        p.split_method,
        p.label_mode,
        p.levels,
        count(*) as n_repeats,
        string_agg(p.run_id::varchar, ',' order by p.run_id) as run_ids,
        avg(p.mean_macro_auc) as macro_auc,
        stddev_samp(p.mean_macro_auc) as sd_macro_auc,
        avg(p.mean_kappa) as kappa,
        stddev_samp(p.mean_kappa) as sd_kappa,
        avg(p.mean_balanced_accuracy) as balanced_accuracy
    from per_run p
    join runs using (run_id)
    group by all
),

final as (
    select
        c.*,
        coalesce(t.q975, 1.959964) * c.sd_macro_auc / sqrt(c.n_repeats) as ci95_macro_auc,
        coalesce(t.q975, 1.959964) * c.sd_kappa / sqrt(c.n_repeats) as ci95_kappa
    from cells c
    left join main.t_quantiles t on t.df = c.n_repeats - 1
)

select * from final
