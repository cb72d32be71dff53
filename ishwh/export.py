"""Writing files out of a warehouse safely: query results (``ishwh sql --out``) and reports.

Every file ishwh exports follows the same rules:

* it never replaces the warehouse file, its write-ahead log or anything in its image folder;
* it never replaces an existing file unless asked (``force``);
* a missing output folder is an error that says so (nothing is created behind the user's back
  for a single-file export);
* it is written to a temporary file beside the target and renamed into place, so a killed or
  failed export leaves either the old file or the new one, never half of one, and no
  temporary file (``.<name>.<pid>.part``) stays behind after a failure.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa

from ishwh.environment import environment_error
from ishwh.errors import InvalidInput, IshwhError
from ishwh.warehouse import images_dir

TEMP_SUFFIX = ".part"


class OutputRefused(IshwhError):
    """An export would overwrite something it must not (the warehouse, an existing file)."""


def protected_paths(db_path: str | os.PathLike) -> list[Path]:
    """The warehouse file, its WAL and its image folder (resolved)."""
    db = Path(db_path).resolve()
    return [db, Path(str(db) + ".wal"), images_dir(db).resolve()]


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_target(
    path: str | os.PathLike, db_path: str | os.PathLike | None, *, force: bool = False,
    folder: bool = False,
) -> Path:
    """Refuse an output path that is the warehouse (or its WAL or image folder), an existing
    file (unless ``force``), or lies in a folder that does not exist. Returns the path.

    ``folder``: the target is a folder to write into (a report); it may exist, it may not be
    a file, and its parent must exist.
    """
    out = Path(path)
    resolved = out.resolve()
    if db_path is not None:
        db, wal, imgs = protected_paths(db_path)
        if resolved in (db, wal) or _inside(resolved, imgs):
            raise OutputRefused(
                f"refusing to write {out}: it is the warehouse {db_path} or part of it",
                hint="choose another output path",
            )
    if folder:  # a report folder: made (with its parents) if missing
        if out.exists() and not out.is_dir():
            raise OutputRefused(f"{out} exists and is not a folder", hint="choose another path")
        return out
    else:
        if out.is_dir():
            raise OutputRefused(f"{out} is a folder, not a file", hint="give a file name")
        if out.exists() and not force:
            raise OutputRefused(f"{out} already exists", hint="pass --force to replace it")
        parent = resolved.parent
    if not parent.is_dir():
        what = "is not a folder" if parent.exists() else "does not exist"
        raise InvalidInput(f"the folder {parent} of {out} {what}",
                           hint="create it first or choose another path")
    return out


def temp_path(dest: Path) -> Path:
    """A temporary name beside ``dest``, unique to this process."""
    return dest.with_name(f".{dest.name}.{os.getpid()}{TEMP_SUFFIX}")


def os_error(exc: OSError, path: str | os.PathLike) -> IshwhError:
    """An operating-system failure while writing ``path`` as a named one-line error."""
    return environment_error(exc, path) or IshwhError(
        f"cannot write {path}: {exc.strerror or exc}")


@contextmanager
def atomic_target(dest: str | os.PathLike, *, replace: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write; on success rename it onto ``dest`` (atomic), on any
    failure remove it. ``replace=False`` refuses to replace a file that appeared meanwhile."""
    dest = Path(dest)
    tmp = temp_path(dest)
    try:
        yield tmp
        if replace:
            os.replace(tmp, dest)
        else:
            try:
                os.link(tmp, dest)  # fails if dest exists: no race with another writer
            except FileExistsError:
                raise OutputRefused(f"{dest} already exists",
                                    hint="pass --force to replace it") from None
            except OSError:  # a file system without hard links
                if dest.exists():
                    raise OutputRefused(f"{dest} already exists",
                                        hint="pass --force to replace it") from None
                os.replace(tmp, dest)
    except OSError as exc:
        raise os_error(exc, dest) from exc
    finally:
        tmp.unlink(missing_ok=True)


def write_file(
    dest: str | os.PathLike, write: Callable[[Path], object], *,
    db_path: str | os.PathLike | None = None, force: bool = False,
) -> Path:
    """Check ``dest`` (see :func:`check_target`) and write it atomically with ``write(tmp)``."""
    dest = check_target(dest, db_path, force=force)
    with atomic_target(dest, replace=force) as tmp:
        write(tmp)
    return dest


def write_query_result(
    table: pa.Table, fmt: str, dest: str | os.PathLike, *, db_path: str | os.PathLike,
    force: bool = False,
) -> Path:
    """Write a query result as csv / json / parquet to ``dest`` under the export rules."""
    from ishwh.query import write_table  # noqa: PLC0415

    return write_file(dest, lambda tmp: write_table(table, fmt, tmp), db_path=db_path,
                      force=force)
