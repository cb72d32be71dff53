"""Decoding sections in worker processes (OpenCV and numpy only: no torch here).

Workers are started with ``spawn`` and import only this module (and :mod:`.bow`), so they
start in a fraction of a second and never inherit a parent's thread pools (forking a
process that has used OpenMP/oneDNN threads can deadlock the child).
"""

from __future__ import annotations

import os
import sys
import threading
import time
import types
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import cv2
import numpy as np

from ishwh.errors import InvalidInput
from ishwh.images import check_pixels, decode_rgb

_REDUCED = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
            8: cv2.IMREAD_REDUCED_COLOR_8}


def looks_truncated(data: np.ndarray) -> bool:
    """True for a PNG without its IEND chunk or a JPEG without its end marker.

    Decoders often return a partly grey image for a cut-off file instead of failing.
    """
    head = data[:8].tobytes()
    if head.startswith(b"\x89PNG"):
        return b"IEND" not in data[-16:].tobytes()
    if head.startswith(b"\xff\xd8"):
        return b"\xff\xd9" not in data[-64:].tobytes()
    return False


def read_bytes(path: str | os.PathLike) -> np.ndarray:
    """The bytes of an image file; :class:`InvalidInput` when missing, empty or truncated."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise InvalidInput(f"cannot read image {path}: {exc.strerror or exc}") from exc
    if data.size == 0 or looks_truncated(data):
        raise InvalidInput(f"cannot read image {path}: empty or truncated file")
    check_pixels(path, data)  # a decompression bomb is refused from its header
    return data


def decode_for_cnn(path: str | os.PathLike, size: int, width: int | None = None,
                   height: int | None = None, data: np.ndarray | None = None) -> np.ndarray:
    """Read one section as a (size, size, 3) uint8 RGB array ready for the network.

    The whole section is resized (squashed) to size x size. ``width``/``height`` (from the
    warehouse) let large files be decoded at 1/2, 1/4 or 1/8 resolution when that still
    leaves ``size`` pixels (JPEG does this while decoding, several times faster).
    ``data``: the file's bytes when they were already read (e.g. from a URL); ``path`` then
    only names the image in messages.
    """
    data = read_bytes(path) if data is None else data
    factor = 1
    if width and height:
        for f in (8, 4, 2):
            if min(width, height) // f >= size:
                factor = f
                break
    # IMREAD_COLOR: 8-bit BGR whatever the file (gray repeated, 16-bit scaled, alpha dropped).
    img = imdecode(path, data, _REDUCED.get(factor, cv2.IMREAD_COLOR))
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def imdecode(path: str | os.PathLike, data: np.ndarray, flag: int,
             from_rgb: int = cv2.COLOR_RGB2BGR, reduce: int = 1) -> np.ndarray:
    """``cv2.imdecode(data, flag)``. A file OpenCV's fast path cannot read (float pixels, an
    image smaller than a reduce factor) is decoded whole as ingest reads it
    (:func:`ishwh.images.decode_rgb`), converted with ``from_rgb`` (default: to BGR, as
    ``IMREAD_COLOR`` gives) and shrunk ``reduce`` times (the factor of a reduced ``flag``);
    :class:`InvalidInput` naming ``path`` when neither can read it."""
    try:
        img = cv2.imdecode(data, flag)
    except cv2.error:
        img = None
    if img is None:  # e.g. float pixels: decode it whole, as ingest did
        rgb = decode_rgb(data)
        if rgb is None:
            raise InvalidInput(f"cannot read image {path}: not a readable PNG, JPEG or TIFF")
        img = cv2.cvtColor(rgb, from_rgb)
        if reduce > 1:
            h, w = img.shape[:2]
            img = cv2.resize(img, (max(1, w // reduce), max(1, h // reduce)),
                             interpolation=cv2.INTER_AREA)
    return img


def decode_batch(job: tuple[Sequence[tuple[int, str, int, int]], int]):
    """Worker: decode a batch; returns ``(ok indices, (n, S, S, 3) images or None, errors)``."""
    items, size = job
    idx, imgs, errors = [], [], []
    for i, path, w, h in items:
        try:
            imgs.append(decode_for_cnn(path, size, w, h))
            idx.append(i)
        except Exception as exc:  # noqa: BLE001 - reported per section by the caller
            errors.append((i, str(getattr(exc, "message", exc))))
    return np.asarray(idx, dtype=np.int64), (np.stack(imgs) if imgs else None), errors


# --------------------------------------------------------------------------- worker pool


def _watch_parent(ppid: int) -> None:
    # A worker whose parent was killed (SIGKILL) would wait on its queue forever.
    while True:
        time.sleep(0.5)
        if os.getppid() != ppid:
            os._exit(0)


def worker_init(ppid: int, setup: Callable[..., None] | None = None, args: tuple = ()) -> None:
    """Initialiser of every worker: one OpenCV thread, exit with the parent, then ``setup``."""
    cv2.setNumThreads(1)
    threading.Thread(target=_watch_parent, args=(ppid,), daemon=True).start()
    if setup is not None:
        setup(*args)


@contextmanager
def _main_not_reimported() -> Iterator[None]:
    """Start spawned workers without re-running the caller's ``__main__`` script.

    ``spawn`` normally imports the parent's main module in every child, which re-runs an
    unguarded user script (and refuses to start at all). Our workers need only ishwh
    modules, so for the instant a worker is started the main module looks empty.
    """
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


def ordered_map(fn: Callable[[Any], Any], jobs: Iterable[Any], workers: int,
                setup: Callable[..., None] | None = None, args: tuple = (),
                window: int | None = None) -> Iterator[Any]:
    """``map(fn, jobs)`` over ``workers`` spawned processes, in order, at most ``window``
    jobs in flight (so decoded images never pile up faster than they are consumed).

    ``workers == 0`` runs everything in this process.
    """
    if workers == 0:
        if setup is not None:
            setup(*args)
        yield from map(fn, jobs)
        return
    import multiprocessing as mp  # noqa: PLC0415
    from concurrent.futures import ProcessPoolExecutor  # noqa: PLC0415

    window = window or 2 * workers + 2
    ex = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                             initializer=worker_init, initargs=(os.getpid(), setup, args))
    pending: deque = deque()
    try:
        it = iter(jobs)
        for job in it:
            with _main_not_reimported():  # a submit may start a worker
                pending.append(ex.submit(fn, job))
            if len(pending) >= window:
                break
        while pending:
            fut = pending.popleft()
            for job in it:  # keep the window full
                with _main_not_reimported():
                    pending.append(ex.submit(fn, job))
                break
            yield fut.result()
    finally:
        ex.shutdown(wait=True, cancel_futures=True)
