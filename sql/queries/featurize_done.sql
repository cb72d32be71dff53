-- featurize_done: which experiments a set of feature sets already holds,
-- one row per (feature set, experiment). Inputs: $feature_set_ids (integer[]).
select feature_set_id, experiment_id
from experiment_features
where list_contains($feature_set_ids, feature_set_id)
