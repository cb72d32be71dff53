-- table1_overall: the bottom line of Table 1, one number per feature set and split method.
-- Grain: one row per feature set x label mode x split method x levels asked.
-- Inputs: the table macro all_stages_auc_over of sql/all_stages_auc.sql (the one definition
-- of the all-stages number) over the chosen runs: a stage's number is the mean AUC over all
-- its structures (repeats of a stage averaged first); overall_mean / overall_std are the
-- mean and the sample std ACROSS STAGES of those stage numbers (std NULL with a single
-- stage). Split methods are never mixed.
-- param runs: run ids, e.g. [1, 2] (optional: every finished run)
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
from main.all_stages_auc_over($runs)
order by label_mode desc, overall_mean desc nulls last, feature_set, split_method
