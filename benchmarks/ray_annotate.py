"""Benchmark: `annotate --engine ray` against the local engine on the same stored models.

Builds the warehouse of ``benchmarks/annotate.py`` (``--experiments`` x ``--structures`` x
``--dim``, random models in the layout ``fit`` stores), annotates it with the local engine,
then with the Ray engine on a local cluster (``ray.init(num_cpus=<cores>)``, started once and
timed on its own), and checks that both wrote the same predictions.

    PYTHONPATH=. .venv/bin/python benchmarks/ray_annotate.py --experiments 2000

Prints a Markdown table (wall seconds and the scoring part) and the load average.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from annotate import build, parser  # noqa: E402  (benchmarks/annotate.py's warehouse)


def _predictions(db: Path, run: int) -> np.ndarray:
    from ishwh import warehouse  # noqa: PLC0415

    with warehouse.connect(db, read_only=True) as con:
        return np.array(con.execute(
            "select score, probability, called::int from predicted_annotations "
            "where run_id = ? order by experiment_id, structure_id", [run]).fetchall())


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()

    import ray  # noqa: PLC0415

    from ishwh.annotate import annotate  # noqa: PLC0415

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        db = Path(tmp) / "bench.duckdb"
        run = build(db, args.experiments, args.structures, args.dim)
        rows = []
        t0 = time.perf_counter()
        out = annotate(db, run, "P4", consistent=args.consistent)
        rows.append(("local", time.perf_counter() - t0, out["timings"]))
        local = _predictions(db, run)
        t0 = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                 logging_level="error")
        start = time.perf_counter() - t0
        for attempt in ("ray (first: workers start)", "ray (again)"):
            t0 = time.perf_counter()
            out = annotate(db, run, "P4", consistent=args.consistent, engine="ray",
                           ray={"cpus_per_worker": 1.0})
            rows.append((attempt, time.perf_counter() - t0, out["timings"]))
        ray.shutdown()
        diff = np.abs(_predictions(db, run) - local).max()
    print(f"{args.experiments:,} experiments x {args.structures:,} structures x {args.dim:,} "
          f"dims, {os.cpu_count()} cores; Ray local cluster start {start:.1f} s; max abs "
          f"diff vs local (score, probability, called) {diff:.2g}\n")
    print("| engine | wall s | read s | score s | write s |")
    print("|---|---|---|---|---|")
    for name, wall, t in rows:
        print(f"| {name} | {wall:.2f} | {t['read_s']:.2f} | {t['score_s']:.2f} | "
              f"{t['write_s']:.2f} |")
    print(f"\nload average {os.getloadavg()[0]:.1f} (other jobs on the machine if above ~0.5)")


if __name__ == "__main__":
    main()
