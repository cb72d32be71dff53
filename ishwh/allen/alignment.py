"""The Allen API's own section alignments, as ``section_alignments`` rows (method ``allen``).

Allen's informatics pipeline registers every section image to its stage's reference space
and publishes the result: per SectionDataSet an ``alignment3d`` (``tvr_00..tvr_11``: a 3x3
matrix row-major, then a translation; the data set's volume, µm -> reference space, µm) and
per SectionImage an ``alignment2d`` (``tsv_00..tsv_05``: 2x2 row-major, then a translation;
a full-resolution image pixel -> the data set's volume, x and y in µm). The section lies at
depth ``section_number x section_thickness`` (µm) of the volume. So a pixel of the image
goes to the reference space as

    r = T_vr @ (T_sv @ (x, y), section_number * thickness) + t_vr        (µm)

and to the reference *voxel* ``r / spacing`` (axes: anterior->posterior, superior->
inferior, left->right, as the annotation volumes). For a stored image (downsampled by
``2^N``: its pixel is ``full / f`` with f = full width / stored width) this is an affine map
of the stored pixel in the two in-plane axes; the slice is the third axis at the image
centre. ``section_alignments`` keeps the inverse (slice pixels -> stored image pixels), so
features project the reference with it exactly as with an image registration.

Query: ``model::SectionDataSet,rma::criteria,[id$eq{id}],rma::include,alignment3d,
section_images(alignment2d)`` per experiment (cached by URL like every other request).
Alignments from Allen are not scored against the image here: ``quality`` is 1.0 and ``ok``
true when the image centre falls inside the reference volume (else 0.0 and not ok).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ishwh.allen.queries import Rma
from ishwh.errors import InvalidInput

METHOD = "allen"


def data_set_alignment_query(data_set_id: int) -> Rma:
    """One experiment's 3-D alignment and its section images with their 2-D alignments."""
    return Rma("SectionDataSet", (f"[id$eq{int(data_set_id)}]",),
               include=("alignment3d", "section_images(alignment2d)"))


def record_vector(record: dict[str, Any] | None, name: str, n: int) -> np.ndarray | None:
    """``name_00 .. name_{n-1}`` of an API JSON record, or its XML form (``name`` holding a
    comma list, as in ``data_set.xml``); None when absent."""
    if not record:
        return None
    if f"{name}_00" in record:
        vals = [record.get(f"{name}_{i:02d}") for i in range(n)]
    elif isinstance(record.get(name), str):
        vals = record[name].split(",")
    else:
        return None
    try:
        out = np.array([float(v) for v in vals], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"alignment record {name} is not {n} numbers") from exc
    if out.size != n:
        raise InvalidInput(f"alignment record {name} has {out.size} numbers, expected {n}")
    return out


def image_to_reference(tvr: np.ndarray, tsv: np.ndarray, section_number: int,
                       thickness_um: float) -> np.ndarray:
    """3x3 affine ``A``: reference point (µm) ``= A[:, :2] @ (x, y) + A[:, 2]`` for a
    full-resolution image pixel (x, y)."""
    m2, t2 = tsv[:4].reshape(2, 2), tsv[4:6]
    m3, t3 = tvr[:9].reshape(3, 3), tvr[9:12]
    z = float(section_number) * float(thickness_um)
    lin = m3[:, :2] @ m2
    off = m3[:, :2] @ t2 + m3[:, 2] * z + t3
    return np.hstack([lin, off[:, None]])


@dataclass
class AllenAlignment:
    """A section placement from Allen's records (the fields of a stored alignment)."""

    slice_index: int
    affine: np.ndarray        # (2, 3): slice pixels (axis 0, axis 1) -> stored image pixels
    quality: float
    ok: bool
    angle_deg: float
    scale: float
    displacement: None = None
    method: str = METHOD


def section_alignment(tvr: np.ndarray, tsv: np.ndarray, section_number: int,
                      thickness_um: float, full_size: tuple[int, int],
                      stored_size: tuple[int, int], spacing_um: Sequence[float],
                      shape: Sequence[int]) -> AllenAlignment:
    """The placement of one stored section image on the reference volume (``shape``
    voxels of ``spacing_um`` µm, axes 0-2)."""
    fw, fh = full_size
    sw, sh = stored_size
    f = np.array([fw / sw, fh / sh])
    a = image_to_reference(tvr, tsv, section_number, thickness_um)
    sp = np.asarray(spacing_um, dtype=np.float64)
    vox = a / sp[:, None]                        # full pixel -> voxel
    # stored pixel centre (u + 0.5) * f - 0.5 -> full pixel
    stored = np.array([[f[0], 0, 0.5 * f[0] - 0.5], [0, f[1], 0.5 * f[1] - 0.5], [0, 0, 1.0]])
    m = np.vstack([vox[:2], [0, 0, 1.0]]) @ stored     # stored pixel -> (axis 0, axis 1) voxel
    centre = vox @ np.array([fw / 2.0, fh / 2.0, 1.0])
    k = int(round(float(centre[2])))
    inside = all(0 <= c < n for c, n in zip(centre, shape, strict=True))
    aff = np.linalg.inv(m)[:2]                   # voxel (col = axis 0, row = axis 1) -> pixel
    lin = aff[:, :2]
    scale = float(np.sqrt(abs(np.linalg.det(lin))))
    angle = float(np.degrees(np.arctan2(lin[1, 0] - lin[0, 1], lin[0, 0] + lin[1, 1])))
    return AllenAlignment(int(np.clip(k, 0, shape[2] - 1)), aff, 1.0 if inside else 0.0,
                          bool(inside), angle, scale)


def data_set_alignments(record: dict[str, Any], stored: dict[int, tuple[int, int]],
                        spacing_um: Sequence[float], shape: Sequence[int]
                        ) -> tuple[dict[int, AllenAlignment], list[str]]:
    """Placements of the stored sections (``{section_id: (width, height)}``) of one
    SectionDataSet record; and the sections left without one, with the reason."""
    tvr = record_vector(record.get("alignment3d"), "tvr", 12)
    thickness = record.get("section_thickness")
    out: dict[int, AllenAlignment] = {}
    missing: list[str] = []
    if tvr is None or thickness is None:
        return out, [f"data set {record.get('id')}: no alignment3d or section thickness"]
    for im in record.get("section_images") or []:
        sid = int(im["id"])
        if sid not in stored:
            continue
        tsv = record_vector(im.get("alignment2d"), "tsv", 6)
        full = (im.get("image_width") or im.get("width"), im.get("image_height") or
                im.get("height"))
        if tsv is None or not all(full):
            missing.append(f"section {sid}: no alignment2d or image size")
            continue
        out[sid] = section_alignment(tvr, tsv, int(im["section_number"]), float(thickness),
                                     (int(full[0]), int(full[1])), stored[sid], spacing_um,
                                     shape)
    missing += [f"section {s}: not in the data set's records" for s in stored if s not in out
                and not any(m.startswith(f"section {s}:") for m in missing)]
    return out, missing
