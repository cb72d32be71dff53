-- report_gene_task_auc: test-set AUC per run x gene-level task (gene_task_auc), finished runs.
-- Grain: one row per run x gene task.
-- Inputs: gene_task_auc, selected_runs.
-- param runs: run ids, e.g. [1, 2] (optional: every finished run)
with runs as (
    select run_id
    from main.selected_runs  -- finished runs, chosen by $runs
    where ($runs is null and is_default) or list_contains($runs, run_id)
),

gene_task_auc as (
    select * from main.gene_task_auc
),

final as (
    select run_id, stage, feature_set, label_mode, task, n_pos, n_neg, auc
    from gene_task_auc
    join runs using (run_id)
)

select * from final
order by run_id, task
