"""Ray engine vs local engine on the same sections, 1 vs 2 extractor actors, and per-section
costs for the projection in docs/scale.md.

    PYTHONPATH=. python benchmarks/ray_featurize.py --genes 20 --out /tmp/ray_bench.json
    PYTHONPATH=. python benchmarks/ray_featurize.py --extractor bow --genes 20 --workers 2
    PYTHONPATH=. python benchmarks/ray_featurize.py --extractor atlas --stage E18.5 --genes 20 \
        --local-threads 1

Builds the synthetic demo atlas (``--genes`` genes of one stage, ~16 sections of 320x200 each,
with the stage's reference atlas)
in a temporary folder, featurizes it with the local engine and with the Ray engine on a local
cluster (``ray.init(num_cpus=<cores>)``, started once and timed on its own), and times the
per-section costs on the real Allen ISH image of ../shared/data/allen (2980x1888 JPEG).
Prints a Markdown table; ``--out`` also writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from ishwh import store, warehouse
from ishwh.device import torch_threads
from ishwh.features import featurize
from ishwh.features.cnn import CNNFeatures, decode_for_cnn
from ishwh.synth import ingest_synthetic

REAL_IMAGE = (Path(__file__).resolve().parents[2] / "shared" / "data" / "allen" / "images"
              / "Prox1_P56_sagittal_ISH_downsample2.jpg")


def _copy(src: Path, dest: Path) -> Path:
    dest.mkdir(parents=True)
    db = dest / src.name
    shutil.copy(src, db)
    warehouse.images_dir(db).symlink_to(warehouse.images_dir(src))
    return db


def _max_diff(a: Path, b: Path, names: list[str]) -> float:
    """Largest |difference| between the vectors of two warehouses (same experiments)."""
    worst = 0.0
    for name in names:
        with warehouse.connect(a, read_only=True) as con:
            ia, xa = store.read_experiment_features(con, name)
        with warehouse.connect(b, read_only=True) as con:
            ib, xb = store.read_experiment_features(con, name)
        assert ia.tolist() == ib.tolist(), name
        worst = max(worst, float(np.abs(xa - xb).max()))
    return worst


def _per_section_costs(reps: int) -> dict[str, float]:
    """Seconds per section: decoding (real ISH JPEG, synthetic PNG) and the CNN on 1 thread."""
    import torch  # noqa: PLC0415

    out: dict[str, float] = {}
    if REAL_IMAGE.is_file():
        decode_for_cnn(REAL_IMAGE, 231, 2980, 1888)
        t = time.perf_counter()
        for _ in range(reps):
            decode_for_cnn(REAL_IMAGE, 231, 2980, 1888)
        out["decode_real_2980x1888_s"] = (time.perf_counter() - t) / reps
        out["real_image_bytes"] = REAL_IMAGE.stat().st_size
    torch.set_num_threads(1)
    ext = CNNFeatures(layers=["blocks.5"], device="cpu", batch_size=4).fit()
    imgs = np.random.default_rng(0).integers(0, 255, (4, 231, 231, 3), dtype=np.uint8)
    ext.section_features(imgs)
    t = time.perf_counter()
    n = max(1, reps // 4)
    for _ in range(n):
        ext.section_features(imgs)
    out["cnn_cpu_1thread_s"] = (time.perf_counter() - t) / (4 * n)
    return out


def projection(costs: dict[str, float], sections: int, gpu_rate: float, cores: int,
               gbps: float, full_factor: float, nodes: list[int]) -> list[str]:
    """Markdown rows: hours for ``sections`` on N GPU worker nodes, from measured per-section
    costs and the stated assumptions (see docs/scale.md)."""
    lines = ["| images | N nodes | decode-bound s/s | GPU-bound s/s | network-bound s/s "
             "| sections/s | wall |", "|---|---|---|---|---|---|---|"]
    for label, factor in (("downsample 2 (measured file)", 1.0),
                          (f"full resolution (x{full_factor:g} decode and bytes)", full_factor)):
        decode_s = costs["decode_real_2980x1888_s"] * factor
        nbytes = costs["real_image_bytes"] * factor
        per_node = {"decode": (cores - 1) / decode_s, "gpu": gpu_rate,
                    "net": gbps * 1e9 / 8 / nbytes}
        for n in nodes:
            rate = n * min(per_node.values())
            wall = sections / rate
            lines.append(f"| {label} | {n} | {n * per_node['decode']:,.0f} | "
                         f"{n * per_node['gpu']:,.0f} | {n * per_node['net']:,.0f} | "
                         f"{rate:,.0f} | {wall / 60:,.1f} min |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--genes", type=int, default=20)
    ap.add_argument("--extractor", default="cnn", choices=("cnn", "bow", "grid", "atlas"),
                    help="bow: 100-word codebooks (set bow.w100) made on the driver by both "
                         "engines; atlas: atlas.stain and atlas.cnn (registration included); "
                         "only cnn prints the per-section costs and projection")
    ap.add_argument("--stage", default="E13.5", help="the one stage of the synthetic atlas")
    ap.add_argument("--local-threads", type=int,
                    help="also time the local engine with this many torch threads (1: as each "
                         "Ray actor with --cpus-per-worker <= 1 runs); the Ray drivers run with "
                         "as many, and the Ray rows' max abs diff is against that row")
    ap.add_argument("--workers", default="1,2", help="Ray extractor actors to try")
    ap.add_argument("--chunk-size", type=int, default=2, help="experiments per partition")
    ap.add_argument("--reps", type=int, default=20, help="repetitions of the cost timings")
    ap.add_argument("--out", type=Path)
    # Projection assumptions (docs/scale.md): none of these is measured here.
    ap.add_argument("--atlas-sections", type=int, default=300_000)
    ap.add_argument("--gpu-rate", type=float, default=2000.0,
                    help="assumed sections/s of one GPU actor (CNN to blocks.5, bf16, batch 128)")
    ap.add_argument("--cores-per-node", type=int, default=16,
                    help="CPU cores per GPU node (one goes to the actor, the rest decode)")
    ap.add_argument("--gbps", type=float, default=10.0, help="network per node, Gbit/s")
    ap.add_argument("--full-factor", type=float, default=4.0,
                    help="full-resolution image vs the measured downsample-2 file: bytes and "
                         "decode time (4 = twice the side)")
    ap.add_argument("--costs-only", action="store_true",
                    help="only the per-section costs and the projection (no featurize runs)")
    args = ap.parse_args()
    if args.costs_only:
        costs = _per_section_costs(args.reps)
        print("per-section costs (s):", json.dumps({k: round(v, 5) for k, v in costs.items()}))
        print("\n".join(projection(costs, args.atlas_sections, args.gpu_rate,
                                   args.cores_per_node, args.gbps, args.full_factor,
                                   [1, 4, 16])))
        return
    import ray  # noqa: PLC0415

    tmp = Path(tempfile.mkdtemp(prefix="ishwh-ray-bench-"))
    try:
        base = tmp / "base" / "wh.duckdb"
        base.parent.mkdir()
        warehouse.init(base)
        ingest_synthetic(base, "demo", progress=False, n_genes=args.genes, stages=(args.stage,))
        with warehouse.connect(base, read_only=True) as con:
            n_sections = con.execute("select count(*) from sections").fetchone()[0]
        common = dict(extractor=args.extractor, device="cpu", progress=False,
                      chunk_size=args.chunk_size)
        if args.extractor == "cnn":
            common.update(layers=["blocks.5"], pools=("max",))
        elif args.extractor == "bow":
            common.update(bow={"n_words": 100})
        elif args.extractor == "atlas":
            common.update(atlas={"what": ["stain", "cnn"]})
        rows = []
        t = time.perf_counter()
        local_db = _copy(base, tmp / "local")
        res = featurize(local_db, **common)
        rows.append({"engine": "local", "workers": "its default processes",
                     "wall_s": time.perf_counter() - t, **res.timings})
        ref_db = local_db
        if args.local_threads:
            t = time.perf_counter()
            ref_db = _copy(base, tmp / "local_threads")
            with torch_threads(args.local_threads):
                res = featurize(ref_db, **common)
            rows.append({"engine": "local", "workers": f"torch on {args.local_threads} thread(s)",
                         "wall_s": time.perf_counter() - t, **res.timings,
                         "max_abs_diff_vs_local": _max_diff(local_db, ref_db, res.names)})
        t = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                 logging_level="error")
        cluster_start = time.perf_counter() - t
        for w in [int(x) for x in args.workers.split(",")]:
            t = time.perf_counter()
            db = _copy(base, tmp / f"ray{w}")
            with torch_threads(args.local_threads):  # the driver's part (atlas.cnn projection)
                res = featurize(db, engine="ray", ray={"workers": w}, **common)
            rows.append({"engine": "ray", "workers": f"{w} actor(s)",
                         "wall_s": time.perf_counter() - t, **res.timings,
                         "first_sections": res.partitions["first_sections"],
                         "max_abs_diff_vs_local": _max_diff(ref_db, db, res.names)})
        ray.shutdown()
        costs = _per_section_costs(args.reps) if args.extractor == "cnn" else {}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    # Steady state: the local engine's section loop (network loaded in "setup"); the Ray
    # engine after its first partition (the actors import torch and load the network first).
    for r in rows:
        r.setdefault("compute", r["wall_s"])  # bow / grid: the local engine times no parts
        start = r.get("first_partition", 0.0)
        r["steady_sections_per_s"] = ((n_sections - r.get("first_sections", 0))
                                      / (r["compute"] - start))
    local = rows[0]
    print(f"{args.extractor}: {n_sections} sections ({args.genes} experiments of {args.stage}, "
          f"partitions of "
          f"{args.chunk_size}), {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
          f"Ray local cluster start {cluster_start:.1f} s\n")
    print("| engine | workers | setup s | compute s | first partition s | steady sections/s "
          "| vs local | end to end sections/s | vs local | max abs diff vs local |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        e2e = n_sections / r["wall_s"]
        print(f"| {r['engine']} | {r['workers']} | {r.get('setup', 0):.1f} | "
              f"{r['compute']:.1f} | {r.get('first_partition', 0):.1f} | "
              f"{r['steady_sections_per_s']:.1f} | "
              f"{r['steady_sections_per_s'] / local['steady_sections_per_s']:.2f}x | "
              f"{e2e:.1f} | {e2e / (n_sections / local['wall_s']):.2f}x | "
              f"{r.get('max_abs_diff_vs_local', 0):.2g} |")
    if args.local_threads:
        print(f"\n(max abs diff: the second local row against the first; the Ray rows against "
              f"the local engine on {args.local_threads} torch thread(s))")
    if costs:
        print("\nper-section costs (s):",
              json.dumps({k: round(v, 5) for k, v in costs.items()}))
        print()
        print("\n".join(projection(costs, args.atlas_sections, args.gpu_rate,
                                   args.cores_per_node, args.gbps, args.full_factor,
                                   [1, 4, 16])))
    if args.out:
        args.out.write_text(json.dumps({"n_sections": n_sections, "cores": os.cpu_count(),
                                        "cluster_start_s": cluster_start, "rows": rows,
                                        "costs": costs}, indent=2))


if __name__ == "__main__":
    main()
