-- structure_ancestors: every structure with each of its ancestors (the ontology's closure).
-- Grain: one row per structure x ancestor, the structure itself included at depth 0.
-- Inputs: structures. depth = steps up the tree (1 = the parent). "Everything under the
-- hippocampus" is one join: `join structure_ancestors a using (structure_id) join structures
-- h on h.structure_id = a.ancestor_id where h.acronym = 'H'`. Ancestors outside the table (a
-- root's absent parent) are left out; depth stops at 64 so a malformed cycle cannot loop
-- (sql/checks/structure_cycles.sql reports cycles).
create or replace view structure_ancestors as
with recursive structures as (
    select structure_id, parent_id from main.structures
),

walk(structure_id, ancestor_id, depth) as (
    select structure_id, structure_id, 0
    from structures
    union all
    select w.structure_id, s.parent_id, w.depth + 1
    from walk w
    join structures s on s.structure_id = w.ancestor_id
    join structures p on p.structure_id = s.parent_id
    where w.depth < 64
),

final as (
    select structure_id, ancestor_id, depth from walk
)

select * from final
