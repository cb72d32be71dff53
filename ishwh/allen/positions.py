"""Sagittal position (0 = lateral .. 1 = medial) of Allen section images.

The rule (docs/allen.md, "Section position"): a sagittal SectionDataSet is one series of
sections cut through one hemisphere, from its most lateral section towards the midline, and a
section's cut depth is ``section_number * section_thickness`` (µm). So, within one experiment,

    position = (section_number - min) / (max - min)

over the experiment's kept (non-failed) sections: 0 the most lateral, 1 the most medial. The
thickness is the same for every section of a data set, so it cancels; an experiment with one
section gets 0.5 (no span to place it in).

The direction (section numbers grow from lateral to medial) is Allen's sectioning scheme; the
3-D alignment records of a data set show it: :func:`reference_lateral` maps a section into the
reference space, whose third axis runs left to right with the midline in the middle.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def section_positions(section_numbers: Sequence[int]) -> list[float]:
    """Position 0..1 (lateral -> medial) of each section of ONE experiment, in input order."""
    n = np.asarray([int(x) for x in section_numbers], dtype=np.float64)
    if n.size == 0:
        return []
    lo, hi = n.min(), n.max()
    if hi == lo:
        return [0.5] * int(n.size)
    return [float(x) for x in (n - lo) / (hi - lo)]


def reference_lateral(tvr: Sequence[float], tsv: Sequence[float], section_number: int,
                      thickness_um: float, width: int, height: int) -> float:
    """Left-right coordinate (µm) in the reference space of a section image's centre.

    ``tsv`` (SectionImage ``alignment2d``: 2x2 row-major then translation) takes an image
    pixel to the data set's volume (x, y in µm); the section's depth is
    ``section_number * thickness_um``; ``tvr`` (SectionDataSet ``alignment3d``: 3x3
    row-major then translation) takes that volume point to the reference space, whose third
    coordinate runs across the hemispheres.
    """
    a = np.asarray(tsv, dtype=np.float64)
    xy = a[:4].reshape(2, 2) @ np.array([width / 2.0, height / 2.0]) + a[4:6]
    v = np.array([xy[0], xy[1], section_number * thickness_um])
    t = np.asarray(tvr, dtype=np.float64)
    return float((t[:9].reshape(3, 3) @ v + t[9:12])[2])
