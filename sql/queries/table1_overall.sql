-- table1_overall: the bottom line of Table 1, one number per feature set and split method.
-- Grain: one row per feature set x label mode x split method x levels asked.
-- Inputs: all_stages_auc (the one definition of the all-stages number: mean +- sample std
-- across stages of each stage's mean AUC over all its structures, repeats averaged first).
-- Optional filter: `set variable report_runs = [1, 2]` (unset: every finished run).
select
    feature_set,
    label_mode,
    split_method,
    levels,
    n_stages,
    n_runs,
    stages,
    mean_auc as overall_mean,
    std_auc as overall_std
from all_stages_auc
order by label_mode desc, overall_mean desc nulls last, feature_set, split_method
