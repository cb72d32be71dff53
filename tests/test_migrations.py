"""The migration runner: order, version rows, rollback, checksums, newer schemas, views."""

from __future__ import annotations

import hashlib
import shutil
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from cli.app import app
from ishwh import warehouse
from ishwh.errors import SchemaError, WarehouseNotFound
from ishwh.resources import resource_dir


@pytest.fixture
def migrations(tmp_path) -> Path:
    """A migrations folder: the shipped ones (the views need their tables) plus test files."""
    folder = tmp_path / "migrations"
    shutil.copytree(resource_dir("migrations"), folder)
    return folder


def _next(folder: Path) -> int:
    return max(m.version for m in warehouse.available_migrations(folder)) + 1


def _add(folder: Path, version: int, name: str, sql: str) -> Path:
    path = folder / f"{version:04d}_{name}.sql"
    path.write_text(sql, encoding="utf-8")
    return path


def _tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {r[0] for r in con.execute(
        "select table_name from information_schema.tables where table_schema = 'main'"
    ).fetchall()}


def test_applies_in_order_with_version_rows(tmp_path, migrations):
    v = _next(migrations)
    # The later file needs the earlier one's table: only right if applied in order.
    b = _add(migrations, v + 1, "fill_things", "insert into things values (1, 'one');")
    a = _add(migrations, v, "create_things", "create table things (id integer, label varchar);")
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        before = datetime.now(UTC).replace(tzinfo=None)
        done = warehouse.migrate(con, warehouse.available_migrations(migrations))
        after = datetime.now(UTC).replace(tzinfo=None)
        assert [m.version for m in done] == sorted(m.version for m in done)
        assert [m.name for m in done[-2:]] == [a.stem, b.stem]
        recorded = con.execute(
            "select version, name, checksum, applied_at from schema_migrations order by version"
        ).fetchall()
        assert [r[0] for r in recorded] == [m.version for m in done]
        for (_, name, checksum, applied_at), m in zip(recorded, done, strict=True):
            assert name == m.name
            assert checksum == hashlib.sha256(m.path.read_bytes()).hexdigest()
            assert before <= applied_at <= after  # recorded now, in UTC
        assert con.execute("select * from things").fetchall() == [(1, "one")]
        # Nothing pending now; migrating again applies nothing.
        assert warehouse.migrate(con, warehouse.available_migrations(migrations)) == []


def test_init_records_the_shipped_migrations(db_path):
    shipped = warehouse.available_migrations()
    assert shipped[0].name == "0001_init"
    with warehouse.connect(db_path, read_only=True) as con:
        recorded = con.execute(
            "select version, checksum from schema_migrations order by 1").fetchall()
    assert recorded == [(m.version, m.checksum) for m in shipped]
    assert warehouse.init(db_path) == []  # up to date
    assert warehouse.images_dir(db_path).is_dir()


def test_failing_migration_rolls_back_and_stays_pending(tmp_path, migrations):
    v = _next(migrations)
    bad = _add(migrations, v, "half_done",
               "create table half (x integer);\ninsert into half values (1);\n"
               "select * from no_such_table;\n")
    db = tmp_path / "w.duckdb"
    with duckdb.connect(str(db)) as con:
        with pytest.raises(SchemaError, match=f"migration {bad.name} failed and was rolled back"):
            warehouse.migrate(con, warehouse.available_migrations(migrations))
        assert "half" not in _tables(con)  # the statements before the failure were undone
        assert "genes" in _tables(con)  # earlier migrations stay applied
        assert v not in warehouse.applied_migrations(con)
        pending = warehouse.check_schema(con, warehouse.available_migrations(migrations))
        assert [m.version for m in pending] == [v]
        # Fixed, it applies.
        bad.write_text("create table half (x integer);", encoding="utf-8")
        done = warehouse.migrate(con, warehouse.available_migrations(migrations))
        assert [m.version for m in done] == [v]
        assert "half" in _tables(con)


def test_edited_applied_migration_is_refused(tmp_path, migrations):
    v = _next(migrations)
    path = _add(migrations, v, "things", "create table things (id integer);")
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        warehouse.migrate(con, warehouse.available_migrations(migrations))
        path.write_text("create table things (id bigint);", encoding="utf-8")
        with pytest.raises(SchemaError, match=rf"migration {path.name} was edited after it was "
                                               r"applied \(checksum mismatch\)"):
            warehouse.migrate(con, warehouse.available_migrations(migrations))


