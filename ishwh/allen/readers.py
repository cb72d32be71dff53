"""Parsers for the real Allen formats: ontology JSON (nested or flat), MetaImage grid volumes
(``.mhd`` + ``.raw``, as zipped by ``grid_data/download``), grid annotation volumes and the
``data_set.xml`` that comes with grid downloads.

Volumes are returned as numpy arrays indexed ``[x, y, z]`` where x is the fastest axis of the
``.raw`` file, so ``raw_bytes == arr.flatten(order="F").tobytes()``.
"""

from __future__ import annotations

import io
import os
import re
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ishwh.errors import InvalidInput
from ishwh.ontology import fill_root_levels, structures_from_graph_json

# --------------------------------------------------------------------------- ontology


def read_ontology(obj: Any) -> list[dict[str, Any]]:
    """Structure rows (``structure_id, acronym, name, parent_id, level, graph_order,
    color_hex``) from ``structure_graph_download/N.json`` (nested), a bare list of nodes,
    or flat RMA ``Structure`` rows.

    The graph root, which may lack ``st_level``, gets level 0
    (:func:`ishwh.ontology.fill_root_levels`); any other node without one is refused.
    """
    if isinstance(obj, dict) and obj.get("success") is False:
        raise InvalidInput(f"ontology response is an API error: {obj.get('msg')}")
    rows = structures_from_graph_json(obj)
    by_id: dict[int, dict[str, Any]] = {}
    for r in rows:  # flat pages may repeat a row; keep the first
        by_id.setdefault(r["structure_id"], r)
    rows = list(by_id.values())
    unknown = fill_root_levels(rows)
    if unknown:
        raise InvalidInput(f"{len(unknown)} structure(s) of the ontology have no st_level, e.g. "
                           f"{unknown[0]['structure_id']} ({unknown[0]['acronym']})")
    for r in rows:
        if r["acronym"] is None:
            r["acronym"] = str(r["structure_id"])
    return rows


# --------------------------------------------------------------------------- MetaImage

_MET_TYPES = {
    "MET_FLOAT": "f4", "MET_DOUBLE": "f8",
    "MET_UCHAR": "u1", "MET_CHAR": "i1",
    "MET_USHORT": "u2", "MET_SHORT": "i2",
    "MET_UINT": "u4", "MET_INT": "i4",
    "MET_ULONG": "u8", "MET_LONG": "i8",
}


@dataclass
class Volume:
    """A 3-D volume indexed ``[x, y, z]`` with its voxel spacing in µm."""

    name: str
    data: np.ndarray
    spacing_um: tuple[float, float, float]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.data.shape)  # type: ignore[return-value]

    def flat(self) -> np.ndarray:
        """The values x fastest (the ``.raw`` order, as ``expression_grids.energy``)."""
        return self.data.flatten(order="F")


def parse_mhd(text: str) -> dict[str, str]:
    """The ``key = value`` header of a MetaImage ``.mhd`` file."""
    header = {}
    for line in text.splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            header[k.strip()] = v.strip()
    return header


def volume_from_mhd(header: dict[str, str], raw: bytes, name: str = "volume") -> Volume:
    """Decode ``raw`` as described by an ``.mhd`` header (x fastest)."""
    try:
        dims = tuple(int(v) for v in header["DimSize"].split())
        kind = _MET_TYPES[header["ElementType"]]
    except KeyError as exc:
        raise InvalidInput(f"{name}.mhd lacks or has an unknown {exc.args[0]}") from exc
    if header.get("ElementNumberOfChannels", "1") != "1":
        raise InvalidInput(f"{name}.mhd has several channels; only scalar volumes are read")
    msb = header.get("BinaryDataByteOrderMSB", header.get("ElementByteOrderMSB", "False"))
    dtype = np.dtype(("> " if msb.lower() == "true" else "<").strip() + kind)
    n = int(np.prod(dims))
    if len(raw) != n * dtype.itemsize:
        raise InvalidInput(
            f"{name}.raw has {len(raw)} bytes, its .mhd says {dims} x {dtype.itemsize} = "
            f"{n * dtype.itemsize}"
        )
    data = np.frombuffer(raw, dtype=dtype).reshape(dims, order="F")
    data = data.astype(dtype.newbyteorder("="), copy=False)
    spacing = tuple(float(v) for v in header.get("ElementSpacing", "1 1 1").split())
    return Volume(name, data, spacing)  # type: ignore[arg-type]


