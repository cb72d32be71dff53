"""The SQL surface: named queries listed with their parameters, `--param`, the ancestor
closure, the data checks (in the suite and through `ishwh status --check`)."""

from __future__ import annotations

import json
import re

import duckdb
import pytest
from typer.testing import CliRunner

from cli.app import app
from ishwh import loader, warehouse
from ishwh.checks import run_checks
from ishwh.query import named_queries
from ishwh.resources import resource_dir

runner = CliRunner()

# A small tree: root(0) -> A(1) -> {B(2) -> D(3), C(2)}
STRUCTURES = [
    {"structure_id": 10, "acronym": "root", "name": "root", "parent_id": None, "level": 0},
    {"structure_id": 11, "acronym": "A", "name": "area A", "parent_id": 10, "level": 1},
    {"structure_id": 12, "acronym": "B", "name": "area B", "parent_id": 11, "level": 2},
    {"structure_id": 13, "acronym": "C", "name": "area C", "parent_id": 11, "level": 2},
    {"structure_id": 14, "acronym": "D", "name": "area D", "parent_id": 12, "level": 3},
]


@pytest.fixture
def small(db_path):
    with warehouse.connect(db_path) as con:
        loader.load(con, loader.Batch(
            genes=[{"gene_id": 1, "acronym": "G1", "name": None, "entrez_id": None}],
            structures=STRUCTURES,
            experiments=[{"experiment_id": 100 + s, "gene_id": 1, "stage": st}
                         for s, st in enumerate(["E11.5", "E13.5", "E13.5"])],
            annotations=[{"experiment_id": 100, "structure_id": 12, "pattern": "full",
                          "intensity": "low", "density": "low"}],
        ))
    return db_path


def _sql_body(text: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in text.splitlines())


def test_every_sql_file_follows_the_header_convention():
    for q in named_queries().values():
        first = q.path.read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith(f"-- {q.name}: "), q.path
        assert q.description, q.path
        used = set(re.findall(r"\$([a-z_][a-z0-9_]*)", _sql_body(q.path.read_text())))
        assert used == set(q.params), f"{q.path.name}: uses {used}, declares {set(q.params)}"
    kinds = {q.kind for q in named_queries().values()}
    assert kinds == {"view", "query", "check"}


def test_named_queries_have_a_stable_order():
    for path in sorted((resource_dir("sql") / "queries").glob("*.sql")):
        assert re.search(r"\border by\b[^)]*$", _sql_body(path.read_text()).strip(),
                         re.IGNORECASE | re.DOTALL), f"{path.name} ends without an order by"


def test_sql_list_shows_descriptions_and_parameters():
    res = runner.invoke(app, ["sql", "--list"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    for q in named_queries().values():
        assert f"{q.name} ({q.kind}): {q.description}" in lines
    i = lines.index("fit_stage_experiments (query): the experiments of one stage, with their "
                    "gene (the split unit).")
    assert lines[i + 1].split() == ["--param", "stage=...", "the", "stage,", "e.g.", "E13.5"]


def test_sql_param_binds_named_parameters(small):
    res = runner.invoke(app, ["sql", "--query", "fit_stage_experiments", "--param",
                              "stage=E13.5", "--format", "json", "--db", str(small)])
    assert res.exit_code == 0, res.output
    assert [r["experiment_id"] for r in json.loads(res.stdout)] == [101, 102]
    # a list parameter, as JSON
    res = runner.invoke(app, ["sql", "--query", "featurize_sections", "--param",
                              "experiment_ids=[100, 101]", "--format", "csv", "--db", str(small)])
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("args,expected", [
    (["--query", "fit_stage_experiments"], "needs parameter 'stage'"),
    (["--query", "fit_stage_experiments", "--param", "stage=E13.5", "--param", "x=1"],
     "has no parameter 'x'"),
    (["--query", "fit_stage_experiments", "--param", "stage"], "is not KEY=VALUE"),
    (["select 1", "--param", "a=1"], "--param: parameters go with a named query"),
    (["--query", "no_such_query"], "no named query 'no_such_query'"),
])
def test_sql_param_errors_are_one_line(small, args, expected):
    res = runner.invoke(app, ["sql", *args, "--db", str(small)])
    assert res.exit_code != 0
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert expected in lines[-1], res.output
    assert "unexpected" not in res.output and "Traceback" not in res.output


def test_structure_ancestors_is_the_closure(small):
    with warehouse.connect(small, read_only=True) as con:
        got = set(con.sql("select structure_id, ancestor_id, depth "
                          "from structure_ancestors").fetchall())
    parent = {s["structure_id"]: s["parent_id"] for s in STRUCTURES}
    want = set()
    for sid in parent:
        node, depth = sid, 0
        while node is not None:
            want.add((sid, node, depth))
            node, depth = parent[node], depth + 1
    assert got == want
    with warehouse.connect(small, read_only=True) as con:
        under_a = con.sql("select s.acronym from structure_ancestors a "
                          "join structures s using (structure_id) "
                          "join structures h on h.structure_id = a.ancestor_id "
                          "where h.acronym = 'A' and a.depth > 0 order by s.acronym").fetchall()
    assert [r[0] for r in under_a] == ["B", "C", "D"]


def test_data_checks_pass_on_a_clean_warehouse(small):
    results = run_checks(small)
    assert {r.name for r in results} >= {"orphans", "structure_cycles", "structure_levels",
                                         "enum_values", "auc_range"}
    assert all(r.passed for r in results), [(r.name, r.examples) for r in results]
    res = runner.invoke(app, ["status", "--check", "--db", str(small)])
    assert res.exit_code == 0, res.output


def test_data_checks_find_broken_rows(small):
    # break the warehouse behind ishwh's back (plain DuckDB: no constraints stop these)
    with duckdb.connect(str(small)) as con:
        con.execute("insert into sections values (9, 999, 1, 'x.png', 2, 2, null, null)")
        con.execute("update structures set parent_id = 14 where structure_id = 11")
        con.execute("update structures set level = 0 where structure_id = 13")
    failed = {r.name: r for r in run_checks(small) if not r.passed}
    assert set(failed) == {"orphans", "structure_cycles", "structure_levels"}
    assert failed["orphans"].examples[0]["missing"] == "experiment 999"
    assert {r["structure_id"] for r in failed["structure_levels"].examples} >= {13}
    res = runner.invoke(app, ["status", "--check", "--db", str(small)])
    assert res.exit_code == 1
    last = res.output.strip().splitlines()[-1]
    assert "3 data check(s) failed" in last
    assert all(n in last for n in ("orphans", "structure_cycles", "structure_levels"))
