-- featurize_grids: the expression grids of a list of experiments, one row per experiment.
-- Inputs: $experiment_ids (bigint[]).
select g.experiment_id, g.nx, g.ny, g.nz, g.energy
from expression_grids g
where list_contains($experiment_ids, g.experiment_id)
order by g.experiment_id
