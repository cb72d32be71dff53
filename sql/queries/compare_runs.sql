-- compare_runs: the finished runs `ishwh compare` can pair (those with structure metrics).
-- Grain: one row per finished run. Two runs pair when stage, split_id and target agree and
-- feature set or model differ.
select
    r.run_id,
    r.stage,
    r.split_id,
    coalesce(t.target, 'detected') as target,
    coalesce(t.model, 'binary') as model,
    f.name as feature_set,
    r.label_mode
from runs r
left join run_targets t using (run_id)
left join feature_sets f using (feature_set_id)
where r.status = 'finished'
    and r.run_id in (select run_id from target_metrics)
order by r.run_id
