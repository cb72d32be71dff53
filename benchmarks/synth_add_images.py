"""Add the section images of some stages to a synthetic warehouse ingested without images.

A grid-only warehouse (``ingest_synthetic(images=False)``) has no sections to featurize with a
CNN. Every (stage, gene) experiment of the synthetic atlas is rendered from its own draws, so
this copies the warehouse, drops the chosen stages' experiments with their annotations and
expression grids (the stored feature vectors stay: the experiment ids do not change), and
ingests again with images: only those stages are rendered. It prints a digest of the stages'
experiments, annotations and grids before and after. Annotations come out identical; the
grids do not (``Atlas.experiment`` draws the grid noise from the stream the images consume),
so a grid feature set recomputed on the copy would differ from the kept one.

    python benchmarks/synth_add_images.py grid1000.duckdb cnn.duckdb --stages E15.5 \\
        --genes 1000 --all-stages E11.5,E13.5,E15.5,E18.5,P4

``--genes``, ``--all-stages`` and ``--set`` must repeat the original ingest's arguments.
"""

from __future__ import annotations

import argparse
import shutil
import time

from ishwh import warehouse
from ishwh.synth import ingest_synthetic

DIGEST = {
    "experiments": "select count(*), sum(hash(experiment_id, gene_id, stage)) from experiments "
                   "where list_contains($stages, stage)",
    "annotations": "select count(*), sum(hash(experiment_id, structure_id, pattern, intensity, "
                   "density)) from annotations where experiment_id in (select experiment_id "
                   "from experiments where list_contains($stages, stage))",
    "grids": "select count(*), sum(hash(g)) from expression_grids g where experiment_id in "
             "(select experiment_id from experiments where list_contains($stages, stage))",
}


def digest(con, stages: list[str]) -> dict:
    return {k: con.execute(q, {"stages": stages}).fetchone() for k, q in DIGEST.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--stages", required=True, help="stages to render, comma-separated")
    ap.add_argument("--all-stages", required=True, help="the original ingest's stages")
    ap.add_argument("--genes", type=int, required=True)
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    stages = args.stages.split(",")
    shutil.copy(args.src, args.dst)
    warehouse.init(args.dst)
    with warehouse.connect(args.dst) as con:
        before = digest(con, stages)
        ids = "(select experiment_id from experiments where list_contains($stages, stage))"
        with warehouse.transaction(con):
            for table in ("annotations", "expression_grids"):
                con.execute(f"delete from {table} where experiment_id in {ids}",
                            {"stages": stages})
            con.execute("delete from experiments where list_contains($stages, stage)",
                        {"stages": stages})
    print("before", before, flush=True)
    t0 = time.perf_counter()
    res = ingest_synthetic(args.dst, args.preset, seed=args.seed, genes=args.genes,
                           stages=tuple(args.all_stages.split(",")), images=True,
                           workers=args.workers)
    print(f"ingest: {res['sections_rendered']} sections in {time.perf_counter() - t0:.0f} s")
    with warehouse.connect(args.dst, read_only=True) as con:
        after = digest(con, stages)
    print("after ", after)
    for k in DIGEST:
        print(f"{k}: {'identical' if after[k] == before[k] else 'DIFFERENT'}")


if __name__ == "__main__":
    main()
