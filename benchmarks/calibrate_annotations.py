"""Screen the synthetic atlas's annotation knobs on features already computed.

The annotator's knobs (``annotator_warp``, ``confusion``, ``flip_rate``, ``faint_dropout``)
draw from their own random streams, so turning them changes the annotations and nothing
else: images, and therefore the CNN and bag-of-words vectors, stay byte-identical. This
script takes a warehouse made by ``benchmarks/calibrate_pipeline.sh`` (features computed),
copies it, re-derives the annotations with the given knobs (no image is rendered), drops the
copy's runs and splits, fits the given feature set again (on a split stratified on the new
labels) and prints the mean test AUC per level: what a fresh calibrate_pipeline.sh run with
the same knobs gives for that feature set.

    .venv/bin/python benchmarks/calibrate_annotations.py /tmp/calfinal/paper.duckdb \\
        --set annotator_warp=0 --set confusion=0

The warehouse must hold exactly one synthetic atlas of ``--preset`` and seed 0 (the
calibration's), one stage. Results: docs/synthetic.md ("How the annotation defaults were
chosen").
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from multiprocessing import Pool
from pathlib import Path

from ishwh import warehouse
from ishwh.synth.generate import Atlas, _annotation_columns
from ishwh.synth.params import parse_knobs, resolve

ANNOTATION_KNOBS = {"annotator_warp", "confusion", "flip_rate", "faint_dropout"}
_ATLAS: Atlas | None = None


def _init(params) -> None:
    global _ATLAS
    _ATLAS = Atlas(params, 0)


def _annotate(job: tuple[str, int]) -> dict:
    stage, g = job
    assert _ATLAS is not None
    e = _ATLAS.experiment(stage, g, images=False)
    return {"experiment_id": e.experiment_id, "pattern": e.pattern,
            "intensity": e.intensity, "density": e.density}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("warehouse", type=Path)
    ap.add_argument("--set", dest="knobs", action="append", default=[], metavar="KNOB=VALUE")
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--features", default="efficientnet_lite0.blocks.5.max")
    ap.add_argument("--out", type=Path, help="the copy (default: beside the warehouse)")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    knobs = parse_knobs(args.knobs)
    if set(knobs) - ANNOTATION_KNOBS:
        sys.exit(f"only annotation knobs can be screened here: {sorted(ANNOTATION_KNOBS)}")
    with warehouse.connect(args.warehouse, read_only=True) as con:
        stages = [r[0] for r in con.execute(
            "select distinct stage from experiments").fetchall()]
        n_genes = con.execute("select count(distinct gene_id) from experiments").fetchall()[0][0]
    if len(stages) != 1:
        sys.exit(f"expected one stage, found {stages}")
    stage = stages[0]
    tag = "_".join(f"{k}{v}" for k, v in sorted(knobs.items())) or "defaults"
    out = args.out or args.warehouse.with_name(f"{args.warehouse.stem}.{tag}.duckdb")
    shutil.copy(args.warehouse, out)
    wal = args.warehouse.with_name(args.warehouse.name + ".wal")
    if wal.exists():
        shutil.copy(wal, out.with_name(out.name + ".wal"))
    params = resolve(args.preset, n_genes=n_genes, stages=(stage,), workers=1, **knobs)
    t0 = time.perf_counter()
    with Pool(args.workers, _init, (params,)) as pool:
        res = pool.map(_annotate, [(stage, g) for g in range(n_genes)], chunksize=16)
    _init(params)
    tbl = _annotation_columns(_ATLAS, res)  # noqa: F841 - read by DuckDB below
    with warehouse.connect(out) as con, warehouse.transaction(con):
        con.execute("delete from annotations").fetchall()
        con.execute("insert into annotations select * from tbl").fetchall()
        # runs and splits were made on the old labels: the fit below makes a split stratified
        # on the new ones, as a fresh calibrate_pipeline.sh run with these knobs would
        for table in ("predictions", "gene_predictions", "run_tasks", "runs", "splits",
                      "split_defs"):
            con.execute(f"delete from {table}").fetchall()
        share = con.execute("select avg((pattern <> 'undetected')::int) from annotations "
                            "where pattern is not null").fetchall()[0][0]
    print(f"{out}: {stage}, {n_genes} genes, knobs {knobs or 'default'}; annotations in "
          f"{time.perf_counter() - t0:.0f} s; expressed share {share:.3f}", file=sys.stderr)

    from ishwh.fit import runner  # noqa: PLC0415 - torch loads slowly

    run_ids = runner.fit(out, args.features, stage, force=True, progress=False)
    rows = runner.summary(out, run_ids)
    aucs = [r["mean_auc"] for r in rows]
    print("| knobs | expressed | " + " | ".join(f"L{r['level']}" for r in rows) + " | all |")
    with warehouse.connect(out, read_only=True) as con:
        overall = con.execute("select avg(auc) from structure_auc where run_id = ?",
                              [run_ids[0]]).fetchall()[0][0]
    print(f"| {tag} | {share:.3f} | "
          + " | ".join("" if a is None else f"{a:.3f}" for a in aucs)
          + f" | {overall:.3f} |")


if __name__ == "__main__":
    main()
