"""Expression-grid feature sets in the warehouse: one set ``grid`` when every grid has one
shape (else ``grid.<stage>``), the flattened energies of each experiment's grid as its
vector (:class:`ishwh.features.grid.GridFeatures`), written chunk by chunk."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ishwh import store, warehouse
from ishwh.errors import InvalidInput, NotFound
from ishwh.features import sets
from ishwh.features.grid import GridFeatures
from ishwh.features.options import DEFAULT_CHUNK, FeaturizeOptions, FeaturizeResult
from ishwh.query import query_text


def grid_shapes(con) -> tuple[dict[str, tuple[int, int, int]], bool]:
    """The grid shape of each stage, and whether the warehouse holds one shape only."""
    shapes = con.execute(
        "select e.stage, g.nx, g.ny, g.nz, count(*) from expression_grids g "
        "join experiments e using (experiment_id) group by all order by all").fetchall()
    if not shapes:
        raise NotFound("the warehouse has no expression grids",
                       hint="ingest a source that provides them (synthetic atlas, Allen grids)")
    distinct = {(nx, ny, nz) for _, nx, ny, nz, _ in shapes}
    by_stage: dict[str, tuple[int, int, int]] = {}
    for stage, nx, ny, nz, _ in shapes:
        if stage in by_stage and len(distinct) > 1:
            raise InvalidInput(f"stage {stage} has expression grids of different shapes",
                               hint="a grid feature set needs one shape per stage")
        by_stage[stage] = (nx, ny, nz)
    return by_stage, len(distinct) == 1


def grid_energies(con, experiment_ids: Sequence[int]) -> tuple[list[int], np.ndarray]:
    """The raw expression energies of these experiments' grids: the ids found (in order) and
    one flattened grid each."""
    tbl = con.sql(query_text("featurize_grids"),
                  params={"experiment_ids": list(experiment_ids)}).to_arrow_table()
    got = [int(e) for e in tbl.column("experiment_id").to_pylist()]
    return got, store.list_array_to_matrix(tbl.column("energy"))


def grid_vectors(con, experiment_ids: Sequence[int],
                 shape: tuple[int, int, int]) -> tuple[list[int], np.ndarray]:
    """The grid feature vectors of these experiments (all of one ``shape``): the ids found
    (in order) and one row each."""
    got, x = grid_energies(con, experiment_ids)
    return got, GridFeatures(shape=shape).fit(None).transform(list(x))


@dataclass
class GridPlan:
    """The grid sets of a run and what they lack; the local and the Ray engine share it."""

    by_stage: dict[str, tuple[int, int, int]]  # grid shape of each stage
    one_shape: bool
    fsids: dict[str, int]
    stage_of: dict[int, str]  # experiment (with a grid, of the stages asked) -> stage
    todo: list[int]  # experiments lacking their set's vector, by id
    chunk_size: int

    def set_name(self, stage: str) -> str:
        """One shape in the warehouse -> one set "grid"; otherwise one set per stage."""
        return "grid" if self.one_shape else f"grid.{stage}"


def grid_plan(con, opts: FeaturizeOptions, result: FeaturizeResult,
              before_write: Callable[[list[int]], None] | None = None) -> GridPlan:
    """The grid sets of the stages ``opts`` names (default: all), created if new, and the
    experiments they lack. ``before_write(ids)`` runs before a set is created when there is
    something to do (the Ray engine connects there)."""
    by_stage, one_shape = grid_shapes(con)
    stages = list(by_stage) if opts.stages is None else list(opts.stages)
    unknown = [s for s in stages if s not in by_stage]
    if unknown:
        raise NotFound(f"no expression grids of stage {', '.join(unknown)}",
                       hint="stages with grids: " + ", ".join(by_stage))
    ids_tbl = con.sql("select g.experiment_id, e.stage from expression_grids g join experiments "
                      "e using (experiment_id) where list_contains($stages, e.stage) "
                      "order by g.experiment_id", params={"stages": stages}).to_arrow_table()
    ids = [int(e) for e in ids_tbl.column("experiment_id").to_pylist()]
    plan = GridPlan(by_stage, one_shape, {},
                    dict(zip(ids, ids_tbl.column("stage").to_pylist(), strict=True)), [],
                    max(opts.chunk_size or DEFAULT_CHUNK, 64))
    names = {plan.set_name(stage): by_stage[stage] for stage in stages}
    existing = {n: sets.existing_set(con, n) for n in names}
    have = sets.done(con, [v[0] for v in existing.values() if v])
    missing = [e for e in ids if not existing[plan.set_name(plan.stage_of[e])]
               or e not in have[existing[plan.set_name(plan.stage_of[e])][0]]]
    if missing and before_write is not None:
        before_write(missing)
    for name, shape in names.items():
        plan.fsids[name] = sets.ensure_set(con, name, "grid", int(np.prod(shape)),
                                           {"shape": list(shape), "missing": "-1 -> 0"})
    result.names = list(plan.fsids)
    have = sets.done(con, list(plan.fsids.values()))
    plan.todo = [e for e in ids if e not in have[plan.fsids[plan.set_name(plan.stage_of[e])]]]
    return plan


def grid_finish(con, plan: GridPlan, result: FeaturizeResult) -> None:
    """``finished_at`` on the sets that now hold every experiment with a grid of theirs."""
    all_ids = {int(r[0]) for r in con.execute(
        "select experiment_id from expression_grids").fetchall()}
    for name, fsid in plan.fsids.items():
        eligible = {e for e in all_ids if e in plan.stage_of
                    and plan.set_name(plan.stage_of[e]) == name}
        if name == "grid":
            eligible = all_ids
        result.finished += sets.finish(con, {name: fsid}, eligible, set())


def run_grid(con, db_path: Path, opts: FeaturizeOptions, result: FeaturizeResult) -> None:
    """Compute the missing grid vectors of the stages ``opts`` names (default: all)."""
    plan = grid_plan(con, opts, result)
    with sets.progress_phase(opts.progress, "featurize grid", len(plan.todo),
                             "experiments") as advance:
        for c in sets.chunks(plan.todo, plan.chunk_size):
            with warehouse.transaction(con):
                for name, fsid in plan.fsids.items():
                    part = [e for e in c if plan.set_name(plan.stage_of[e]) == name]
                    if not part:
                        continue
                    got, x = grid_vectors(con, part, plan.by_stage[plan.stage_of[part[0]]])
                    store.write_experiment_features(con, fsid, got, x)
                    result.written[name] = result.written.get(name, 0) + len(got)
            advance(len(c))
    grid_finish(con, plan, result)
