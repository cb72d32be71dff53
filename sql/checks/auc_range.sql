-- auc_range: AUCs outside [0, 1], and AUCs where the test set lacks a class.
-- Grain: one row per run x task with a bad AUC. Zero rows = pass.
-- Inputs: task_auc (the AUC formula).
select run_id, task_kind, structure_id, task, n_pos, n_neg, auc
from main.task_auc
where auc < 0 or auc > 1 or isnan(auc)
    or (auc is not null and (n_pos = 0 or n_neg = 0))
    or (auc is null and n_pos > 0 and n_neg > 0)
order by run_id, task_kind, structure_id, task
