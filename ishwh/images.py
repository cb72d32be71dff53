"""Image files: reading ISH sections (PNG, JPEG, TIFF; RGB or gray) and storing them in a
warehouse's image folder under content-addressed names (so re-ingesting is a no-op)."""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ishwh.errors import InvalidInput

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff"}


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Decode an image as an (H, W, 3) uint8 RGB array.

    Gray images are repeated over three channels; 16-bit images are scaled to 8 bits;
    an alpha channel is dropped. Raises :class:`InvalidInput` for an unreadable file.
    """
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise InvalidInput(f"cannot read image {path}: not a readable PNG, JPEG or TIFF")
    if img.dtype == np.uint16:
        img = (img / 257.0).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        img = cv2.normalize(img.astype(np.float32), None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    if img.shape[2] == 4:
        img = img[:, :, :3]
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


@dataclass(frozen=True)
class StoredImage:
    relpath: str   # relative to the warehouse image folder
    sha256: str
    width: int
    height: int


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of an image, decoding it fully (which also proves it is readable)."""
    img = read_rgb(path)
    return int(img.shape[1]), int(img.shape[0])


def store_image(src: str | os.PathLike, images_root: Path, *, link: bool = False) -> StoredImage:
    """Copy (or hard/sym-link) an image into ``images_root`` under its sha256 name."""
    src = Path(src)
    width, height = image_size(src)
    digest = sha256_file(src)
    suffix = src.suffix.lower() if src.suffix.lower() in IMAGE_SUFFIXES else ".img"
    rel = f"{digest[:2]}/{digest}{suffix}"
    dest = images_root / rel
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        if link:
            try:
                os.link(src, tmp)
            except OSError:
                tmp.symlink_to(src.resolve())
        else:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dest)  # atomic: a killed copy never looks finished
    return StoredImage(rel, digest, width, height)


def store_array(img: np.ndarray, images_root: Path, fmt: str = ".png") -> StoredImage:
    """Encode an RGB array and store it content-addressed (for generated images)."""
    ok, buf = cv2.imencode(fmt, cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    if not ok:
        raise InvalidInput(f"cannot encode image as {fmt}")
    data = buf.tobytes()
    digest = hashlib.sha256(data).hexdigest()
    rel = f"{digest[:2]}/{digest}{fmt}"
    dest = images_root / rel
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        tmp.write_bytes(data)
        os.replace(tmp, dest)
    return StoredImage(rel, digest, int(img.shape[1]), int(img.shape[0]))
