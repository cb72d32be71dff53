"""Predicted annotations scored against the synthetic atlas's withheld truth, the named
queries gene_profile and structure_markers, and the report's Predicted annotations section,
on a real warehouse: the demo atlas (E18.5 annotated, P4 withheld; grid features),
production models fitted on E18.5, P4 annotated with them."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from ishwh import warehouse
from ishwh.annotate import annotate
from ishwh.features import featurize
from ishwh.fit import fit
from ishwh.query import query_text
from ishwh.report import build_report
from ishwh.synth import ingest_synthetic


@pytest.fixture(scope="module")
def annotated(tmp_path_factory):
    db = tmp_path_factory.mktemp("predicted") / "w.duckdb"
    warehouse.init(db)
    ingest_synthetic(db, "demo", genes=60, stages=("E18.5", "P4"), images=False, workers=1,
                     progress=False)
    featurize(db, extractor="grid", progress=False)
    (run,) = fit(db, "grid", "E18.5", holdout="none", feature_norm="stage", progress=False,
                 device="cpu")
    annotate(db, run, "P4")
    fit(db, "grid", "E18.5", progress=False, device="cpu")  # a split run, for Table 1
    return db, run


def _rows(db, sql, params=None):
    with warehouse.connect(db, read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def _frame(db, sql, params=None) -> pl.DataFrame:
    with warehouse.connect(db, read_only=True) as con:
        return pl.from_arrow(con.sql(sql, params=params).to_arrow_table())


def test_grid_only_atlas_has_no_sections_but_everything_else(annotated):
    db, _ = annotated
    assert _rows(db, "select count(*) from sections") == [(0,)]
    assert _rows(db, "select count(*) from experiments") == [(120,)]
    assert _rows(db, "select count(*) from expression_grids") == [(120,)]


def test_truth_auc_equals_sklearn_on_the_same_rows(annotated):
    db, run = annotated
    pairs = _rows(db, """
        select p.structure_id, p.score, p.called,
               w.pattern <> 'undetected' or w.intensity <> 'undetected'
                   or w.density <> 'undetected'
        from predicted_annotations p join withheld_annotations w
            using (experiment_id, structure_id)
        where p.run_id = ?""", [run])
    assert len(pairs) > 1000
    by = defaultdict(list)
    for sid, score, called, truth in pairs:
        by[sid].append((score, called, bool(truth)))
    view = {sid: (auc, acc, n_pos, n_neg) for sid, auc, acc, n_pos, n_neg in _rows(
        db, "select structure_id, auc, accuracy, n_pos, n_neg from truth_structure_auc "
            "where run_id = ? and stage = 'P4'", [run])}
    assert set(view) == set(by)
    n_auc = 0
    for sid, rows in by.items():
        score = np.array([r[0] for r in rows])
        called = np.array([r[1] for r in rows])
        truth = np.array([r[2] for r in rows])
        auc, acc, n_pos, n_neg = view[sid]
        assert (n_pos, n_neg) == (truth.sum(), (~truth).sum())
        assert acc == pytest.approx(np.mean(called == truth))
        if 0 < truth.sum() < truth.size:
            assert auc == pytest.approx(roc_auc_score(truth, score), abs=1e-12)
            n_auc += 1
        else:
            assert auc is None
    assert n_auc > 20
    # the rollup per level: mean of the structures' AUCs, accuracy over all calls
    levels = _frame(db, "select level, n_structures, mean_auc, accuracy, n_calls "
                        "from annotation_truth_auc where run_id = ?", [run])
    per = _frame(db, "select level, auc, accuracy, n_calls from truth_structure_auc "
                     "where run_id = ?", [run])
    for r in levels.iter_rows(named=True):  # level NULL: all structures together
        sub = per if r["level"] is None else per.filter(pl.col("level") == r["level"])
        assert r["n_structures"] == sub["auc"].count()
        assert r["mean_auc"] == pytest.approx(sub["auc"].mean())
        assert r["accuracy"] == pytest.approx(
            (sub["accuracy"] * sub["n_calls"]).sum() / sub["n_calls"].sum())
    # annotating P4 from E18.5 learns something (the truth was never read)
    assert per["auc"].mean() > 0.6


def test_gene_profile_lists_expert_and_predicted_calls(annotated):
    db, run = annotated
    gene = _rows(db, "select acronym from genes order by gene_id limit 1 offset 5")[0][0]
    with warehouse.connect(db, read_only=True) as con:
        prof = pl.from_arrow(con.sql(query_text("gene_profile"),
                                     params={"gene": gene}).to_arrow_table())
    assert set(prof["gene"]) == {gene}
    assert prof["stage"].unique(maintain_order=True).to_list() == ["E18.5", "P4"]
    e18 = prof.filter(pl.col("stage") == "E18.5")
    p4 = prof.filter(pl.col("stage") == "P4")
    # expert calls: exactly the labels of the gene's E18.5 experiment; none at P4 (withheld)
    labels = _rows(db, """select l.structure_id, l.detected from labels l join experiments e
                          using (experiment_id) join genes g using (gene_id)
                          where g.acronym = ? order by all""", [gene])
    assert sorted(zip(e18["structure_id"], e18["expert_detected"], strict=True)) == labels
    assert p4["expert_detected"].null_count() == p4.height
    # predicted calls: the P4 rows of predicted_annotations, with acronyms and levels
    want = _rows(db, """select p.structure_id, s.acronym, s.level, p.probability, p.called
                        from predicted_annotations p join experiments e using (experiment_id)
                        join genes g using (gene_id) join structures s using (structure_id)
                        where g.acronym = ? and p.run_id = ? order by s.graph_order""",
                 [gene, run])
    assert list(p4.select("structure_id", "acronym", "level", "probability", "called")
                .iter_rows()) == want
    # stable order: stage, then ontology (graph) order
    again = None
    with warehouse.connect(db, read_only=True) as con:
        again = pl.from_arrow(con.sql(query_text("gene_profile"),
                                      params={"gene": gene}).to_arrow_table())
    assert again.equals(prof)
    assert _rows(db, "select count(*) from (" + query_text("gene_profile") + ")",
                 {"gene": "NoSuchGene"}) == [(0,)]


def test_structure_markers_rank_genes_over_the_subtree(annotated):
    db, run = annotated
    structures = _rows(db, "select structure_id, acronym, parent_id from structures")
    kids = defaultdict(list)
    for sid, _, parent in structures:
        kids[parent].append(sid)
    # a level-2 structure with descendants
    sid, acr = next((s, a) for s, a, p in structures if kids[s] and p is not None)
    subtree, stack = set(), [sid]
    while stack:
        s = stack.pop()
        subtree.add(s)
        stack.extend(kids[s])
    assert len(subtree) > 2
    preds = _rows(db, """select g.acronym, p.structure_id, p.probability, p.called
                         from predicted_annotations p join experiments e using (experiment_id)
                         join genes g using (gene_id)
                         where p.run_id = ? and e.stage = 'P4'""", [run])
    best: dict[str, float] = {}
    for gene, s, prob, _ in preds:
        if s in subtree:
            best[gene] = max(best.get(gene, 0.0), prob)
    want = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[:7]
    with warehouse.connect(db, read_only=True) as con:
        got = pl.from_arrow(con.sql(query_text("structure_markers"), params={
            "structure": acr, "stage": "P4", "limit": 7}).to_arrow_table())
        by_id = pl.from_arrow(con.sql(query_text("structure_markers"), params={
            "structure": str(sid), "stage": "P4", "limit": None}).to_arrow_table())
    assert [(g, pytest.approx(p)) for g, p in want] == list(
        got.select("gene", "probability").iter_rows())
    assert set(got["run_id"]) == {run}
    assert by_id.height == 20 and by_id.head(7)["gene"].to_list() == got["gene"].to_list()
    # where_acronym is a subtree member that holds the highest probability
    acr_of = {s: a for s, a, _ in structures}
    for r in got.iter_rows(named=True):
        members = {acr_of[s]: p for g, s, p, _ in preds if g == r["gene"] and s in subtree}
        assert members[r["where_acronym"]] == pytest.approx(max(members.values()))


def test_report_has_the_predicted_section_and_exports(annotated, tmp_path):
    db, run = annotated
    res = build_report(db, tmp_path / "rep")
    md = res.markdown.read_text(encoding="utf-8")
    html = res.html.read_text(encoding="utf-8")
    assert "## Predicted annotations" in md and 'id="predicted"' in html
    names = {p.name for p in res.figures}
    assert {"reliability.png", "predicted_heatmap.png"} <= names
    csv = pl.read_csv(tmp_path / "rep" / "tables" / "predicted_annotations.csv")
    pq = pl.read_parquet(tmp_path / "rep" / "tables" / "predicted_annotations.parquet")
    n = _rows(db, "select count(*) from predicted_annotations")[0][0]
    assert csv.height == pq.height == n
    assert csv.columns[:6] == ["run_id", "experiment_id", "structure_id", "score",
                               "probability", "called"]
    cov = pl.read_csv(tmp_path / "rep" / "tables" / "predicted_coverage.csv")
    p4 = cov.filter(pl.col("stage") == "P4").row(0, named=True)
    assert (p4["n_experiments"], p4["n_annotated"], p4["n_predicted"]) == (60, 0, 60)
    e18 = cov.filter(pl.col("stage") == "E18.5").row(0, named=True)
    assert (e18["n_annotated"], e18["n_predicted"]) == (60, 0)
    truth = pl.read_csv(tmp_path / "rep" / "tables" / "annotation_truth_auc.csv")
    overall = truth.filter(pl.col("level").is_null()).row(0, named=True)
    assert overall["mean_auc"] == pytest.approx(
        _rows(db, "select avg(auc) from truth_structure_auc where run_id = ?", [run])[0][0])
    rel = pl.read_csv(tmp_path / "rep" / "tables" / "reliability.csv")
    assert set(rel["subset"]) == {"oof"} and rel["n"].sum() > 1000
    # Table 1 covers the split run only; the section the production run that annotated
    assert res.runs == [run + 1] and set(csv["run_id"]) == {run}
    # a report of the split run alone has no Predicted annotations section
    alone = build_report(db, tmp_path / "alone", runs=[run + 1])
    assert "Predicted annotations" not in alone.markdown.read_text(encoding="utf-8")
    assert not (tmp_path / "alone" / "tables" / "predicted_annotations.csv").exists()
