"""The report's figures read right: legends off the curves, every colour named, titles apart,
an honest colour-bar label, and ROC picks that rest on enough test positives."""

from __future__ import annotations

import re

import numpy as np
import pytest
from test_report import build_warehouse

from ishwh import warehouse
from ishwh.report import plots
from ishwh.report.gather import MIN_ROC_POSITIVES, gather


def _overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


@pytest.mark.parametrize("n_structures", [2, 4, 30])
def test_annotation_grid_names_every_colour_and_keeps_titles_apart(n_structures):
    rng = np.random.default_rng(0)
    truth = (rng.random((6, n_structures)) < 0.4).astype(float)
    truth[0, 0] = np.nan
    fig = plots.annotation_grid([f"G{i}" for i in range(6)],
                                [f"S{j}" for j in range(n_structures)], truth,
                                rng.random((6, n_structures)), "a title")
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    ax_t, ax_p = fig.axes[:2]
    assert not _overlap(ax_t.title.get_window_extent(r), ax_p.title.get_window_extent(r))
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["manual: detected", "manual: undetected", "manual: not annotated",
                      "no prediction"]
    colours = list(plots.TRUTH_COLORS.values()) + [plots.NO_PREDICTION]
    assert len(set(colours)) == len(colours)
    assert fig.axes[-1].get_ylabel() == "score (uncalibrated)"   # the colour bar


def test_roc_legends_sit_below_the_curves():
    rng = np.random.default_rng(1)
    truth = rng.random(40) < 0.3
    curves = [plots.RocCurve(f"c{i} (5 pos / 35 neg)", 0.8, truth, rng.random(40) + truth)
              for i in range(3)]
    fig = plots.roc_curves([plots.RocPanel("E11.5 · set (run 1)", curves)] * 2, 3, 5)
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    for ax in fig.axes:
        leg = ax.get_legend()
        assert leg is not None
        assert not _overlap(leg.get_window_extent(r), ax.get_window_extent(r))
    assert "at least 5 test positives" in fig.texts[0].get_text()


def test_roc_picks_structures_with_enough_test_positives(tmp_path):
    db = build_warehouse(tmp_path / "wh.duckdb")
    level = gather(db).level
    # Make one structure per run the worst of all on 2 test positives (scored lowest): the
    # ROC must not pick it as "lowest" while others have enough positives.
    with warehouse.connect(db) as con:
        for (run,) in con.execute("select run_id from runs").fetchall():
            sid = con.execute("select min(structure_id) from structure_auc where run_id = ? "
                              "and level = ?", [run, level]).fetchall()[0][0]
            con.execute("delete from predictions where run_id = ? and structure_id = ? and "
                        "detected and experiment_id not in (select experiment_id from "
                        "predictions where run_id = ? and structure_id = ? and detected "
                        "order by experiment_id limit 2)", [run, sid, run, sid])
            con.execute("update predictions set score = -100 where run_id = ? and "
                        "structure_id = ? and detected", [run, sid])
        assert con.execute("select count(*) from structure_auc where level = ? and n_pos = 2 "
                           "and auc = 0", [level]).fetchall()[0][0] > 0
    data = gather(db)
    assert data.roc_panels and data.level == level
    with warehouse.connect(db, read_only=True) as con:
        for panel in data.roc_panels:
            run = int(re.search(r"run (\d+)", panel.title).group(1))
            # independently: the lowest AUC at the level among structures with enough positives
            lowest = con.execute(
                "select s.acronym, a.n_pos, a.auc from structure_auc a join structures s "
                "using (structure_id) where a.run_id = ? and a.level = ? and a.auc is not null "
                "and a.n_pos >= ? order by a.auc, s.acronym limit 1",
                [run, data.level, MIN_ROC_POSITIVES]).fetchall()
            label = panel.curves[-1].label
            assert label.startswith("lowest: ")
            assert lowest
            if lowest:
                acr, n_pos, auc = lowest[0]
                assert label.startswith(f"lowest: {acr} ({n_pos} pos / ")
                assert panel.curves[-1].auc == pytest.approx(auc)
            for c in panel.curves:   # n shown on every curve
                assert re.search(r"\(\d+ pos / \d+ neg\)", c.label)
