"""Benchmark: dense SIFT per section, OpenCV (the CPU path of ``featurize -e bow``) vs the
torch reproduction (``ishwh.features.sift_torch``, the GPU path) on the CPU, and on CUDA
when there is a GPU.

Sections are gray images at the bag of words' 1/4 resolution, at two sizes:

* demo: 80 x 50 (a synthetic ``demo`` section, 320 x 200, reduced 4x);
* Allen: 745 x 472 (the real Allen ISH JPEG in ``../shared/data/allen/images``, 2980 x 1888,
  reduced 4x while decoding, as featurize does), or a synthetic stand-in when it is absent.

Each timing is the median of ``--repeats`` runs over ``--sections`` copies (one SIFT call per
section, the 3 default sizes, descriptors back in numpy), one thread (OpenCV as in a worker
process; torch with ``torch.set_num_threads(1)``) and torch with its default threads. Also
prints how many descriptor components agree with OpenCV's.

    .venv/bin/python benchmarks/dense_sift.py
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from ishwh.features import bow
from ishwh.features.sift_torch import TorchDenseSift, dense_sift_tensors

REPO = Path(__file__).resolve().parents[1]
ALLEN_IMAGE = REPO.parent / "shared" / "data" / "allen" / "images" / \
    "Prox1_P56_sagittal_ISH_downsample2.jpg"


def demo_section() -> np.ndarray:
    """One section of the synthetic ``demo`` preset (320 x 200 JPEG), read as featurize does."""
    import tempfile  # noqa: PLC0415

    from ishwh import warehouse  # noqa: PLC0415
    from ishwh.synth import ingest_synthetic  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "wh.duckdb"
        warehouse.init(db)
        ingest_synthetic(db, "demo", seed=0, progress=False, genes=1, stages=("E13.5",),
                         workers=1)
        with warehouse.connect(db, read_only=True) as con:
            rel = con.execute("select image_path from sections order by section_id "
                              "limit 1 offset 5").fetchall()[0][0]
        return bow.read_gray(str(warehouse.images_dir(db) / rel))


def images() -> dict[str, np.ndarray]:
    if ALLEN_IMAGE.exists():
        allen = bow.read_gray(str(ALLEN_IMAGE))
        print(f"Allen-size section: {ALLEN_IMAGE.name} (2980x1888), reduced 4x")
    else:
        rng = np.random.default_rng(0)
        allen = cv2.GaussianBlur(rng.integers(0, 255, (472, 745), dtype=np.uint8), (0, 0), 3)
        print("Allen-size section: blurred noise 745x472 (the Allen JPEG is absent)")
    demo = demo_section()
    return {f"demo {demo.shape[1]}x{demo.shape[0]}": demo,
            f"Allen {allen.shape[1]}x{allen.shape[0]}": allen}


def timed(fn, img, n: int, repeats: int, sync=lambda: None) -> float:
    """Median sections per second of ``fn(img)`` over ``repeats`` runs of ``n`` calls."""
    fn(img)  # warm-up (kernels, caches)
    sync()
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(n):
            fn(img)
        sync()
        rates.append(n / (time.perf_counter() - t))
    return statistics.median(rates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sections", type=int, default=20, help="SIFT calls per timing")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    default_threads = torch.get_num_threads()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
          f"(default {default_threads} threads), OpenCV {cv2.__version__}, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    cpu = TorchDenseSift(device="cpu")
    rows = []
    for label, img in images().items():
        n = args.sections if img.size < 100_000 else max(3, args.sections // 4)
        ref, got = bow.dense_sift(img), cpu.descriptors(img)
        a, b = np.concatenate(ref).astype(int), np.concatenate(got).astype(int)
        agree = f"{(a == b).mean():.5%} identical, max diff {np.abs(a - b).max()}"
        cv2.setNumThreads(1)
        r_cv1 = timed(bow.dense_sift, img, n, args.repeats)
        cv2.setNumThreads(-1)
        torch.set_num_threads(1)
        r_t1 = timed(cpu.descriptors, img, n, args.repeats)
        torch.set_num_threads(default_threads)
        r_td = timed(cpu.descriptors, img, n, args.repeats)
        row = {"image": label, "keypoints per size": len(ref[0]), "agreement": agree,
               "OpenCV 1 thread": r_cv1, "torch CPU 1 thread": r_t1,
               f"torch CPU {default_threads} threads": r_td}
        if torch.cuda.is_available():
            gpu = TorchDenseSift(device="cuda")
            row["torch CUDA, 1 section a call"] = timed(gpu.descriptors, img, 4 * n,
                                                        args.repeats, torch.cuda.synchronize)
            batch = torch.from_numpy(np.stack([img] * 32)).cuda()
            row["torch CUDA, batches of 32 (kept on GPU)"] = 32 * timed(
                dense_sift_tensors, batch, n, args.repeats, torch.cuda.synchronize)
        rows.append(row)
    if not torch.cuda.is_available():
        print("no CUDA GPU here: the CUDA path was not timed")
    keys = list(dict.fromkeys(k for r in rows for k in r))
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(f"{r[k]:.1f}" if isinstance(r.get(k), float) else
                                str(r.get(k, "-")) for k in keys) + " |")
    print("(timings in sections per second, median of "
          f"{args.repeats} runs; each section = SIFT at sizes {list(bow.SIFT_SIZES)})")


if __name__ == "__main__":
    main()
