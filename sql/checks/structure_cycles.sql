-- structure_cycles: structures that are their own ancestor (the parents form a cycle).
-- Grain: one row per structure on a cycle. Zero rows = pass.
-- Inputs: structure_ancestors (which stops walking at depth 64).
select distinct structure_id
from main.structure_ancestors
where ancestor_id = structure_id and depth > 0
order by structure_id
