-- enum_values: stages, annotation calls and run settings outside the vocabulary.
-- Grain: one row per (table, column, bad value). Zero rows = pass.
-- Inputs: stages (the stage vocabulary), experiments, runs, split_defs, codebooks,
-- annotations.
-- param patterns: the pattern calls (default: ishwh.vocab.PATTERNS)
-- param grades: the intensity and density grades (default: ishwh.vocab.GRADES)
with bad as (
    select 'experiments' as tbl, 'stage' as col, stage as value from main.experiments
    where stage not in (select stage from main.stages)
    union all
    select 'runs', 'stage', stage from main.runs
    where stage not in (select stage from main.stages)
    union all
    select 'split_defs', 'stage', stage from main.split_defs
    where stage not in (select stage from main.stages)
    union all
    select 'codebooks', 'stage', stage from main.codebooks
    where stage not in (select stage from main.stages)
    union all
    select 'annotations', 'pattern', pattern from main.annotations
    where not list_contains($patterns, pattern)
    union all
    select 'annotations', 'intensity', intensity from main.annotations
    where not list_contains($grades, intensity)
    union all
    select 'annotations', 'density', density from main.annotations
    where not list_contains($grades, density)
)

select tbl, col, value, count(*) as n_rows
from bad
group by all
order by tbl, col, value
