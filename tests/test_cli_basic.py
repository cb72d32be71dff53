"""The command line: help for every command, init / status / sql, errors and the write lock."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import polars as pl
import pytest
import typer
from typer.testing import CliRunner

from cli.app import app
from ishwh import loader, warehouse

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def _walk(cmd, path=()):
    """Every (path, command) of the click tree under ``cmd``, groups included."""
    yield path, cmd
    for name, sub in sorted(getattr(cmd, "commands", {}).items()):
        yield from _walk(sub, (*path, name))


COMMANDS = list(_walk(typer.main.get_command(app)))


def test_the_contract_commands_exist():
    paths = {" ".join(p) for p, _ in COMMANDS}
    assert {"init", "status", "sql", "ingest", "ingest dir"} <= paths


@pytest.mark.parametrize("path,cmd", COMMANDS, ids=[" ".join(p) or "ishwh" for p, _ in COMMANDS])
def test_every_command_has_help(path, cmd):
    res = invoke(*path, "--help")
    assert res.exit_code == 0, res.output
    assert "Usage:" in res.stdout
    assert (cmd.help or "").strip(), f"`ishwh {' '.join(path)}` has no help text"
    for param in cmd.params:
        if param.name == "help" or getattr(param, "hidden", False):
            continue
        assert (getattr(param, "help", None) or "").strip(), (
            f"`ishwh {' '.join(path)}`: parameter {param.name!r} has no help text")


# --------------------------------------------------------------------------- init / status


def test_init_creates_then_reports_up_to_date(tmp_path):
    db = tmp_path / "sub" / "w.duckdb"
    res = invoke("init", "--db", db)
    assert res.exit_code == 0, res.output
    assert "applied" in res.stderr and "0001_init" in res.stderr
    assert db.exists() and warehouse.images_dir(db).is_dir()
    res = invoke("init", "--db", db)
    assert res.exit_code == 0
    assert res.stderr.strip() == f"warehouse {db} is up to date"


def test_init_uses_ishwh_db_env(tmp_path):
    db = tmp_path / "env.duckdb"
    res = runner.invoke(app, ["init"], env={"ISHWH_DB": str(db)})
    assert res.exit_code == 0, res.output
    assert db.exists()


@pytest.fixture
def filled(db_path) -> Path:
    """A warehouse with two genes, three experiments, a feature set and a run."""
    batch = loader.Batch(
        genes=[{"gene_id": 1, "acronym": "Shh", "name": "sonic"},
               {"gene_id": 2, "acronym": "Pax6", "name": None}],
        structures=[{"structure_id": 10, "acronym": "Br", "name": "brain", "parent_id": None,
                     "level": 1}],
        experiments=[{"experiment_id": 100, "gene_id": 1, "stage": "E11.5"},
                     {"experiment_id": 101, "gene_id": 2, "stage": "E11.5"},
                     {"experiment_id": 200, "gene_id": 1, "stage": "P4"}],
        annotations=[{"experiment_id": 100, "structure_id": 10, "pattern": "full",
                      "intensity": "high", "density": "high"}],
    )
    with warehouse.connect(db_path) as con:
        loader.load(con, batch)
        con.execute("insert into feature_sets (name, extractor, dim) "
                    "values ('grid.test', 'grid', 3)").fetchall()
        con.execute("insert into experiment_features values (1, 100, [1, 2, 3]), "
                    "(1, 101, [3, 2, 1])").fetchall()
        con.execute("insert into runs (feature_set_id, stage, split_id, tasks, fingerprint) "
                    "values (1, 'E11.5', 1, 'structures', 'abc')").fetchall()
    return db_path


def test_status_json_counts_stages_features_runs(filled):
    res = invoke("status", "--db", filled, "--json")
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["schema_version"] == max(m.version for m in warehouse.available_migrations())
    assert info["counts"]["genes"] == 2 and info["counts"]["experiments"] == 3
    assert info["stages"] == [
        {"stage": "E11.5", "n_experiments": 2, "n_sections": 0, "n_annotated": 1},
        {"stage": "P4", "n_experiments": 1, "n_sections": 0, "n_annotated": 0}]
    assert info["feature_sets"] == [{"name": "grid.test", "extractor": "grid", "dim": 3,
                                     "n_experiments": 2, "n_runs": 1, "is_finished": False}]
    assert [(r["run_id"], r["feature_set"], r["stage"], r["status"])
            for r in info["runs"]] == [(1, "grid.test", "E11.5", "running")]


def test_status_table(filled):
    res = runner.invoke(app, ["status", "--db", str(filled)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    for text in ("schema v", "genes", "E11.5", "grid.test", "structures"):
        assert text in res.stdout


# --------------------------------------------------------------------------- sql


def test_sql_csv_and_json_to_stdout(filled):
    res = invoke("sql", "select acronym, gene_id from genes order by gene_id", "--db", filled,
                 "--format", "csv")
    assert res.exit_code == 0, res.output
    assert res.stdout == "acronym,gene_id\nShh,1\nPax6,2\n"
    res = invoke("sql", "select acronym from genes order by 1", "--db", filled, "-f", "json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == [{"acronym": "Pax6"}, {"acronym": "Shh"}]


def test_sql_files_csv_json_parquet(filled, tmp_path):
    query = "select experiment_id, stage from experiments order by 1"
    expected = pl.DataFrame({"experiment_id": [100, 101, 200], "stage": ["E11.5", "E11.5", "P4"]})
    for fmt, read in (("csv", pl.read_csv), ("json", pl.read_json),
                      ("parquet", pl.read_parquet)):
        out = tmp_path / f"out.{fmt}"
        res = invoke("sql", query, "--db", filled, "--format", fmt, "--out", out)
        assert res.exit_code == 0, res.output
        assert res.stdout == ""  # the data went to the file
        assert "wrote 3 row(s)" in res.stderr
        assert read(out).to_dicts() == expected.to_dicts()


def test_sql_table_and_named_view(filled):
    res = runner.invoke(app, ["sql", "--query", "labels", "--db", str(filled)],
                        env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "detected" in res.stdout and "True" in res.stdout
    assert "1 row(s)" in res.stderr


def test_sql_usage_errors_exit_2(filled, tmp_path):
    assert invoke("sql", "select 1", "--db", filled, "--format", "xml").exit_code == 2
    assert invoke("sql", "select 1", "--db", filled, "--out", tmp_path / "x").exit_code == 2
    assert invoke("sql", "select 1", "--db", filled, "--format", "parquet").exit_code == 2


@pytest.mark.parametrize("statement,kind", [
    ("drop table genes", "DROP"),
    ("insert into genes values (9, 'X', null, null)", "INSERT"),
    ("copy genes to '{out}'", "COPY"),
    ("select 1; delete from genes", "DELETE"),
])
def test_sql_is_read_only(filled, tmp_path, statement, kind):
    out = tmp_path / "leak.csv"
    res = invoke("sql", statement.format(out=out), "--db", filled)
    assert res.exit_code == 1
    assert res.stderr.splitlines() == [
        f"Error: `ishwh sql` is read-only: {kind} statements are refused "
        "(hint: use the ishwh commands to change a warehouse)"]
    assert not out.exists()
    with warehouse.connect(filled, read_only=True) as con:
        assert con.execute("select count(*) from genes").fetchall()[0][0] == 2


def test_misspelt_table_lists_the_tables(filled):
    res = invoke("sql", "select * from gene", "--db", filled)
    assert res.exit_code == 1
    line, = res.stderr.splitlines()
    assert line.startswith("Error: Table with name gene does not exist")
    assert 'Did you mean "genes"' in line
    assert "tables and views: " in line and " annotations," in line and " labels," in line
    assert "Traceback" not in res.output


def test_debug_shows_the_traceback(filled):
    res = invoke("--debug", "sql", "select * from gene", "--db", filled)
    assert res.exit_code == 1
    assert "Traceback (most recent call last)" in res.stderr
    res = invoke("sql", "select * from gene", "--db", filled, "--debug")  # anywhere
    assert "Traceback (most recent call last)" in res.stderr


def test_warehouse_in_use_by_another_process(filled, tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import sys, time, duckdb
            con = duckdb.connect(sys.argv[1])
            print("ready", flush=True)
            time.sleep(60)
        """), str(filled)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        for args in (["status"], ["sql", "select 1"], ["init"]):
            res = invoke(*args, "--db", filled)
            assert res.exit_code == 1, res.output
            line, = res.stderr.splitlines()
            assert line.startswith(f"Error: warehouse {filled} is in use by another ishwh "
                                   "process")
    finally:
        holder.kill()
        holder.wait(timeout=10)
    assert invoke("status", "--db", filled).exit_code == 0  # free again


def test_unexpected_error_is_one_line(tmp_path):
    bad = tmp_path / "not_a_db.duckdb"
    bad.write_bytes(b"this is not a duckdb file" * 100)
    res = invoke("status", "--db", bad)
    assert res.exit_code == 1
    assert len(res.stderr.splitlines()) == 1
    assert res.stderr.startswith(f"Error: cannot open warehouse {bad}")


def test_real_duckdb_file_is_left_intact_by_refusals(filled):
    # The read-only connection of `sql` cannot write even if the check were bypassed.
    with pytest.raises(duckdb.Error):
        with warehouse.connect(filled, read_only=True) as con:
            con.execute("drop table genes").fetchall()


def test_sql_csv_and_json_handle_lists_and_intervals(db_path):
    from ishwh import query

    table = query.run_query(
        db_path, "select [1.5, 2.0]::float[] as vec, interval 3 day as gap, 7 as n"
    )
    csv = query.write_table(table, "csv", None)
    assert csv.splitlines()[0] == "vec,gap,n"
    assert "[1.5, 2.0]" in csv and "3 days" in csv
    js = query.write_table(table, "json", None)
    assert '"n":7' in js.replace(" ", "")
