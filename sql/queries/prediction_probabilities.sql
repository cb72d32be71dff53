-- prediction_probabilities: a run's predictions of some experiments with calibrated probabilities
-- param run: the run
-- param experiments: list of experiment ids (e.g. [101, 102])
-- param structures: (optional) list of structure ids; every structure when not given
-- param level: (optional) an ontology level; every level when not given
-- Grain: one row per experiment x structure that the run predicted (`predictions`).
-- probability: annotate's calibrated probability where a predicted_annotations row exists
-- (hierarchy-consistent when annotate ran with --consistent), else the run's stored Platt
-- scaling of the score (models), else the logistic of the raw score (a run without stored
-- models: not calibrated); source says which ('annotate', 'platt', 'score').
select p.experiment_id, p.structure_id, s.acronym,
       coalesce(a.probability, 1 / (1 + exp(-(m.platt_a * p.score + m.platt_b))),
                1 / (1 + exp(-p.score))) as probability,
       case when a.probability is not null then 'annotate'
            when m.platt_a is not null then 'platt' else 'score' end as source,
       p.detected
from predictions p
join structures s using (structure_id)
left join predicted_annotations a
    on a.run_id = p.run_id and a.experiment_id = p.experiment_id
   and a.structure_id = p.structure_id
left join models m
    on m.run_id = p.run_id and m.task_kind = 'structure' and m.structure_id = p.structure_id
where p.run_id = $run and list_contains($experiments, p.experiment_id)
  and ($structures is null or list_contains($structures, p.structure_id))
  and ($level is null or s.level = $level)
order by p.experiment_id, p.structure_id