def read_mhd_zip(source: str | os.PathLike | bytes) -> dict[str, Volume]:
    """Every ``{name}.mhd`` + ``.raw`` volume in a zip, by name."""
    raw_zip = source if isinstance(source, bytes) else Path(source).read_bytes()
    try:
        zf = zipfile.ZipFile(io.BytesIO(raw_zip))
    except zipfile.BadZipFile as exc:
        raise InvalidInput(f"not a zip file: {exc}") from exc
    out = {}
    with zf:
        names = {Path(n).name: n for n in zf.namelist()}
        for base, member in names.items():
            if not base.endswith(".mhd"):
                continue
            header = parse_mhd(zf.read(member).decode("ascii", "replace"))
            data_name = header.get("ElementDataFile", base[:-4] + ".raw")
            if Path(data_name).name not in names:
                raise InvalidInput(f"{base} refers to {data_name}, which is not in the zip")
            name = base[:-4]
            out[name] = volume_from_mhd(header, zf.read(names[Path(data_name).name]), name)
    return out


def read_grid_zip(source: str | os.PathLike | bytes, volume: str = "energy") -> Volume:
    """One expression volume (default ``energy``) from a ``grid_data/download`` zip;
    float32, -1 = no data."""
    vols = read_mhd_zip(source)
    if volume not in vols:
        raise InvalidInput(
            f"grid zip has no {volume} volume (has: {', '.join(sorted(vols)) or 'none'})"
        )
    vol = vols[volume]
    vol.data = vol.data.astype(np.float32, copy=False)
    return vol


def read_grid_annotation(source: str | os.PathLike | bytes,
                         shape: tuple[int, int, int] | None = None) -> Volume:
    """A grid annotation volume (structure id per voxel, 0 = outside) from the
    ``*_DevMouse2012_gridAnnotation.zip``, a ``.mhd`` beside its ``.raw``, a bare uint32
    ``.raw`` (``shape`` needed) or a ``.npy`` already indexed ``[x, y, z]``."""
    if isinstance(source, bytes) or str(source).endswith(".zip"):
        vols = read_mhd_zip(source)
        if not vols:
            raise InvalidInput("grid annotation zip holds no .mhd volume")
        vol = vols.get("gridAnnotation") or next(iter(vols.values()))
    else:
        path = Path(source)
        if path.suffix == ".npy":
            arr = np.load(path)
            if arr.ndim != 3:
                raise InvalidInput(f"{path} is not a 3-D volume")
            vol = Volume(path.stem, arr, (float("nan"),) * 3)
        elif path.suffix == ".mhd":
            header = parse_mhd(path.read_text())
            raw = path.with_name(Path(header.get("ElementDataFile", path.stem + ".raw")).name)
            vol = volume_from_mhd(header, raw.read_bytes(), path.stem)
        else:
            if shape is None:
                raise InvalidInput(f"{path}: a bare .raw needs the grid shape")
            vol = volume_from_mhd(
                {"DimSize": " ".join(map(str, shape)), "ElementType": "MET_UINT"},
                path.read_bytes(), path.stem)
    vol.data = vol.data.astype(np.uint32, copy=False)
    return vol


# --------------------------------------------------------------------------- data_set.xml


_FLOAT_RE = re.compile(r"^-?\d+\.\d*([eE][-+]?\d+)?$")


def _xml_value(el: ET.Element) -> Any:
    if el.get("nil") == "true":
        return None
    text = (el.text or "").strip()
    kind = el.get("type")
    if kind == "integer" or (kind is None and text.lstrip("-").isdigit()):
        return int(text)
    if kind == "float":
        return float(text)
    if kind == "boolean" or text in ("true", "false"):
        return text == "true"
    if kind is None and text == "":
        return None
    if kind is None and _FLOAT_RE.match(text):
        return float(text)
    return text


def _xml_record(el: ET.Element) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for child in el:
        key = child.tag.replace("-", "_")
        if len(child) and child.get("type") != "array" and key not in ("products",
                                                                       "section_images"):
            out[key] = _xml_record(child)
        elif len(child):
            out[key] = [_xml_record(c) for c in child]
        else:
            out[key] = _xml_value(child)
    return out


def read_data_set_xml(source: str | os.PathLike | bytes) -> dict[str, Any]:
    """A ``data_set.xml`` (SectionDataSet + products + specimen/donor + section images) as a
    dict with the RMA field names (dashes -> underscores, typed values, nil -> None)."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise InvalidInput(f"data_set.xml is not valid XML: {exc}") from exc
    if root.tag != "section-data-set":
        raise InvalidInput(f"data_set.xml root is <{root.tag}>, expected <section-data-set>")
    rec = _xml_record(root)
    rec.setdefault("products", [])
    rec.setdefault("section_images", [])
    return rec
