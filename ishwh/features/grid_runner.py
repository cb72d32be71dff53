"""Expression-grid feature sets in the warehouse: one set ``grid`` when every grid has one
shape (else ``grid.<stage>``), the flattened energies of each experiment's grid as its
vector (:class:`ishwh.features.grid.GridFeatures`), written chunk by chunk."""

from __future__ import annotations

from collections.abc import Sequence
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


def grid_vectors(con, experiment_ids: Sequence[int],
                 shape: tuple[int, int, int]) -> tuple[list[int], np.ndarray]:
    """The grid feature vectors of these experiments (all of one ``shape``): the ids found
    (in order) and one row each."""
    tbl = con.sql(query_text("featurize_grids"),
                  params={"experiment_ids": list(experiment_ids)}).to_arrow_table()
    got = [int(e) for e in tbl.column("experiment_id").to_pylist()]
    x = store.list_array_to_matrix(tbl.column("energy"))
    return got, GridFeatures(shape=shape).fit(None).transform(list(x))


def run_grid(con, db_path: Path, opts: FeaturizeOptions, result: FeaturizeResult) -> None:
    """Compute the missing grid vectors of the stages ``opts`` names (default: all)."""
    by_stage, one_shape = grid_shapes(con)

    def set_name(stage: str) -> str:  # one shape in the warehouse -> one set "grid"
        return "grid" if one_shape else f"grid.{stage}"

    stages = list(by_stage) if opts.stages is None else list(opts.stages)
    unknown = [s for s in stages if s not in by_stage]
    if unknown:
        raise NotFound(f"no expression grids of stage {', '.join(unknown)}",
                       hint="stages with grids: " + ", ".join(by_stage))
    chunk_size = max(opts.chunk_size or DEFAULT_CHUNK, 64)
    fsids: dict[str, int] = {}
    for stage in stages:
        name = set_name(stage)
        if name not in fsids:
            fsids[name] = sets.ensure_set(con, name, "grid", int(np.prod(by_stage[stage])),
                                          {"shape": list(by_stage[stage]),
                                           "missing": "-1 -> 0"})
    result.names = list(fsids)
    have = sets.done(con, list(fsids.values()))
    ids_tbl = con.sql("select g.experiment_id, e.stage from expression_grids g join experiments "
                      "e using (experiment_id) where list_contains($stages, e.stage) "
                      "order by g.experiment_id", params={"stages": stages}).to_arrow_table()
    ids = [int(e) for e in ids_tbl.column("experiment_id").to_pylist()]
    stage_of = dict(zip(ids, ids_tbl.column("stage").to_pylist(), strict=True))
    todo = [e for e in ids if e not in have[fsids[set_name(stage_of[e])]]]
    with sets.progress_phase(opts.progress, "featurize grid", len(todo),
                             "experiments") as advance:
        for c in sets.chunks(todo, chunk_size):
            with warehouse.transaction(con):
                for name, fsid in fsids.items():
                    part = [e for e in c if set_name(stage_of[e]) == name]
                    if not part:
                        continue
                    got, x = grid_vectors(con, part, by_stage[stage_of[part[0]]])
                    store.write_experiment_features(con, fsid, got, x)
                    result.written[name] = result.written.get(name, 0) + len(got)
            advance(len(c))
    all_ids = {int(r[0]) for r in con.execute(
        "select experiment_id from expression_grids").fetchall()}
    for name, fsid in fsids.items():
        eligible = {e for e in all_ids if e in stage_of and set_name(stage_of[e]) == name}
        if name == "grid":
            eligible = all_ids
        result.finished += sets.finish(con, {name: fsid}, eligible, set())

