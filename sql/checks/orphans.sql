-- orphans: rows that point at a parent row that does not exist.
-- Grain: one row per orphan (table, key, the missing parent). Zero rows = pass.
-- Inputs: every table with a foreign key (DuckDB tables here declare none, so this checks).
select 'experiments' as tbl, experiment_id::varchar as row_key, 'gene ' || gene_id as missing
from main.experiments where gene_id not in (select gene_id from main.genes)
union all
select 'sections', section_id::varchar, 'experiment ' || experiment_id
from main.sections where experiment_id not in (select experiment_id from main.experiments)
union all
select 'annotations', experiment_id || '/' || structure_id, 'experiment ' || experiment_id
from main.annotations where experiment_id not in (select experiment_id from main.experiments)
union all
select 'annotations', experiment_id || '/' || structure_id, 'structure ' || structure_id
from main.annotations where structure_id not in (select structure_id from main.structures)
union all
select 'gene_labels', gene_id || '/' || task, 'gene ' || gene_id
from main.gene_labels where gene_id not in (select gene_id from main.genes)
union all
select 'experiment_features', feature_set_id || '/' || experiment_id,
       'experiment ' || experiment_id
from main.experiment_features
where experiment_id not in (select experiment_id from main.experiments)
union all
select 'experiment_features', feature_set_id || '/' || experiment_id,
       'feature set ' || feature_set_id
from main.experiment_features
where feature_set_id not in (select feature_set_id from main.feature_sets)
union all
select 'splits', split_id || '/' || experiment_id, 'split ' || split_id
from main.splits where split_id not in (select split_id from main.split_defs)
union all
select 'runs', run_id::varchar, 'feature set ' || feature_set_id
from main.runs where feature_set_id not in (select feature_set_id from main.feature_sets)
union all
select 'runs', run_id::varchar, 'split ' || split_id
from main.runs where split_id not in (select split_id from main.split_defs)
union all
select 'predictions', run_id || '/' || structure_id || '/' || experiment_id, 'run ' || run_id
from main.predictions where run_id not in (select run_id from main.runs)
union all
select 'predictions', run_id || '/' || structure_id || '/' || experiment_id,
       'structure ' || structure_id
from main.predictions where structure_id not in (select structure_id from main.structures)
union all
select 'gene_predictions', run_id || '/' || task || '/' || experiment_id, 'run ' || run_id
from main.gene_predictions where run_id not in (select run_id from main.runs)
union all
select 'run_tasks', run_id || '/' || task, 'run ' || run_id
from main.run_tasks where run_id not in (select run_id from main.runs)
order by tbl, row_key, missing
