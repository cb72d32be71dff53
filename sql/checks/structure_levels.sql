-- structure_levels: structures whose ontology level is below their parent's (levels never decrease downward).
-- Grain: one row per structure x parent. Zero rows = pass.
-- Inputs: structures. Allen's st_level never decreases down the tree (it may stay equal: three
-- structures of graph 17 share their parent's level), and a level is never negative.
select c.structure_id, c.acronym, c.level, c.parent_id, p.level as parent_level
from main.structures c
join main.structures p on p.structure_id = c.parent_id
where c.level < p.level or c.level < 0
order by c.structure_id
