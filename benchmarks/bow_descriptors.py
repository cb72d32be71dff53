"""How many dense-SIFT descriptors one real ISH section gives, per reading size and grid step.

Reads the real Allen section in ../shared/data/allen/images (Prox1 P56, stored by the API at
downsample=2, i.e. 1/4 of the full resolution per side, 2,980 x 1,888 px) the way the bag
of words does (gray, reduced ``downsample`` times while decoding) and counts keypoints and
non-zero descriptors over the 3 SIFT sizes (8, 16, 32 px):

    .venv/bin/python benchmarks/bow_descriptors.py [IMAGE]
"""

from __future__ import annotations

import sys
from pathlib import Path

from ishwh.features import bow

DEFAULT = Path(__file__).resolve().parents[1] / "../shared/data/allen/images" \
    / "Prox1_P56_sagittal_ISH_downsample2.jpg"


def main(path: Path) -> None:
    print("| read at (of the stored image) | px | step | keypoints per size | descriptors "
          "(3 sizes) | non-zero |")
    print("|---|---|---|---|---|---|")
    for downsample, step in ((4, 16), (4, 8), (2, 16), (1, 16), (1, 32)):
        gray = bow.read_gray(str(path), downsample)
        descs = bow.dense_sift(gray, bow.SIFT_SIZES, step)
        n = len(descs[0])
        nz = sum(len(bow.nonzero(d)) for d in descs)
        print(f"| 1/{downsample} | {gray.shape[1]} x {gray.shape[0]} | {step} | {n:,} | "
              f"{3 * n:,} | {nz:,} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT)
