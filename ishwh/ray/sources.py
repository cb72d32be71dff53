"""Reading section files on the Ray workers: a folder every node sees at the same path, or a
URL (``file://``, ``s3://``, ``gs://``, ``hdfs://``) that ``pyarrow.fs`` opens.

The warehouse stores image paths relative to its image folder; the workers resolve them under
the *image source* (``RayOptions.images``; default: the warehouse's own image folder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ishwh import warehouse
from ishwh.errors import InvalidInput


def image_root(db_path: str | Path, images: str | None) -> str:
    """The image source as the workers see it: a URL, or an absolute folder (workers do not
    share the driver's working directory)."""
    root = images or str(warehouse.images_dir(db_path))
    return root if "://" in root else str(Path(root).resolve())


def image_name(root: str, relpath: str) -> str:
    """The name of a section file under the image source (as messages show it)."""
    return root.rstrip("/") + "/" + relpath if "://" in root else str(Path(root) / relpath)


def read_image(root: str, relpath: str) -> tuple[str, np.ndarray]:
    """``(name, bytes)`` of one section file under ``root`` (a folder or a URL).

    Runs on the workers. Missing, empty or truncated files raise :class:`InvalidInput`
    naming the file, as the local engine does.
    """
    from ishwh.features.imageio import looks_truncated, read_bytes  # noqa: PLC0415

    name = image_name(root, relpath)
    if "://" not in root:
        return name, read_bytes(name)
    import pyarrow.fs as pafs  # noqa: PLC0415

    try:
        fs, path = pafs.FileSystem.from_uri(name)
        with fs.open_input_stream(path) as f:
            data = np.frombuffer(f.readall(), dtype=np.uint8)
    except (OSError, ValueError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidInput(f"cannot read image {name}: {msg}") from exc
    if data.size == 0 or looks_truncated(data):
        raise InvalidInput(f"cannot read image {name}: empty or truncated file")
    return name, data


def _probe_read(root: str, relpath: str) -> str | None:
    """Ray task of the preflight: ``None`` when a worker reads one section, else why not."""
    try:
        read_image(root, relpath)
    except Exception as exc:  # noqa: BLE001 - turned into one line by the driver
        return str(getattr(exc, "message", exc))
    return None


def preflight(ray: Any, root: str, relpath: str) -> None:
    """One Ray task reads one section: a cluster that cannot see the images fails here, in
    one line, before anything is written."""
    why = ray.get(ray.remote(num_cpus=0.01)(_probe_read).remote(root, relpath))
    if why is not None:
        raise InvalidInput(f"the Ray workers cannot read the images: {why}",
                           hint="the image source must be readable from every worker: a "
                                "shared folder, or a URL (file://, s3://, gs://) given as "
                                "the image source", param="images")


# --------------------------------------------------------------------------- decoders
# What a read task makes of one file's bytes, per extractor: (name, bytes, width, height)
# -> array. Each calls the local engine's own decoding.


def for_cnn(name: str, data: np.ndarray, width: int, height: int, size: int) -> np.ndarray:
    """The (size, size, 3) network input (:func:`~ishwh.features.imageio.decode_for_cnn`)."""
    from ishwh.features.imageio import decode_for_cnn  # noqa: PLC0415

    return decode_for_cnn(name, size, width, height, data=data)


def for_bow(name: str, data: np.ndarray, width: int, height: int, downsample: int
            ) -> np.ndarray:
    """The reduced gray image dense SIFT runs on (:func:`~ishwh.features.bow.read_gray`)."""
    from ishwh.features.bow import read_gray  # noqa: PLC0415

    return read_gray(name, downsample, data=data)


def for_atlas(name: str, data: np.ndarray, width: int, height: int,
              cnn: tuple[int, int] | None = None) -> tuple:
    """The full gray image registration and stain measurement run on
    (:func:`~ishwh.atlas.runner.read_gray`); with ``cnn`` (input size, stride) also the
    ``atlas.cnn`` network input and its scale (:func:`~ishwh.atlas.cnn_features.prepare_input`)."""
    from ishwh.atlas.runner import read_color, read_gray  # noqa: PLC0415

    gray = read_gray(name, data)
    if cnn is None:
        return (gray,)
    from ishwh.atlas.cnn_features import prepare_input  # noqa: PLC0415

    return (gray, *prepare_input(read_color(name, data), *cnn))


DECODERS = {"cnn": for_cnn, "bow": for_bow, "atlas": for_atlas}
