"""Failures of the machine rather than of the input: disk full, read-only or missing folders.

:func:`environment_error` turns an ``OSError`` (or a DuckDB I/O error that wraps one) into a
named one-line :class:`EnvironmentProblem` with a hint; the CLI applies it to any error that
escaped the library, so such failures never read "unexpected".
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ishwh.errors import IshwhError


class EnvironmentProblem(IshwhError):
    """The machine refused: no space left, a read-only or missing folder, no permission."""


_BY_ERRNO = {
    errno.ENOSPC: ("no space left on the device", "free some space and run it again; "
                   "finished work is kept and the rerun resumes"),
    errno.EDQUOT: ("disk quota exceeded", "free some space and run it again"),
    errno.EFBIG: ("file too large for this file system or process limit",
                  "free space or raise the file-size limit (ulimit -f) and run it again"),
    errno.EACCES: ("permission denied", "choose a folder you may write to, or fix its "
                   "permissions"),
    errno.EPERM: ("operation not permitted", "choose a folder you may write to"),
    errno.EROFS: ("the file system is read-only", "choose a writable folder"),
    errno.ENOENT: ("no such file or folder", "check the path; create missing folders first"),
    errno.ENOTDIR: ("a part of the path is not a folder", "check the path"),
    errno.EISDIR: ("it is a folder, not a file", "give a file path"),
}

_DUCKDB_TEXT = {
    "no space left": errno.ENOSPC,
    "disk quota": errno.EDQUOT,
    "file too large": errno.EFBIG,
    "read-only file system": errno.EROFS,
    "permission denied": errno.EACCES,
    "not a directory": errno.ENOTDIR,
}


def environment_error(exc: BaseException, path: str | os.PathLike | None = None
                      ) -> EnvironmentProblem | None:
    """A named error for an operating-system failure, or None if ``exc`` is not one."""
    if isinstance(exc, OSError) and exc.errno in _BY_ERRNO:
        code = exc.errno
        path = path or exc.filename
    else:
        text = str(exc).lower()
        code = next((c for key, c in _DUCKDB_TEXT.items() if key in text), None)
        if code is None or not (isinstance(exc, OSError) or type(exc).__module__.startswith(
                ("duckdb", "_duckdb"))):
            return None
    reason, hint = _BY_ERRNO[code]
    where = f" {path}" if path else ""
    return EnvironmentProblem(f"cannot write{where}: {reason}" if code not in
                              (errno.ENOENT, errno.ENOTDIR) else f"cannot use{where}: {reason}",
                              hint=hint)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def remove_stale_parts(folder: Path, pattern: str = "*/*.part") -> int:
    """Delete temporary ``*.part`` files that a killed writer left in ``folder``; return how
    many. Files of a process that is still running are kept (it may be writing them)."""
    removed = 0
    if not folder.is_dir():
        return 0
    for part in folder.glob(pattern):
        bits = part.name.split(".")
        # <name>.<pid>.<thread>.part (images, Allen cache) or .<name>.<pid>.part (exports)
        pid = None
        if len(bits) >= 4 and bits[-2].isdigit() and bits[-3].isdigit():
            pid = int(bits[-3])
        elif len(bits) >= 3 and bits[-2].isdigit():
            pid = int(bits[-2])
        if pid is not None and _pid_alive(pid):
            continue
        try:
            part.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    return removed