def _pretend_newer(db: Path) -> tuple[int, int]:
    code = max(m.version for m in warehouse.available_migrations())
    newer = max(7, code + 1)
    with duckdb.connect(str(db)) as con:
        con.execute("insert into schema_migrations values (?, 'future', 'x', now())",
                    [newer]).fetchall()
    return newer, code


def test_newer_schema_is_refused(db_path):
    newer, code = _pretend_newer(db_path)
    message = f"warehouse schema v{newer} is newer than this ishwh (v{code}); upgrade ishwh"
    with pytest.raises(SchemaError) as err:
        with warehouse.connect(db_path, read_only=True):
            pass
    assert str(err.value) == message
    with pytest.raises(SchemaError, match="upgrade ishwh"):
        warehouse.init(db_path)
    for args in (["status"], ["init"], ["sql", "select 1"]):
        res = CliRunner().invoke(app, [*args, "--db", str(db_path)])
        assert res.exit_code == 1
        assert res.stderr == f"Error: {message}\n"


def test_commands_refuse_an_unmigrated_warehouse_with_the_fix(tmp_path):
    db = tmp_path / "old.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("create table something (x integer)").fetchall()
    for args in (["status"], ["sql", "select 1"]):
        res = CliRunner().invoke(app, [*args, "--db", str(db)])
        assert res.exit_code == 1
        assert "needs migrating" in res.stderr
        assert f"run `ishwh init --db {db}`" in res.stderr
        assert len(res.stderr.splitlines()) == 1
    assert CliRunner().invoke(app, ["init", "--db", str(db)]).exit_code == 0
    assert CliRunner().invoke(app, ["status", "--db", str(db)]).exit_code == 0


def test_missing_warehouse_is_refused_with_the_fix(tmp_path):
    db = tmp_path / "none.duckdb"
    with pytest.raises(WarehouseNotFound, match="no warehouse at"):
        with warehouse.connect(db):
            pass
    assert not db.exists()  # refusing must not create the file


def test_views_are_recreated_on_init(db_path):
    with duckdb.connect(str(db_path)) as con:
        con.execute("drop view labels").fetchall()
        con.execute("create or replace view structure_auc as select 1 as x").fetchall()
    warehouse.init(db_path)
    with warehouse.connect(db_path, read_only=True) as con:
        cols = [r[0] for r in con.execute("describe labels").fetchall()]
        assert cols == ["experiment_id", "structure_id", "detected"]
        cols = [r[0] for r in con.execute("describe structure_auc").fetchall()]
        assert "auc" in cols and "x" not in cols


@pytest.mark.parametrize("table,row", [
    ("experiments", "(1, 1, 'E12.5', 'sagittal', null)"),
    ("experiments", "(1, 1, 'P4', 'diagonal', null)"),
    ("annotations", "(1, 1, 'spotty', null, null)"),
    ("annotations", "(1, 1, null, 'huge', null)"),
    ("annotations", "(1, 1, null, null, 'Low')"),
])
def test_enumerations_are_checked_by_the_database(db_path, table, row):
    with duckdb.connect(str(db_path)) as con:
        with pytest.raises(duckdb.ConstraintException, match="CHECK constraint"):
            con.execute(f"insert into {table} values {row}").fetchall()
        assert con.execute(f"select count(*) from {table}").fetchall()[0][0] == 0


def test_outdated_views_are_noticed_and_remade(db_path):
    """A warehouse whose views predate this ishwh: read-only use is refused with the fix,
    read-write use re-creates the views."""
    import duckdb
    import pytest

    from ishwh import warehouse
    from ishwh.errors import SchemaError

    con = duckdb.connect(str(db_path))
    con.execute("drop view level_auc").fetchall()
    con.execute("update schema_views set checksum = 'old'").fetchall()
    con.close()
    with pytest.raises(SchemaError, match="views .* another ishwh version"):
        with warehouse.connect(db_path, read_only=True):
            pass
    with warehouse.connect(db_path) as con:
        assert con.execute("select count(*) from level_auc").fetchall()[0][0] == 0
    with warehouse.connect(db_path, read_only=True) as con:
        assert warehouse.views_current(con)
