"""Opening a warehouse: one DuckDB file plus an image folder beside it.

This is the one place that talks to ``duckdb.connect``. It translates DuckDB's lock and
catalog errors into :mod:`ishwh.errors`, applies numbered migrations (each file and its
version row in one transaction), and re-creates the views in ``sql/``.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from ishwh.environment import environment_error, remove_stale_parts
from ishwh.errors import IshwhError, SchemaError, WarehouseInUse, WarehouseNotFound
from ishwh.integrity import WarehouseCorrupt, check_file, is_corruption
from ishwh.resources import resource_dir

DEFAULT_DB = "ishwh.duckdb"
_MIGRATION_RE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def default_db_path() -> Path:
    """``$ISHWH_DB`` if set, else ``./ishwh.duckdb``."""
    return Path(os.environ.get("ISHWH_DB") or DEFAULT_DB)


def images_dir(db_path: str | os.PathLike) -> Path:
    """The image folder that belongs to a warehouse file: ``<stem>_images/`` beside it."""
    p = Path(db_path)
    return p.with_name(p.stem + "_images")


# --------------------------------------------------------------------------- migrations


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def available_migrations(folder: Path | None = None) -> list[Migration]:
    """The migration files shipped with this ishwh, in version order."""
    folder = folder or resource_dir("migrations")
    out = []
    for path in sorted(folder.glob("*.sql")):
        m = _MIGRATION_RE.match(path.name)
        if not m:
            raise SchemaError(f"migration file {path.name} is not named NNNN_name.sql")
        out.append(Migration(int(m.group(1)), path.stem, path))
    versions = [m.version for m in out]
    if len(set(versions)) != len(versions):
        raise SchemaError("two migration files share a version number")
    return out


_VERSION_TABLE = """
create table if not exists schema_migrations (
    version    integer primary key,
    name       varchar not null,
    checksum   varchar not null,
    applied_at timestamp not null
)
"""


def _has_version_table(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(
        con.execute(
            "select count(*) from information_schema.tables "
            "where table_schema = 'main' and table_name = 'schema_migrations'"
        ).fetchall()[0][0]
    )


def applied_migrations(con: duckdb.DuckDBPyConnection) -> dict[int, tuple[str, str]]:
    """``{version: (name, checksum)}`` of the migrations recorded in the warehouse."""
    if not _has_version_table(con):
        return {}
    rows = con.execute("select version, name, checksum from schema_migrations").fetchall()
    return {v: (n, c) for v, n, c in rows}


def check_schema(
    con: duckdb.DuckDBPyConnection, migrations: list[Migration] | None = None
) -> list[Migration]:
    """Validate the recorded migrations against the shipped ones; return the pending ones.

    Raises :class:`SchemaError` when the warehouse is newer than this code or an applied
    migration file was edited since (checksum mismatch).
    """
    migrations = available_migrations() if migrations is None else migrations
    applied = applied_migrations(con)
    code_version = max((m.version for m in migrations), default=0)
    db_version = max(applied, default=0)
    if db_version > code_version:
        raise SchemaError(
            f"warehouse schema v{db_version} is newer than this ishwh (v{code_version}); "
            "upgrade ishwh"
        )
    by_version = {m.version: m for m in migrations}
    for version, (name, checksum) in sorted(applied.items()):
        m = by_version.get(version)
        if m is None:
            raise SchemaError(f"applied migration {version:04d} ({name}) is missing from ishwh")
        if m.checksum != checksum:
            raise SchemaError(
                f"migration {m.path.name} was edited after it was applied (checksum mismatch)",
                hint="migrations are append-only: restore the file and add a new migration",
            )
    return [m for m in migrations if m.version not in applied]


def migrate(
    con: duckdb.DuckDBPyConnection, migrations: list[Migration] | None = None
) -> list[Migration]:
    """Apply pending migrations in order, each with its version row in one transaction.

    A migration that fails is rolled back and stays pending. Views are re-created afterwards.
    Returns the migrations applied now.
    """
    migrations = available_migrations() if migrations is None else migrations
    con.execute(_VERSION_TABLE)
    pending = check_schema(con, migrations)
    done = []
    for m in pending:
        con.execute("begin transaction")
        try:
            con.execute(m.sql)
            con.execute(
                "insert into schema_migrations values (?, ?, ?, ?)",
                [m.version, m.name, m.checksum, datetime.now(UTC).replace(tzinfo=None)],
            )
            con.execute("commit")
        except duckdb.Error as exc:
            con.execute("rollback")
            raise SchemaError(f"migration {m.path.name} failed and was rolled back: {exc}") from exc
        done.append(m)
    create_views(con)
    return done


def view_files() -> list[Path]:
    """The view definitions: every ``sql/*.sql`` file (named queries live in sub-folders)."""
    return sorted(resource_dir("sql").glob("*.sql"))


_VIEWS_TABLE = """
create table if not exists schema_views (
    checksum   varchar not null,
    created_at timestamp not null
)
"""


def views_checksum() -> str:
    """sha256 over the view files shipped with this ishwh (names and contents)."""
    h = hashlib.sha256()
    for path in view_files():
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def views_current(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the warehouse's views were made from this ishwh's ``sql/`` files."""
    exists = con.execute(
        "select count(*) from information_schema.tables "
        "where table_schema = 'main' and table_name = 'schema_views'"
    ).fetchall()[0][0]
    if not exists:
        return False
    rows = con.execute("select checksum from schema_views").fetchall()
    if [r[0] for r in rows] != [views_checksum()]:
        return False
    # A view dropped (or replaced by a table) by hand since: the checksum cannot tell.
    views = {r[0] for r in con.execute(
        "select table_name from information_schema.tables "
        "where table_schema = 'main' and table_type = 'VIEW'").fetchall()}
    return all(path.stem in views for path in view_files())


def create_views(con: duckdb.DuckDBPyConnection) -> None:
    """(Re-)create every view in ``sql/``; files may depend on each other in any order.

    Records the checksum of the view files, so that opening a warehouse made by another
    ishwh version notices views that are missing or out of date.
    """
    pending = view_files()
    while pending:
        failed, last_error = [], None
        for path in pending:
            try:
                con.execute(path.read_text(encoding="utf-8"))
            except duckdb.Error as exc:
                # Depends on a view not (re-)made yet: a missing one gives a catalog error,
                # an old definition still in the file a binder error. Retry after the rest.
                failed.append(path)
                last_error = exc
        if len(failed) == len(pending):
            raise SchemaError(f"cannot create view {failed[0].name}: {last_error}")
        pending = failed
    con.execute(_VIEWS_TABLE)
    con.execute("delete from schema_views").fetchall()
    con.execute(
        "insert into schema_views values (?, ?)",
        [views_checksum(), datetime.now(UTC).replace(tzinfo=None)],
    ).fetchall()


# --------------------------------------------------------------------------- connecting


# Warehouse files this process holds open (resolved path -> connections). POSIX file locks
# belong to the process and closing *any* descriptor of the file drops them all, so the
# integrity check, which opens and closes the file, must not run while DuckDB holds it here.
_OPEN_HERE: Counter[str] = Counter()


def verify_file(db_path: str | os.PathLike, full: bool | None = None) -> None:
    """Check the warehouse file for damage (:func:`ishwh.integrity.check_file`; ``full``
    as there) unless this process already has it open (it was checked when first opened)."""
    if _OPEN_HERE[str(Path(db_path).resolve())] == 0:
        check_file(db_path, full=full)


def _close(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    con.close()
    key = str(path.resolve())
    _OPEN_HERE[key] -= 1
    if _OPEN_HERE[key] <= 0:
        del _OPEN_HERE[key]


def _connect(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    if not read_only:
        # Before DuckDB opens it for writing: a write would bury damage under a checkpoint.
        # (Read-only opens rely on DuckDB's own checks of the blocks they read.)
        verify_file(path)
    try:
        con = duckdb.connect(str(path), read_only=read_only)
        _OPEN_HERE[str(path.resolve())] += 1
        return con
    except duckdb.IOException as exc:
        text = str(exc)
        if is_corruption(exc):
            raise WarehouseCorrupt(path, text.splitlines()[0]) from exc
        named = environment_error(exc, path)  # a missing or read-only folder, disk full
        if named is not None:
            raise named from exc
        if "lock" in text.lower():
            raise WarehouseInUse(
                f"warehouse {path} is in use by another ishwh process",
                hint="wait for it to finish: DuckDB allows one writing process and no "
                "reader beside it",
            ) from exc
        raise IshwhError(f"cannot open warehouse {path}: {text.splitlines()[0]}") from exc
    except duckdb.Error as exc:
        if is_corruption(exc):
            raise WarehouseCorrupt(path, str(exc).splitlines()[0]) from exc
        raise IshwhError(f"cannot open warehouse {path}: {str(exc).splitlines()[0]}") from exc


def init(db_path: str | os.PathLike) -> list[Migration]:
    """Create a warehouse or bring an existing one up to date. Returns applied migrations."""
    path = Path(db_path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    con = _connect(path, read_only=False)
    try:
        done = migrate(con)
    finally:
        _close(con, path)
    images_dir(path).mkdir(exist_ok=True)
    remove_stale_parts(images_dir(path))
    return done


@contextmanager
def connect(
    db_path: str | os.PathLike, *, read_only: bool = False
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open an existing, up-to-date warehouse.

    Refuses a missing file, a warehouse that needs migrating (with the command that fixes
    it) and one whose schema is newer than this code.
    """
    path = Path(db_path)
    if not path.exists():
        raise WarehouseNotFound(
            f"no warehouse at {path}", hint=f"create it with `ishwh init --db {path}`"
        )
    con = _connect(path, read_only=read_only)
    try:
        pending = check_schema(con)
        if pending:
            raise SchemaError(
                f"warehouse {path} needs migrating ({len(pending)} pending migration(s))",
                hint=f"run `ishwh init --db {path}`",
            )
        if not views_current(con):
            # Views are code: a newer ishwh may ship new or changed ones without a migration.
            if read_only:
                raise SchemaError(
                    f"the views of warehouse {path} are missing or from another ishwh version",
                    hint=f"run `ishwh init --db {path}`",
                )
            create_views(con)
        if not read_only:
            # The writer holds DuckDB's lock: temporary image files of a killed ingest are
            # leftovers now, cleaned before this write adds its own.
            remove_stale_parts(images_dir(path))
        yield con
    finally:
        _close(con, path)


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """All-or-nothing block: commit on success, roll back on any exception."""
    con.execute("begin transaction")
    try:
        yield con
    except BaseException:
        con.execute("rollback")
        raise
    con.execute("commit")
