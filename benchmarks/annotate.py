"""Benchmark: `annotate` a whole stage from stored models (speed, not accuracy).

A real warehouse (a temp DuckDB file) gets ``--experiments`` experiments at stage P4 with
random ``--dim``-dimensional feature vectors, ``--structures`` structures in a hierarchy, and
one finished run whose ``models`` rows hold random weights, Platt scaling and thresholds (the
numbers do not matter for speed; the layout is exactly what ``fit`` stores). Then
:func:`ishwh.annotate.annotate` is timed end to end (read the models and the stage's vectors,
score, calibrate, call, replace the run x stage in one transaction), twice: the second run is
the idempotent replace of the first; with ``--consistent`` the hierarchy pass is included.

Run: ``.venv/bin/python benchmarks/annotate.py`` (defaults: 2,000 x 1,071 x 12,288, the
paper's scale; goal < 10 s on the 2-core CPU).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl


def build(db: Path, n_exp: int, n_struct: int, dim: int, seed: int = 0) -> int:
    from ishwh import loader, store, warehouse
    from ishwh.fit import models as models_mod

    rng = np.random.default_rng(seed)
    warehouse.init(db)
    sids = np.arange(1, n_struct + 1)
    parents = [None] + [int(rng.integers(1, s)) for s in sids[1:]]   # a random tree
    with warehouse.connect(db) as con:
        loader.load(con, loader.Batch(
            genes=pl.DataFrame({"gene_id": np.arange(1, n_exp + 1),
                                "acronym": [f"G{i}" for i in range(1, n_exp + 1)]}),
            structures=pl.DataFrame({"structure_id": sids, "acronym": [f"S{s}" for s in sids],
                                     "level": np.ones(n_struct, dtype=np.int64),
                                     "parent_id": parents},
                                    schema_overrides={"parent_id": pl.Int64}),
            experiments=pl.DataFrame({"experiment_id": np.arange(1, n_exp + 1),
                                      "gene_id": np.arange(1, n_exp + 1),
                                      "stage": ["P4"] * n_exp})))
        with warehouse.transaction(con):
            fsid = con.execute("insert into feature_sets (name, extractor, dim, finished_at) "
                               "values ('grid.bench', 'grid', ?, current_timestamp) "
                               "returning feature_set_id", [dim]).fetchall()[0][0]
            for i in range(0, n_exp, 250):
                ids = np.arange(i + 1, min(i + 250, n_exp) + 1)
                store.write_experiment_features(
                    con, fsid, ids, rng.random((ids.size, dim), dtype=np.float32))
            run = con.execute(
                "insert into runs (feature_set_id, stage, split_id, tasks, fingerprint, status, "
                "finished_at) values (?, 'E15.5', 0, 'structures', 'bench', 'finished', "
                "current_timestamp) returning run_id", [fsid]).fetchall()[0][0]
            models_mod.write_run_training(con, run, ["E15.5"], "none", "pooled", 5, n_exp)
            w = (rng.standard_normal((n_struct, dim)) / np.sqrt(dim)).astype(np.float32)
            models_mod.write_models(
                con, run, ["structure"] * n_struct, [str(s) for s in sids],
                np.full(n_struct, 1e-3), w, rng.standard_normal(n_struct) - 2.0,
                np.full(n_struct, 50), np.full(n_struct, 1000), np.ones(n_struct),
                np.zeros(n_struct), rng.standard_normal(n_struct))
    return int(run)


def parser(description: str) -> argparse.ArgumentParser:
    """The options of this benchmark (also benchmarks/ray_annotate.py's)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--experiments", type=int, default=2000)
    ap.add_argument("--structures", type=int, default=1071)
    ap.add_argument("--dim", type=int, default=12288)
    ap.add_argument("--consistent", action="store_true")
    ap.add_argument("--workdir", type=Path, default=None)
    return ap


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()

    from ishwh.annotate import annotate

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        db = Path(tmp) / "bench.duckdb"
        t0 = time.perf_counter()
        run = build(db, args.experiments, args.structures, args.dim)
        print(f"built the warehouse in {time.perf_counter() - t0:.1f} s "
              f"({db.stat().st_size / 1e6:.0f} MB)")
        for attempt in ("first", "again (replace)"):
            t0 = time.perf_counter()
            cpu0 = time.process_time()
            out = annotate(db, run, "P4", consistent=args.consistent)
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            print(f"annotate {attempt}: {out['n_experiments']:,} experiments x "
                  f"{out['n_structures']:,} structures x {args.dim:,} dims = "
                  f"{out['n_predictions']:,} rows in {wall:.2f} s wall, {cpu:.2f} s CPU "
                  f"(read {out['timings']['read_s']} s, score {out['timings']['score_s']} s, "
                  f"write {out['timings']['write_s']} s)")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU(s), load average "
          f"{os.getloadavg()[0]:.1f} (other jobs on the machine if above ~0.5)")


if __name__ == "__main__":
    main()
