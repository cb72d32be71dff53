"""Every ```sql block of README.md runs as written with `ishwh sql` on a demo warehouse and
returns rows.

The warehouse is the demo's synthetic atlas (preset ``demo``: the same ontology and gene
names as `ishwh demo`), shrunk to one stage and 45 genes, with grid features and one fit, so
the test stays short; the README's queries use only tables and views every demo has.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.app import app
from ishwh import warehouse

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```sql\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
runner = CliRunner()


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory) -> Path:
    from ishwh.features import featurize
    from ishwh.fit import fit
    from ishwh.synth import ingest_synthetic

    db = tmp_path_factory.mktemp("readme") / "demo.duckdb"
    warehouse.init(db)
    ingest_synthetic(db, preset="demo", n_genes=45, stages=("E18.5",), sections=(3, 3),
                     progress=False)
    (name,) = featurize(db, extractor="grid", progress=False).names
    fit(db, name, "E18.5", progress=False)
    return db


def test_the_readme_has_the_examples():
    assert len(BLOCKS) >= 4
    text = " ".join(BLOCKS)
    for needle in ("level_auc", "structure_auc", "structure_ancestors", "annotations"):
        assert needle in text


@pytest.mark.slow
@pytest.mark.parametrize("sql", BLOCKS, ids=[f"block{i + 1}" for i in range(len(BLOCKS))])
def test_readme_sql_runs_as_written(demo_db, sql):
    res = runner.invoke(app, ["sql", sql, "--db", str(demo_db), "--format", "csv"])
    assert res.exit_code == 0, res.output
    rows = list(csv.reader(io.StringIO(res.stdout)))
    assert len(rows) >= 2, f"no rows from:\n{sql}"   # a header and at least one row
