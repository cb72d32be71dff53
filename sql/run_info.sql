-- run_info: every run with its feature set and split named (a staging view: joins, no logic).
-- Grain: one row per run.
-- Inputs: runs, feature_sets, split_defs. The one place the runs -> feature_sets ->
-- split_defs join is written; the views that need a run's names select from here.
create or replace view run_info as
with runs as (
    select * from main.runs
),

feature_sets as (
    select feature_set_id, name as feature_set, extractor, dim from main.feature_sets
),

split_defs as (
    select split_id, method as split_method, seed as split_seed, repeat_index
    from main.split_defs
),

final as (
    select
        r.run_id,
        r.stage,
        r.feature_set_id,
        f.feature_set,
        f.extractor,
        f.dim,
        r.label_mode,
        r.tasks,
        r.levels,
        r.split_id,
        d.split_method,
        d.split_seed,
        d.repeat_index,
        r.status,
        r.started_at,
        r.finished_at
    from runs r
    left join feature_sets f using (feature_set_id)
    left join split_defs d using (split_id)
)

select * from final
