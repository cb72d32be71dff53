"""The synthetic atlas's unannotated stages (P4, P14, P28): their anatomy, the Allen-like
rule (their calls are withheld into `withheld_annotations`), that the annotated stages'
data did not change, and that fitting never reads the withheld truth."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ishwh import warehouse
from ishwh.synth import Atlas, ingest_synthetic, resolve, write_manifest
from ishwh.synth.params import parse_knobs
from ishwh.vocab import UNANNOTATED_STAGES

REPO = Path(__file__).resolve().parents[1]


def _digest(atlas: Atlas, stages, genes) -> str:
    h = hashlib.sha256()
    for stage in stages:
        for g in genes:
            e = atlas.experiment(stage, g)
            for s in e.sections:
                h.update(s.rgb.tobytes())
                h.update(str((s.number, s.position)).encode())
            for arr in (e.pattern, e.intensity, e.density, e.energy):
                h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:16]


def test_annotated_stages_are_unchanged_by_the_new_stages():
    # Digests of images, calls and grids recorded with the generator before P4/P14/P28 were
    # added (commit 2075055): the calibration in docs/synthetic.md depends on this data.
    demo = dict(genes=8, workers=1)
    assert _digest(Atlas(resolve("demo", stages=("E13.5", "E18.5"), **demo), 0),
                   ("E13.5", "E18.5"), [0, 3, 7]) == "ed3bca25a2d3c049"
    # listing the postnatal stages (before or after) changes nothing of the others
    with_p = Atlas(resolve("demo", stages=("P4", "E13.5", "E18.5", "P28"), **demo), 0)
    assert _digest(with_p, ("E13.5", "E18.5"), [0, 3, 7]) == "ed3bca25a2d3c049"
    # ... and a postnatal stage's data does not depend on which other stages are listed
    alone = Atlas(resolve("demo", stages=("P4",), **demo), 0)
    assert _digest(alone, ("P4",), [0, 3]) == _digest(with_p, ("P4",), [0, 3])


def test_postnatal_stages_share_genes_and_programs_with_an_older_anatomy():
    atlas = Atlas(resolve("demo", genes=40, stages=("E18.5", "P4", "P14", "P28"), workers=1), 0)
    brain = {st: int((atlas.anatomy(st).labels >= 2).sum()) for st in atlas.params.stages}
    for st in ("P4", "P14", "P28"):
        assert not np.array_equal(atlas.anatomy(st).labels, atlas.anatomy("E18.5").labels)
        assert not atlas.anatomy(st).has_embryo
    # the cortex and cerebellum keep growing: more brain in the (wider) frame
    assert brain["E18.5"] < brain["P4"] < brain["P28"]
    # the same genes use the same programs at every stage; which anchors are on varies
    genes = [atlas.gene(g) for g in range(40)]
    for gene in genes:
        for st in ("P4", "P14", "P28"):
            anchors = {a.structure for a in gene.anchors[st]}
            assert anchors <= {a.structure for p in gene.programs
                               for a in atlas.programs[p]} | {
                a.structure for s2 in gene.anchors for a in gene.anchors[s2]}
    expressed = [sum(bool(g.anchors[st]) for g in genes) for st in ("E18.5", "P4", "P28")]
    assert min(expressed) > 10


def _counts(db) -> dict[str, dict[str, int]]:
    with warehouse.connect(db, read_only=True) as con:
        out = {}
        for table in ("annotations", "withheld_annotations"):
            out[table] = dict(con.execute(
                f"select e.stage, count(*) from {table} a join experiments e "
                "using (experiment_id) group by 1").fetchall())
        return out


def test_unannotated_stages_are_withheld_into_the_truth_table(tmp_path):
    kw = dict(genes=3, stages=("E18.5", "P4", "P14"), sections=(3, 4), workers=1,
              progress=False)
    db = tmp_path / "w.duckdb"
    warehouse.init(db)
    ingest_synthetic(db, "demo", **kw)
    counts = _counts(db)
    assert set(counts["annotations"]) == {"E18.5"}
    assert set(counts["withheld_annotations"]) == {"P4", "P14"}
    with warehouse.connect(db, read_only=True) as con:
        (source,) = con.execute("select distinct source from withheld_annotations").fetchone()
        # the truth is the annotator's calls, as an annotated stage would have had them
        atlas = Atlas(resolve("demo", genes=3, stages=kw["stages"], sections=kw["sections"],
                              workers=1), 0)
        assert source == atlas.source
        exp = atlas.experiment("P4", 1, images=False)
        rows = con.execute("select structure_id, pattern from withheld_annotations "
                           "where experiment_id = ? order by structure_id",
                           [exp.experiment_id]).fetchall()
        seen = exp.pattern >= 0
        want = sorted(zip(atlas.ontology.ids[seen].tolist(),
                          [("undetected", "full", "regional", "gradient")[p]
                           for p in exp.pattern[seen]], strict=True))
        assert rows == want
    # the knob off: every stage annotated, same atlas (source), nothing withheld
    off = tmp_path / "off.duckdb"
    warehouse.init(off)
    res = ingest_synthetic(off, "demo", withhold_unannotated=False, **kw)
    assert res["source"] == source
    counts_off = _counts(off)
    assert counts_off["withheld_annotations"] == {}
    assert counts_off["annotations"] == {**counts["annotations"],
                                         **counts["withheld_annotations"]}
    assert parse_knobs(["withhold_unannotated=0"]) == {"withhold_unannotated": False}
    assert set(UNANNOTATED_STAGES) >= {"P4", "P14", "P28"}


def test_manifest_writes_withheld_calls_apart(tmp_path):
    out = tmp_path / "atlas"
    write_manifest(out, "demo", genes=2, stages=("E18.5", "P4"), sections=(2, 2), workers=1,
                   progress=False)
    annotated = (out / "annotations.csv").read_text().splitlines()
    withheld = (out / "withheld_annotations.csv").read_text().splitlines()
    assert annotated[0] == withheld[0]
    stage_of = {line.split(",")[2]: line.split(",")[1]
                for line in (out / "sections.csv").read_text().splitlines()[1:]}
    assert {stage_of[r.split(",")[0]] for r in annotated[1:]} == {"E18.5"}
    assert {stage_of[r.split(",")[0]] for r in withheld[1:]} == {"P4"}


def test_cli_sets_the_withholding_knob(tmp_path):
    from cli.app import app

    db = tmp_path / "w.duckdb"
    warehouse.init(db)
    runner = CliRunner()
    res = runner.invoke(app, ["ingest", "synthetic", "--genes", "1", "--stages", "P4",
                              "--set", "withhold_unannotated=2", "--db", str(db)])
    assert res.exit_code != 0 and "not 0 or 1" in res.output
    res = runner.invoke(app, ["ingest", "synthetic", "--genes", "1", "--stages", "P4",
                              "--set", "withhold_unannotated=0", "--db", str(db)])
    assert res.exit_code == 0, res.output
    assert _counts(db)["annotations"].get("P4", 0) > 0


# ----------------------------------------------------------------- fit never reads the truth

# Code of fit and annotate: none of it may name the truth table or the views over it.
TRUTH_NAMES = re.compile(r"withheld_annotations|withheld_labels|truth_structure_auc|"
                         r"annotation_truth_auc")


def test_fit_and_annotate_code_never_name_the_truth():
    paths = [*(REPO / "ishwh" / "fit").glob("*.py"), *(REPO / "ishwh" / "features").glob("*.py"),
             *(REPO / "sql" / "queries").glob("fit_*.sql"), REPO / "sql" / "labels.sql",
             *(REPO / "cli").glob("*.py")]
    paths += [p for p in (REPO / "ishwh" / "annotate.py", REPO / "sql" / "queries")
              if p.is_file()]
    assert len(paths) > 10
    for path in paths:
        assert not TRUTH_NAMES.search(path.read_text(encoding="utf-8")), path
    # the only SQL that reads the truth: the evaluation views
    readers = {p.name for p in (REPO / "sql").rglob("*.sql")
               if "withheld_annotations" in p.read_text(encoding="utf-8")
               or "withheld_labels" in p.read_text(encoding="utf-8")}
    assert readers == {"withheld_labels.sql", "task_auc.sql", "truth_structure_auc.sql"}


@pytest.fixture(scope="module")
def twin_warehouses(tmp_path_factory):
    """Two copies of one small atlas (E18.5 annotated, P4 withheld) with grid features: in
    the second the truth table is emptied."""
    from ishwh.features import featurize

    root = tmp_path_factory.mktemp("twins")
    full = root / "full.duckdb"
    warehouse.init(full)
    ingest_synthetic(full, "demo", genes=40, stages=("E18.5", "P4"), images=False,
                     workers=1, progress=False)
    featurize(full, extractor="grid", progress=False)
    empty = root / "empty.duckdb"
    shutil.copy(full, empty)
    with warehouse.connect(empty) as con:
        con.execute("delete from withheld_annotations")
    return full, empty


def _table(db, sql):
    with warehouse.connect(db, read_only=True) as con:
        return con.execute(sql).fetchall()


def test_fit_is_identical_with_and_without_the_truth(twin_warehouses):
    from ishwh.errors import IshwhError
    from ishwh.fit import fit

    full, empty = twin_warehouses
    assert _table(full, "select count(*) from withheld_annotations")[0][0] > 0
    assert _table(empty, "select count(*) from withheld_annotations")[0][0] == 0
    for db in (full, empty):
        fit(db, "grid", "E18.5", seed=0, progress=False, device="cpu")
        with pytest.raises(IshwhError):  # P4's truth is no label
            fit(db, "grid", "P4", seed=0, progress=False, device="cpu")
    q = "select run_id, experiment_id, structure_id, score from predictions order by all"
    assert _table(full, q) == _table(empty, q)
    assert len(_table(full, q)) > 100


def test_production_models_and_annotate_are_identical_with_and_without_the_truth(
        twin_warehouses):
    from ishwh.annotate import annotate
    from ishwh.fit import fit

    full, empty = twin_warehouses
    for db in (full, empty):
        (run,) = fit(db, "grid", "E18.5", holdout="none", progress=False, device="cpu")
        annotate(db, run, "P4")
    for q in ("select run_id, task, c, intercept, weights, platt_a, platt_b, threshold "
              "from models order by all",
              "select * from predicted_annotations order by all"):
        assert _table(full, q) == _table(empty, q)
    assert _table(full, "select count(distinct experiment_id) from predicted_annotations "
                        "join experiments using (experiment_id) where stage = 'P4'") == [(40,)]
    # ... while the truth view scores them only where the truth is
    assert _table(full, "select count(*) from truth_structure_auc")[0][0] > 0
    assert _table(empty, "select count(*) from truth_structure_auc") == [(0,)]
