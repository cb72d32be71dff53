-- featurize_done: which experiments a set of feature sets already holds
-- Grain: one row per (feature set, experiment). Inputs: experiment_features.
-- param feature_set_ids: feature set ids, e.g. [1, 2]
select feature_set_id, experiment_id
from experiment_features
where list_contains($feature_set_ids, feature_set_id)
order by feature_set_id, experiment_id
