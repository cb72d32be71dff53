-- report_predicted_coverage: per stage, how many experiments the experts annotated and how many a run annotated (predicted_annotations)
-- Grain: one row per stage with experiments x run that annotated it (run_id NULL: no run).
-- Inputs: experiments, labels, predicted_annotations, selected_runs, stages, feature_sets.
-- param runs: run ids, e.g. [1, 2] (optional: every run that annotated, production runs included)
with experiments as (
    select experiment_id, stage from main.experiments
),

annotated as (
    select distinct experiment_id from main.labels
),

predicted as (
    select p.run_id, p.experiment_id, count(*) as n_structures,
           count(*) filter (where p.called) as n_called
    from main.predicted_annotations p
    join main.selected_runs r using (run_id)
    where $runs is null or list_contains($runs, run_id)
    group by all
),

per_stage as (
    select
        e.stage,
        count(*) as n_experiments,
        count(a.experiment_id) as n_annotated
    from experiments e
    left join annotated a using (experiment_id)
    group by e.stage
),

per_run as (
    select
        e.stage,
        p.run_id,
        count(*) as n_predicted,
        sum(p.n_called) / sum(p.n_structures) as share_called
    from predicted p
    join experiments e using (experiment_id)
    group by all
),

final as (
    select
        s.stage,
        coalesce(st.is_annotated, false) as is_annotated_stage,
        s.n_experiments,
        s.n_annotated,
        r.run_id,
        f.name as feature_set,
        coalesce(r.n_predicted, 0) as n_predicted,
        r.share_called,
        st.stage_order
    from per_stage s
    left join per_run r using (stage)
    left join main.stages st using (stage)
    left join main.runs ru on ru.run_id = r.run_id
    left join main.feature_sets f on f.feature_set_id = ru.feature_set_id
)

select * from final
order by stage_order, stage, run_id
