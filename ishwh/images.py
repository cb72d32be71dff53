"""Image files: reading ISH sections (PNG, JPEG, TIFF; RGB or gray) and storing them in a
warehouse's image folder under content-addressed names (so re-ingesting is a no-op)."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ishwh.environment import environment_error
from ishwh.errors import InvalidInput

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff"}

# The largest image ishwh decodes, in pixels (width x height). A compressed file can claim
# any size: a 109 KB PNG of 30,000 x 30,000 pixels takes 3.8 GB to decode. 250 million
# pixels is ~750 MB decoded as RGB and well above a full-resolution Allen ISH section.
# Override with the environment variable ISHWH_MAX_PIXELS or the ``max_pixels`` argument.
DEFAULT_MAX_PIXELS = 250_000_000
MAX_PIXELS_ENV = "ISHWH_MAX_PIXELS"

# ishwh applies its own limit (above) before any decode; PIL's own check would refuse
# large-but-allowed images with a different message, so it is off for PIL's header reads.
Image.MAX_IMAGE_PIXELS = None


class ImageTooLarge(InvalidInput):
    """An image whose header claims more pixels than the limit (a decompression bomb).
    ``reason`` is the message without the file name (for file:line reports)."""

    reason = ""


def pixel_limit(max_pixels: int | None = None) -> int:
    """The pixel limit in force: ``max_pixels``, else ``$ISHWH_MAX_PIXELS``, else the default."""
    if max_pixels is not None:
        return int(max_pixels)
    text = os.environ.get(MAX_PIXELS_ENV, "").strip().replace("_", "")
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(float(text))
    except ValueError:
        value = 0
    if value <= 0:
        raise InvalidInput(f"{MAX_PIXELS_ENV}={os.environ[MAX_PIXELS_ENV]!r} is not a positive "
                           "number of pixels", hint="e.g. ISHWH_MAX_PIXELS=250000000")
    return value


def header_size(source: str | os.PathLike | bytes | np.ndarray) -> tuple[int, int] | None:
    """(width, height) from an image file's header, without decoding the pixels; None when
    the header cannot be read (the decoder will then say what is wrong)."""
    try:
        if isinstance(source, np.ndarray | bytes):
            fp = io.BytesIO(source if isinstance(source, bytes) else source.tobytes())
            with Image.open(fp) as im:
                return int(im.size[0]), int(im.size[1])
        with Image.open(source) as im:
            return int(im.size[0]), int(im.size[1])
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def check_pixels(
    path: str | os.PathLike, source: str | os.PathLike | bytes | np.ndarray | None = None,
    max_pixels: int | None = None,
) -> None:
    """Refuse an image whose header claims more pixels than :func:`pixel_limit` allows.

    ``source``: the file's bytes if already read (else the file at ``path`` is opened).
    """
    size = header_size(path if source is None else source)
    if size is None:
        return
    limit = pixel_limit(max_pixels)
    w, h = size
    if w * h > limit:
        reason = f"image too large: {w:,} x {h:,} pixels (limit {limit:,})"
        exc = ImageTooLarge(f"{path}: {reason}",
                            hint=f"set {MAX_PIXELS_ENV} to allow larger images")
        exc.reason = reason
        raise exc


def read_rgb(path: str | os.PathLike, max_pixels: int | None = None) -> np.ndarray:
    """Decode an image as an (H, W, 3) uint8 RGB array.

    Gray images are repeated over three channels; 16-bit images are scaled to 8 bits;
    an alpha channel is dropped. Raises :class:`InvalidInput` for an unreadable file and
    :class:`ImageTooLarge` (before decoding) above the pixel limit.
    """
    data = np.fromfile(str(path), dtype=np.uint8)
    check_pixels(path, data, max_pixels)
    img = decode_rgb(data)
    if img is None:
        raise InvalidInput(f"cannot read image {path}: not a readable PNG, JPEG or TIFF")
    return img


def decode_rgb(data: np.ndarray) -> np.ndarray | None:
    """A file's bytes decoded whole as (H, W, 3) uint8 RGB whatever its pixel type (8/16-bit,
    float, gray, alpha), as ingest reads it; None when unreadable. The featurizers' fast
    decoders fall back to it for files they cannot read."""
    try:
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    except cv2.error:  # a damaged file can fail inside the decoder rather than return None
        return None
    return None if img is None else _to_rgb(img)


def _to_rgb(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint16:
        img = (img / 257.0).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        img = cv2.normalize(img.astype(np.float32), None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if img.ndim == 3 and img.shape[2] <= 2:  # gray (+ alpha)
        img = img[:, :, 0]
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


def image_size(path: str | os.PathLike, max_pixels: int | None = None) -> tuple[int, int]:
    """(width, height) of an image, decoding it fully (which also proves it is readable);
    an image above the pixel limit is refused from its header, before decoding."""
    img = read_rgb(path, max_pixels)
    return int(img.shape[1]), int(img.shape[0])


def content_relpath(src: str | os.PathLike, digest: str) -> str:
    """Where an image with this sha256 lives, relative to the image folder."""
    suffix = Path(src).suffix.lower()
    suffix = suffix if suffix in IMAGE_SUFFIXES else ".img"
    return f"{digest[:2]}/{digest}{suffix}"


def _temp_name(dest: Path) -> Path:
    """A temp name beside ``dest`` unique to this process and thread, so concurrent writers
    of the same content never share a half-written file (the final rename is atomic)."""
    return dest.with_name(f"{dest.name}.{os.getpid()}.{threading.get_ident()}.part")


def place_image(
    src: str | os.PathLike, images_root: Path, digest: str, *, link: bool = False
) -> str:
    """Put an already checked image at its content-addressed place; return the relative path.

    No decoding here: callers that validated the file (size read, sha256 computed) should
    not pay for a second decode. An existing file with that name is left alone (same bytes).
    """
    src = Path(src)
    rel = content_relpath(src, digest)
    dest = images_root / rel
    if dest.is_symlink() and not dest.exists():
        dest.unlink()  # a dangling link from an older ishwh: place the file again
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = _temp_name(dest)
        # The real file, never a link to it: os.link on a (relative) symlink would store
        # the link itself, which dangles once it sits in the image folder.
        real = src.resolve(strict=True)
        try:
            if link:
                try:
                    os.link(real, tmp)
                except OSError:  # another file system: fall back to a symbolic link
                    tmp.symlink_to(real)
            else:
                shutil.copyfile(real, tmp)
            os.replace(tmp, dest)  # atomic: a killed copy never looks finished
        except OSError as exc:  # disk full, read-only image folder: name the image folder
            named = environment_error(exc, images_root)
            if named is None:
                raise
            raise named from exc
        finally:
            tmp.unlink(missing_ok=True)  # a failed copy (disk full) leaves no part file
        if not dest.exists():
            raise InvalidInput(f"stored image {dest} does not resolve to a file")
    return rel


def store_image(src: str | os.PathLike, images_root: Path, *, link: bool = False) -> StoredImage:
    """Copy (or hard/sym-link) an image into ``images_root`` under its sha256 name."""
    width, height = image_size(src)
    digest = sha256_file(src)
    rel = place_image(src, images_root, digest, link=link)
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
        tmp = _temp_name(dest)
        try:
            tmp.write_bytes(data)
            os.replace(tmp, dest)
        except OSError as exc:  # disk full, read-only image folder: named, no part file left
            named = environment_error(exc, images_root)
            if named is None:
                raise
            raise named from exc
        finally:
            tmp.unlink(missing_ok=True)
    return StoredImage(rel, digest, int(img.shape[1]), int(img.shape[0]))
