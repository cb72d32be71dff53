"""The report from a small, fully known warehouse: content, numbers, figures, no network."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from ishwh import loader, warehouse
from ishwh.errors import InvalidInput, IshwhError, NotFound
from ishwh.report import build_report, table1
from ishwh.report.tables import format_auc, run_named

STAGES = ("E11.5", "P4")
FEATURE_SETS = {  # name -> signal strength of its fake scores
    "efficientnet_lite0.blocks.3.max": 3.5,
    "bow.sift.k100": 0.7,
}


def _insert(con: duckdb.DuckDBPyConnection, table: str, df: pl.DataFrame) -> None:
    con.register("_rows", df.to_arrow())
    cols = ", ".join(df.columns)
    con.execute(f"insert into {table} ({cols}) select {cols} from _rows").fetchall()
    con.unregister("_rows")


def build_warehouse(path: Path, seed: int = 0) -> Path:
    """A warehouse with an ontology, annotations, splits, runs, predictions, skipped tasks.

    Levels 1-3 (2, 4, 8 structures), 2 stages x 45 experiments, 2 feature sets with scores
    of different quality, one shuffled-label run, gene-level tasks on one run.
    """
    rng = np.random.default_rng(seed)
    warehouse.init(path)
    structs = [{"structure_id": 100, "acronym": "root", "name": "root", "parent_id": None,
                "level": 0, "graph_order": 0}]
    parents, sid, order = [100], 101, 1
    for level, per_parent in ((1, 2), (2, 2), (3, 2)):
        nxt = []
        for p in parents:
            for _ in range(per_parent):
                structs.append({"structure_id": sid, "acronym": f"S{level}_{sid}",
                                "name": f"structure {sid}", "parent_id": p, "level": level,
                                "graph_order": order})
                nxt.append(sid)
                sid += 1
                order += 1
        parents = nxt
    structures = pl.DataFrame(structs)
    task_ids = [s["structure_id"] for s in structs if s["level"] >= 1]
    n_genes = 45
    genes = pl.DataFrame({"gene_id": list(range(1, n_genes + 1)),
                          "acronym": [f"Gene{i:02d}" for i in range(1, n_genes + 1)]})
    exps, ann = [], []
    for si, stage in enumerate(STAGES):
        for g in range(1, n_genes + 1):
            eid = 1000 * (si + 1) + g
            exps.append({"experiment_id": eid, "gene_id": g, "stage": stage})
            for k, s in enumerate(task_ids):
                rate = 0.15 + 0.6 * ((k * 7) % 10) / 10
                det = rng.random() < rate
                ann.append({"experiment_id": eid, "structure_id": s,
                            "pattern": "full" if det else "undetected",
                            "intensity": "high" if det else "undetected",
                            "density": "high" if det else "undetected"})
    with warehouse.connect(path) as con:
        loader.load(con, loader.Batch(genes=genes, structures=structures,
                                      experiments=pl.DataFrame(exps),
                                      annotations=pl.DataFrame(ann)))
        _insert(con, "feature_sets", pl.DataFrame({
            "name": list(FEATURE_SETS), "extractor": ["cnn", "bow"], "dim": [64, 100],
            "params": ['{"layer": "blocks.3"}', '{"k": 100}']}))
        fs_ids = dict(con.execute("select name, feature_set_id from feature_sets").fetchall())
        labels = {(e, s): d for e, s, d in
                  con.execute("select experiment_id, structure_id, detected from labels")
                  .fetchall()}
        runs, tasks, preds, gpreds = [], [], [], []
        run_id = 0
        for si, stage in enumerate(STAGES):
            split_id = si + 1
            _insert(con, "split_defs", pl.DataFrame({
                "split_id": [split_id], "stage": [stage], "method": ["stratified"],
                "seed": [0], "repeat_index": [0]}))
            eids = [e["experiment_id"] for e in exps if e["stage"] == stage]
            test = set(rng.choice(eids, size=len(eids) // 3, replace=False).tolist())
            _insert(con, "splits", pl.DataFrame({
                "split_id": [split_id] * len(eids), "experiment_id": eids,
                "subset": ["test" if e in test else "train" for e in eids]}))
            plans = [(fs, "true") for fs in FEATURE_SETS]
            if stage == "E11.5":
                plans.append(("efficientnet_lite0.blocks.3.max", "shuffled"))
            for fs, mode in plans:
                run_id += 1
                runs.append({
                    "run_id": run_id, "feature_set_id": fs_ids[fs], "stage": stage,
                    "split_id": split_id, "tasks": "all", "levels": "1-3",
                    "label_mode": mode, "params": json.dumps({"C_grid": [0.1, 1, 10]}),
                    "fingerprint": f"fp{run_id}", "status": "finished",
                    "versions": json.dumps({"numpy": np.__version__}),
                    "timings": json.dumps({"fit_s": 1.5})})
                signal = FEATURE_SETS[fs] if mode == "true" else 0.0
                for k, s in enumerate(task_ids):
                    if k in (3, 9):  # skipped: too few positives in train
                        tasks.append({"run_id": run_id, "task_kind": "structure",
                                      "task": str(s), "status": "skipped",
                                      "reason": "fewer than 3 positives in train"})
                        continue
                    tasks.append({"run_id": run_id, "task_kind": "structure", "task": str(s),
                                  "status": "fitted", "c": 1.0})
                    for e in sorted(test):
                        det = labels[(e, s)]
                        if k == 5:  # one structure whose test set has one class: excluded
                            det = True
                        score = round(float(signal * det + rng.normal()), 1)  # ties
                        preds.append({"run_id": run_id, "experiment_id": e,
                                      "structure_id": s, "score": score, "detected": det})
                if stage == "P4" and mode == "true":
                    tasks.append({"run_id": run_id, "task_kind": "gene", "task": "GO:0007420",
                                  "status": "fitted", "c": 1.0})
                    for e in sorted(test):
                        lab = bool(e % 3 == 0)
                        gpreds.append({"run_id": run_id, "experiment_id": e,
                                       "task": "GO:0007420",
                                       "score": float(lab + rng.normal()), "label": lab})
        _insert(con, "runs", pl.DataFrame(runs))
        _insert(con, "run_tasks", pl.DataFrame(tasks))
        _insert(con, "predictions", pl.DataFrame(preds))
        _insert(con, "gene_predictions", pl.DataFrame(gpreds))
        # an unfinished run must never show up in a report
        _insert(con, "runs", pl.DataFrame([{
            "run_id": 99, "feature_set_id": 1, "stage": "P4", "split_id": 2,
            "tasks": "structures", "label_mode": "true", "fingerprint": "running",
            "status": "running"}]))
    return path


@pytest.fixture(scope="module")
def wh(tmp_path_factory) -> Path:
    return build_warehouse(tmp_path_factory.mktemp("report") / "wh.duckdb")


@pytest.fixture(scope="module")
def report(wh, tmp_path_factory):
    return build_report(wh, tmp_path_factory.mktemp("out") / "rep")


def test_table1_numbers_are_the_level_auc_view(wh):
    wide, long, overall = table1(wh)
    with duckdb.connect(str(wh), read_only=True) as con:
        view = pl.from_arrow(con.sql(
            "select l.*, r.status from level_auc l join runs r using (run_id)").to_arrow_table())
    view = view.filter(pl.col("status") == "finished")
    assert long.height == view.height  # one run per cell here
    for r in long.iter_rows(named=True):
        v = view.filter((pl.col("stage") == r["stage"]) & (pl.col("level") == r["level"])
                        & (pl.col("feature_set") == r["feature_set"])
                        & (pl.col("label_mode") == r["label_mode"]))
        assert v.height == 1
        assert r["mean_auc"] == pytest.approx(v["mean_auc"][0], abs=1e-12)
        assert r["std_auc"] == pytest.approx(v["std_auc"][0], abs=1e-12)
        assert r["n_excluded"] == v["n_excluded"][0]
    # wide form: 2 stages x 3 levels + the overall row; CNN (strong signal) best everywhere
    assert wide.height == 7
    cnn = "efficientnet_lite0.blocks.3.max"
    assert wide["best"].to_list() == [cnn] * 7
    shuffled = cnn + " (shuffled labels)"
    assert shuffled in wide.columns
    row = long.filter((pl.col("stage") == "P4") & (pl.col("level") == 2)
                      & (pl.col("feature_set") == cnn)).row(0, named=True)
    cell = wide.filter((pl.col("stage") == "P4") & (pl.col("level") == 2))[cnn][0]
    assert cell == format_auc(row["mean_auc"], row["std_auc"])
    # the overall row is the all_stages_auc view (every run of this warehouse selected)
    with duckdb.connect(str(wh), read_only=True) as con:
        alls = pl.from_arrow(con.sql("select * from all_stages_auc").to_arrow_table())
    for r in overall.iter_rows(named=True):
        v = alls.filter((pl.col("feature_set") == r["feature_set"])
                        & (pl.col("label_mode") == r["label_mode"]))
        assert r["overall_mean"] == pytest.approx(v["mean_auc"][0], abs=1e-12)
        if r["label_mode"] == "true":  # two stages: a std exists
            assert r["overall_std"] == pytest.approx(v["std_auc"][0], abs=1e-12)
        else:  # the shuffled control ran at one stage only
            assert r["overall_std"] is None
    assert wide.filter(pl.col("stage") == "all stages")[cnn][0] == format_auc(
        *overall.filter((pl.col("feature_set") == cnn) & (pl.col("label_mode") == "true"))
        .select("overall_mean", "overall_std").row(0))
    assert wide["stage"][-1] == "all stages"


def test_structure_auc_matches_sklearn_and_exclusion(wh):
    with warehouse.connect(wh, read_only=True) as con:
        sauc = run_named(con, "report_structure_auc", runs=[1])
        preds = run_named(con, "report_predictions", runs=[1])
    excluded = sauc.filter(pl.col("auc").is_null())
    assert excluded.height == 1 and excluded["n_neg"][0] == 0
    for r in sauc.filter(pl.col("auc").is_not_null()).iter_rows(named=True):
        p = preds.filter(pl.col("structure_id") == r["structure_id"])
        assert r["auc"] == pytest.approx(roc_auc_score(p["detected"], p["score"]), abs=1e-12)


def test_report_files_and_content(report, wh):
    html = report.html.read_text(encoding="utf-8")
    md = report.markdown.read_text(encoding="utf-8")
    # every figure embedded once, and every figure file referenced from the Markdown
    n_img = html.count('<img src="data:image/png;base64,')
    assert n_img == len(report.figures) == 4
    for b64 in re.findall(r'data:image/png;base64,([A-Za-z0-9+/=]+)"', html):
        assert base64.b64decode(b64).startswith(b"\x89PNG")
    for f in report.figures:
        assert f.read_bytes().startswith(b"\x89PNG")
        assert f"figures/{f.name}" in md
    # self-contained: nothing fetched from anywhere
    assert "http" not in html.lower()
    assert "<script" not in html and "<link" not in html and "@import" not in html
    for title in ("Table 1", "AUC per ontology level", "ROC curves", "Manual vs predicted",
                  "Split balance", "Skipped tasks", "Gene-level task AUCs",
                  "Runs: parameters and versions"):
        assert title in html and title in md
    assert "fewer than 3 positives in train" in html
    assert "GO:0007420" in html and "GO:0007420" in md
    assert "mean over tasks" in html and "mean over tasks" in md
    # the unfinished run 99 is left out
    assert report.runs == [1, 2, 3, 4, 5]
    # Table 1 cells as printed in both documents
    wide, _, _ = table1(wh)
    cnn = "efficientnet_lite0.blocks.3.max"
    for cell in wide[cnn].to_list():
        assert f'<td class="best">{cell}</td>' in html
        assert f"**{cell}**" in md


def test_report_tables_equal_the_queries(report, wh):
    tables = {p.name for p in report.tables}
    for name in ("table1", "table1_wide", "table1_overall", "structure_auc", "split_balance",
                 "skipped_tasks", "runs", "gene_task_auc"):
        assert f"{name}.csv" in tables and f"{name}.parquet" in tables
    out = report.html.parent / "tables"
    _, long, _ = table1(wh)
    pq = pl.read_parquet(out / "table1.parquet")
    # equal up to float rounding: DuckDB's parallel aggregates may sum in another order
    assert_frame_equal(pq, long, check_exact=False, rel_tol=1e-12, abs_tol=1e-12)
    csv = pl.read_csv(out / "table1.csv")
    assert np.allclose(csv["mean_auc"].to_numpy(), long["mean_auc"].to_numpy())
    skipped = pl.read_parquet(out / "skipped_tasks.parquet")
    assert skipped["n_tasks"].to_list() == [2] * 5
    gene = pl.read_parquet(out / "gene_task_auc.parquet")
    with duckdb.connect(str(wh), read_only=True) as con:
        g = con.execute("select score, label from gene_predictions where run_id = 4").fetchall()
    assert gene.filter(pl.col("run_id") == 4)["auc"][0] == pytest.approx(
        roc_auc_score([x[1] for x in g], [x[0] for x in g]))
    from ishwh.report.tables import gene_tasks_wide

    gw = gene_tasks_wide(gene)  # P4: one task, CNN (run 4) and BoW (run 5) columns
    assert gw["task"].to_list() == ["GO:0007420", "mean over tasks"]
    cnn, bow = "efficientnet_lite0.blocks.3.max", "bow.sift.k100"
    assert gw[cnn].to_list() == pytest.approx([gene.filter(pl.col("run_id") == 4)["auc"][0]] * 2)
    assert gw["best"][0] == (cnn if gw[cnn][0] >= gw[bow][0] else bow)
    split = pl.read_parquet(out / "split_balance.parquet")
    assert split["n_train"].to_list() == [30, 30] and split["n_test"].to_list() == [15, 15]
    assert split["n_structures"].to_list() == [14, 14]
    with duckdb.connect(str(wh), read_only=True) as con:
        worst = con.execute(
            "select split_id, max(abs(test_share_pos - test_fraction)), min(ratio_agreement) "
            "from split_balance where structure_id in (select structure_id from structures "
            "where level >= 1) group by split_id order by split_id").fetchall()
    assert split["worst_dev_pos"].to_list() == pytest.approx([w[1] for w in worst])
    assert split["min_ratio_agreement"].to_list() == pytest.approx([w[2] for w in worst])


def test_report_run_and_level_selection(wh, tmp_path):
    res = build_report(wh, tmp_path / "r", runs=[4, 5], level=1)
    assert res.runs == [4, 5] and res.level == 1
    html = res.html.read_text(encoding="utf-8")
    assert "E11.5" not in pl.read_csv(tmp_path / "r/tables/table1.csv")["stage"].to_list()
    # one stage -> no stage-comparison figure
    assert html.count('<img src="data:image/png;base64,') == len(res.figures) == 3
    with pytest.raises(NotFound, match="run.*99"):
        build_report(wh, tmp_path / "x", runs=[99])
    with pytest.raises(NotFound, match="level 7"):
        build_report(wh, tmp_path / "x", level=7)
    with pytest.raises(InvalidInput):
        build_report(wh, tmp_path / "x", runs=[])


def test_report_on_a_warehouse_without_runs(db_path, tmp_path):
    with pytest.raises(NotFound, match="no finished runs"):
        build_report(db_path, tmp_path / "r")


def test_report_opens_the_warehouse_read_only(wh, tmp_path):
    # While this process holds the file read-only, DuckDB refuses a read-write open of it
    # ("different configuration"), so the report succeeds only if it opens read-only too.
    with duckdb.connect(str(wh), read_only=True):
        build_report(wh, tmp_path / "r", runs=[1])
    with duckdb.connect(str(wh), read_only=True), pytest.raises(IshwhError):
        warehouse.init(wh)  # the same holder does stop a writer: the test can fail


def test_named_queries_run_through_ishwh_sql(wh):
    from cli.app import app

    runner = CliRunner()
    for name in ("table1", "table1_overall", "report_structure_auc", "report_predictions",
                 "skipped_tasks", "split_balance_summary", "report_runs",
                 "report_gene_task_auc"):
        res = runner.invoke(app, ["sql", "--query", name, "--format", "csv", "--db", str(wh)])
        assert res.exit_code == 0, res.output
        assert len(res.output.splitlines()) > 1, name
    # the report's run filter is a parameter of the query
    res = runner.invoke(app, ["sql", "--query", "table1", "--param", "runs=[4, 5]",
                              "--format", "json", "--db", str(wh)])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert rows and {r["run_ids"] for r in rows} <= {"4", "5"}
    expected = run_named_rows(wh, "table1", [4, 5])
    # equal up to float rounding (DuckDB's parallel sums vary in the last bit)
    assert [{k: v for k, v in r.items() if not isinstance(v, float)} for r in rows] == \
        [{k: v for k, v in r.items() if not isinstance(v, float)} for r in expected]
    for got, want in zip(rows, expected, strict=True):
        for k, v in want.items():
            if isinstance(v, float):
                assert got[k] == pytest.approx(v, rel=1e-12, abs=1e-12), k
    # the data checks pass on a warehouse made by the pipeline's own writers
    from ishwh.checks import run_checks

    assert [r.name for r in run_checks(wh) if not r.passed] == []


def run_named_rows(wh, name, runs):
    with duckdb.connect(str(wh), read_only=True) as con:
        return run_named(con, name, runs=runs).to_dicts()


def test_cli_report(wh, tmp_path):
    from cli.app import app

    runner = CliRunner()
    out = tmp_path / "cli"
    res = runner.invoke(app, ["report", "--runs", "1,2", "--level", "2", "--out", str(out),
                              "--db", str(wh)])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == str(out / "report.html")
    assert (out / "report.md").is_file()
    bad = runner.invoke(app, ["report", "--runs", "1,x", "--out", str(out), "--db", str(wh)])
    assert bad.exit_code != 0 and "--runs" in bad.output
    assert runner.invoke(app, ["report", "--help"]).exit_code == 0


def test_repeated_runs_are_averaged_per_cell(tmp_path):
    """A second run of the same feature set and stage (another split) is averaged in Table 1."""
    wh = build_warehouse(tmp_path / "wh.duckdb", seed=1)
    with warehouse.connect(wh) as con:
        con.execute("""
            insert into runs (run_id, feature_set_id, stage, split_id, tasks, label_mode,
                              fingerprint, status)
            select 6, feature_set_id, stage, split_id, tasks, label_mode, 'repeat', 'finished'
            from runs where run_id = 1""").fetchall()
        con.execute("""
            insert into predictions
            select 6, experiment_id, structure_id, -score + experiment_id % 3, detected
            from predictions where run_id = 1""").fetchall()
        view = dict(((r, lv), (m, s)) for r, lv, m, s in con.execute(
            "select run_id, level, mean_auc, std_auc from level_auc where run_id in (1, 6)"
        ).fetchall())
    _, long, _ = table1(wh)
    cell = long.filter((pl.col("stage") == "E11.5") & (pl.col("label_mode") == "true")
                       & (pl.col("feature_set") == "efficientnet_lite0.blocks.3.max"))
    assert cell["n_runs"].to_list() == [2, 2, 2]
    assert cell["run_ids"].to_list() == ["1,6"] * 3
    for r in cell.iter_rows(named=True):
        lv = r["level"]
        assert r["mean_auc"] == pytest.approx((view[1, lv][0] + view[6, lv][0]) / 2)
        assert r["std_auc"] == pytest.approx((view[1, lv][1] + view[6, lv][1]) / 2)


def test_report_of_gene_task_runs_only(tmp_path):
    """Runs without structure predictions: no Table 1 numbers or figures, still a report."""
    wh = build_warehouse(tmp_path / "wh.duckdb", seed=2)
    with warehouse.connect(wh) as con:
        con.execute("delete from predictions").fetchall()
    res = build_report(wh, tmp_path / "r")
    html = res.html.read_text(encoding="utf-8")
    assert res.level is None and res.figures == []
    assert "No structure AUCs to draw" in html and "GO:0007420" in html
    assert 'data:image/png' not in html
