-- report_repeat_metrics: cells with repeated splits, mean +- 95 % interval across repeats.
-- Grain: one row per stage x level (NULL: all structures) x target x model x feature set x split
-- method x label mode with at least two repeats. Inputs: repeat_metrics (the default runs);
-- a cell is shown when all its runs are among $runs.
-- param runs: run ids, e.g. [1, 2] (optional: every finished run)
select
    stage,
    level,
    target,
    model,
    feature_set,
    split_method,
    label_mode,
    n_repeats,
    macro_auc,
    ci95_macro_auc,
    kappa,
    ci95_kappa,
    run_ids
from repeat_metrics
where n_repeats >= 2
    and ($runs is null
        or list_has_all($runs, list_transform(string_split(run_ids, ','), lambda x: x::integer)))
order by stage, target, feature_set, split_method, level nulls first
