-- fit_stage_experiments: the experiments of one stage, with their gene (the split unit).
-- Grain: one row per experiment.
-- param stage: the stage, e.g. E13.5
select experiment_id, gene_id
from experiments
where stage = $stage
order by experiment_id
