"""Generation speed and memory of the synthetic atlas (``docs/benchmarks_synth.md``).

    .venv/bin/python benchmarks/synth.py                 # demo preset, then a paper sample
    .venv/bin/python benchmarks/synth.py --paper-genes 40 --workers 2

Reports wall time, CPU time (this process and its workers; robust to a busy machine),
sections per second and the peak resident memory of the main process and of the largest
worker. Memory must not grow with the number of genes (everything is streamed to disk).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from ishwh import warehouse
from ishwh.synth import ingest_synthetic


def run(preset: str, **overrides) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "wh.duckdb"
        warehouse.init(db)
        self0 = resource.getrusage(resource.RUSAGE_SELF)
        kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        res = ingest_synthetic(db, preset, seed=0, progress=False, **overrides)
        wall = time.perf_counter() - t0
        self1 = resource.getrusage(resource.RUSAGE_SELF)
        kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        size_mb = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file()) / 2**20
    cpu = (self1.ru_utime + self1.ru_stime - self0.ru_utime - self0.ru_stime
           + kids1.ru_utime + kids1.ru_stime - kids0.ru_utime - kids0.ru_stime)
    n = res["sections_rendered"]
    return {
        "preset": preset, "overrides": {k: v for k, v in overrides.items()},
        "experiments": res["experiments_rendered"], "sections": n,
        "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
        "sections_per_s_wall": round(n / wall, 1),
        "cpu_ms_per_section": round(1000 * cpu / max(n, 1), 2),
        "peak_rss_main_mb": round(self1.ru_maxrss / 1024, 0),
        "peak_rss_worker_mb": round(kids1.ru_maxrss / 1024, 0),
        "disk_mb": round(size_mb, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--paper-genes", type=int, nargs="*", default=[10, 40])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--skip-demo", action="store_true")
    args = ap.parse_args()
    rows = []
    if not args.skip_demo:
        rows.append(run("demo", workers=args.workers))
        print(json.dumps(rows[-1]), file=sys.stderr)
    for g in args.paper_genes:
        rows.append(run("paper", genes=g, workers=args.workers))
        print(json.dumps(rows[-1]), file=sys.stderr)
    print("| preset | genes x stages | sections | wall s | CPU s | sections/s (wall) | "
          "CPU ms/section | peak RSS main / worker (MB) | disk MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['preset']} | {r['experiments']} | {r['sections']} | {r['wall_s']} | "
              f"{r['cpu_s']} | {r['sections_per_s_wall']} | {r['cpu_ms_per_section']} | "
              f"{r['peak_rss_main_mb']:.0f} / {r['peak_rss_worker_mb']:.0f} | {r['disk_mb']} |")


if __name__ == "__main__":
    main()
