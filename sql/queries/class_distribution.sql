-- class_distribution: the paper's Figure 4, the share of each annotated class per stage and
-- ontology level, for pattern, intensity and density (unknown calls, NULL, are not counted).
-- Grain: one row per stage x level x target x class.
-- Inputs: annotations, experiments, structures, stages, target_class_order.
with calls as (
    select e.stage, s.level, a.pattern, a.intensity, a.density
    from annotations a
    join experiments e using (experiment_id)
    join structures s using (structure_id)
),

long as (
    unpivot calls on pattern, intensity, density into name target value class
),

counts as (
    select stage, level, target, class, count(*) as n
    from long
    group by all
),

final as (
    select
        c.stage,
        c.level,
        c.target,
        c.class,
        o.grade,
        c.n,
        c.n / sum(c.n) over (partition by c.stage, c.level, c.target) as share
    from counts c
    join target_class_order o using (target, class)
)

select f.*
from final f
left join stages s using (stage)
order by s.stage_order, f.level, f.target, f.grade
