-- table1_overall: the bottom line of Table 1, one number per feature set.
-- Grain: one row per feature set x label mode.
-- Inputs: level_auc, runs (finished runs only).
-- overall_mean / overall_std are the mean and sample standard deviation, across every
-- stage x level cell of Table 1, of the cell's mean AUC (the paper's "0.894 +- 0.014" form);
-- cells are first averaged over repeated runs exactly as in the table1 query.
-- Optional filter: `set variable report_runs = [1, 2]` (unset: every finished run).
with runs as (
    select run_id
    from main.runs
    where status = 'finished'
        and (getvariable('report_runs') is null
            or list_contains(getvariable('report_runs'), run_id))
),

level_auc as (
    select * from main.level_auc
),

cells as (
    select stage, level, feature_set, label_mode, avg(mean_auc) as mean_auc
    from level_auc
    join runs using (run_id)
    group by all
),

final as (
    select
        feature_set,
        label_mode,
        count(mean_auc) as n_cells,
        count(distinct stage) as n_stages,
        avg(mean_auc) as overall_mean,
        stddev_samp(mean_auc) as overall_std
    from cells
    group by all
)

select * from final
order by label_mode desc, overall_mean desc nulls last, feature_set
