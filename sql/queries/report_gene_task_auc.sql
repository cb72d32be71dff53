-- report_gene_task_auc: the gene_task_auc view (test-set AUC per run x gene-level task)
-- restricted to finished runs.
-- Grain: one row per run x gene task.
-- Inputs: gene_task_auc, selected_runs.
-- Optional filter: `set variable report_runs = [1, 2]`.
with runs as (
    select run_id
    from main.selected_runs  -- finished runs, filtered by report_runs
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
