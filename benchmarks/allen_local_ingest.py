"""Local cost of `ingest allen` per image (everything but the network).

Serves N experiments x S sections of distinct ~560x420 JPEGs (the size of a sagittal
section at downsample 4) through the in-memory Allen API, ingests them into a fresh
warehouse and reports seconds and disk per image, cold cache then warm (cache only).

    .venv/bin/python benchmarks/allen_local_ingest.py --experiments 50 --sections 20
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from ishwh import warehouse
from ishwh.allen.client import AllenClient

# The fake Allen API is test code: it lives in tests/, not in the wheel.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fake_allen import FakeAllenApi  # noqa: E402

from ishwh.allen.ingest import ingest_allen


def _section_jpeg(rng: np.random.Generator) -> bytes:
    # smooth "tissue" with noise: compresses like a real ISH section, not like pure noise
    base = cv2.resize(rng.integers(80, 255, (12, 16, 3), dtype=np.uint8), (560, 420),
                      interpolation=cv2.INTER_CUBIC)
    noise = rng.normal(0, 12, base.shape)
    img = np.clip(base + noise, 0, 255).astype(np.uint8)
    return cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--experiments", type=int, default=50)
    ap.add_argument("--sections", type=int, default=20)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    data_sets, images, section_images = [], {}, {}
    for i in range(args.experiments):
        eid = 1_000_000 + i
        data_sets.append({"id": eid, "delegate": True, "failed": False,
                          "genes": [{"id": i + 1, "acronym": f"G{i:04d}", "name": None,
                                     "entrez_id": None}],
                          "specimen": {"donor": {"age": {"name": "P4"}}},
                          "plane_of_section": {"name": "sagittal"}})
        section_images[eid] = []
        for s in range(args.sections):
            sid = eid * 100 + s
            section_images[eid].append({"id": sid, "data_set_id": eid, "section_number": s,
                                        "failed": False})
            images[sid] = _section_jpeg(rng)
    api = FakeAllenApi(ontology=[{"id": 1, "acronym": "A", "name": "a", "st_level": 1,
                                  "parent_structure_id": 15564, "graph_order": 1}],
                       data_sets=data_sets, section_images=section_images, images=images)
    n = args.experiments * args.sections
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for label, offline in (("cold (download path)", False), ("warm (cache only)", True)):
            db = tmp / f"{label[:4]}.duckdb"
            warehouse.init(db)
            client = AllenClient(tmp / "cache", transport=api.transport(), backoff_s=0,
                                 offline=offline)
            t = time.perf_counter()
            ingest_allen(db, ["P4"], client=client, progress=False)
            dt = time.perf_counter() - t
            print(f"{label}: {n} images in {dt:.1f} s = {1000 * dt / n:.1f} ms/image")
        print(f"mean JPEG {sum(map(len, images.values())) / n / 1e3:.0f} KB; cache "
              f"{_du(tmp / 'cache') / 1e6:.1f} MB, warehouse images "
              f"{_du(warehouse.images_dir(tmp / 'cold.duckdb')) / 1e6:.1f} MB, "
              f"duckdb {(tmp / 'cold.duckdb').stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
