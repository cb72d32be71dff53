"""Is a warehouse file whole? Checked on the bytes, before DuckDB opens (and writes) it.

A DuckDB file is a 4 KiB main header, two 4 KiB database headers (the newer one is active)
and then fixed-size blocks (256 KiB by default). Every header and block starts with an
8-byte checksum of the rest, which DuckDB verifies only when it reads that block: a damaged
block that an ``init`` or a count does not touch goes unnoticed, and the next write can
bury the damage under a new checkpoint. :func:`check_file` reads the whole file once (about
a second per GB) and verifies:

* the main header (``DUCK`` magic and checksum) and the active database header;
* the file holds every block the header counts (a truncated file is short);
* every block's checksum (bytes overwritten). All-zero blocks are skipped: DuckDB may
  release free blocks as holes, and a zeroed used block fails DuckDB's own check anyway.

The checksum is DuckDB's (``src/common/checksum.cpp``): 5381 XOR, over the 64-bit words
after the checksum field, of ``word * 0xbf58476d1ce4e5b9`` (mod 2**64).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from ishwh.errors import InvalidInput, IshwhError, WarehouseInUse

HEADER_SIZE = 4096
_MAGIC = b"DUCK"
_MULT = np.uint64(0xBF58476D1CE4E5B9)
_SEED = np.uint64(5381)
_CHUNK_BLOCKS = 16  # blocks checked per read (4 MiB at the default block size)


class WarehouseCorrupt(IshwhError):
    """The warehouse file is damaged (truncated, or bytes overwritten)."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(
            f"warehouse {path} is damaged: {reason}; nothing was written to it",
            hint="restore it from a backup or rebuild it (`ishwh init` on a new file, then "
                 "ingest again); ishwh does not repair DuckDB files",
        )
        self.reason = reason


class NotAWarehouse(IshwhError):
    """The file is not a DuckDB database at all."""

    def __init__(self, path: str | os.PathLike):
        super().__init__(f"cannot open warehouse {path}: it is not a DuckDB file",
                         hint="check the --db path")


def _checksums(words: np.ndarray) -> np.ndarray:
    """DuckDB checksums of rows of 64-bit words (one row per block or header)."""
    with np.errstate(over="ignore"):
        return np.bitwise_xor.reduce(words * _MULT, axis=-1) ^ _SEED


def _stored_ok(buf: bytes) -> bool:
    stored = struct.unpack_from("<Q", buf)[0]
    words = np.frombuffer(buf, dtype=np.uint64, offset=8)
    return int(_checksums(words)) == stored


INTEGRITY_ENV = "ISHWH_INTEGRITY"
# ``auto`` (the default) checks every block of a warehouse up to this size before a write and
# only the headers and length above it (the full check reads ~0.3-1 GB/s, so a 10 GB
# warehouse would pay seconds on every command); ``ishwh status`` always checks every block.
AUTO_FULL_LIMIT = 2 << 30
_MODES = ("auto", "full", "quick")


def integrity_mode() -> str:
    """``$ISHWH_INTEGRITY``: ``auto`` (default), ``full`` or ``quick``."""
    mode = os.environ.get(INTEGRITY_ENV, "auto").strip().lower() or "auto"
    if mode not in _MODES:
        raise InvalidInput(f"{INTEGRITY_ENV}={mode!r} is not one of {', '.join(_MODES)}",
                           hint="unset it for the default (auto)")
    return mode


def _shared_lock(f, path: Path) -> None:
    """Take a shared POSIX lock for the check (DuckDB's writer holds an exclusive one), so
    blocks are never read while another process writes them; released on close."""
    try:
        import fcntl  # noqa: PLC0415 - POSIX only
    except ImportError:  # pragma: no cover - Windows: DuckDB locks differently
        return
    try:
        fcntl.lockf(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        raise WarehouseInUse(
            f"warehouse {path} is in use by another ishwh process",
            hint="wait for it to finish: DuckDB allows one writing process and no reader "
                 "beside it",
        ) from exc


def check_file(path: str | os.PathLike, full: bool | None = None) -> None:
    """Raise :class:`WarehouseCorrupt` if the DuckDB file at ``path`` is damaged.

    A missing or empty file passes (DuckDB creates a new database there). ``full=False``
    checks the headers and the file's length only (no block checksums). ``full=None`` follows
    ``$ISHWH_INTEGRITY`` (:func:`integrity_mode`): ``auto`` is full up to
    :data:`AUTO_FULL_LIMIT` bytes and quick above it.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    if full is None:
        mode = integrity_mode()
        full = mode == "full" or (mode == "auto" and size <= AUTO_FULL_LIMIT)
    if size == 0:
        return
    with path.open("rb") as f:
        _shared_lock(f, path)  # a writer in another process may be mid-checkpoint
        head = f.read(3 * HEADER_SIZE)
        if len(head) < 3 * HEADER_SIZE:
            if _MAGIC not in head[:16]:
                raise NotAWarehouse(path)
            raise WarehouseCorrupt(path, f"the file is cut short ({size:,} bytes)")
        if head[8:12] != _MAGIC:
            raise NotAWarehouse(path)
        if not _stored_ok(head[:HEADER_SIZE]):
            raise WarehouseCorrupt(path, "the main header fails its checksum")
        headers = []
        for i in (1, 2):
            buf = head[i * HEADER_SIZE:(i + 1) * HEADER_SIZE]
            if _stored_ok(buf):
                iteration, _, _, block_count, block_size = struct.unpack_from("<5Q", buf, 8)
                headers.append((iteration, block_count, block_size))
        if not headers:
            raise WarehouseCorrupt(path, "both database headers fail their checksums")
        _, block_count, block_size = max(headers)
        if not (4096 <= block_size <= 1 << 30) or block_size % 8:
            raise WarehouseCorrupt(path, f"the header names an impossible block size "
                                         f"({block_size})")
        have, partial = divmod(size - 3 * HEADER_SIZE, block_size)
        if have < block_count and partial:
            raise WarehouseCorrupt(
                path, f"the file is cut short: it holds {have:,} of its {block_count:,} "
                      f"blocks ({size:,} bytes)")
        # Whole blocks missing at the end are DuckDB's own doing: a checkpoint truncates
        # trailing free blocks without lowering the header's count (seen after large
        # deletes). A used block cut off is reported by DuckDB itself when read.
        block_count = min(block_count, have)
        block = 0
        while full and block < block_count:
            n = min(_CHUNK_BLOCKS, block_count - block)
            data = f.read(n * block_size)
            if len(data) < n * block_size:
                raise WarehouseCorrupt(path, f"short read at block {block:,}")
            words = np.frombuffer(data, dtype=np.uint64).reshape(n, block_size // 8)
            stored, body = words[:, 0], words[:, 1:]
            bad = (_checksums(body) != stored) & body.any(axis=1) | \
                  ((stored != 0) & ~body.any(axis=1) & (stored != _SEED))
            if bad.any():
                first = block + int(np.argmax(bad))
                raise WarehouseCorrupt(
                    path, f"block {first:,} of {block_count:,} fails its checksum "
                          "(bytes overwritten)")
            block += n


def is_corruption(exc: BaseException) -> bool:
    """Whether a DuckDB error reports a damaged file (checksum mismatch, short read)."""
    text = str(exc).lower()
    return any(k in text for k in ("checksum", "could not read enough bytes",
                                   "corrupt", "not a valid duckdb database file"))
