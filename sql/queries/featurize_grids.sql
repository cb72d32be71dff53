-- featurize_grids: the expression grids of a list of experiments, one row per experiment.
-- param experiment_ids: experiment ids, e.g. [100, 101]
select g.experiment_id, g.nx, g.ny, g.nz, g.energy
from expression_grids g
where list_contains($experiment_ids, g.experiment_id)
order by g.experiment_id
