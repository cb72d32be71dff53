"""The SQL metrics of every target equal scikit-learn's on the same rows (hypothesis)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    mean_absolute_error,
    roc_auc_score,
)

from ishwh import warehouse
from ishwh.vocab import GRADES, PATTERNS, TARGETS

CLASSES = {"pattern": PATTERNS, "intensity": GRADES, "density": GRADES,
           "detected": ("undetected", "detected")}


@pytest.fixture(scope="module")
def wh(tmp_path_factory):
    path = tmp_path_factory.mktemp("metrics") / "wh.duckdb"
    warehouse.init(path)
    with warehouse.connect(path) as con:
        con.execute("insert into structures (structure_id, acronym, level) values (7, 'S7', 3)")
        con.execute("insert into feature_sets (name, extractor, dim) values ('grid', 'grid', 2)")
        yield con


@st.composite
def case(draw):
    target = draw(st.sampled_from(sorted(CLASSES)))
    names = CLASSES[target]
    if target == "detected":
        n = draw(st.integers(2, 25))
        truth = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
        # few distinct scores: ties in the AUC ranks and at the 0.5 threshold
        score = draw(st.lists(st.sampled_from([-2.0, -0.5, 0.0, 0.5, 1.5]), min_size=n,
                              max_size=n))
        return target, [0, 1], np.array(truth), np.array(score), None
    k = draw(st.integers(2, 4))
    eff = sorted(draw(st.sets(st.integers(0, len(names) - 1), min_size=k, max_size=k)))
    n = draw(st.integers(2, 25))
    truth = np.array(draw(st.lists(st.sampled_from(eff), min_size=n, max_size=n)))
    raw = np.array(draw(st.lists(st.lists(st.integers(1, 4), min_size=k, max_size=k),
                                 min_size=n, max_size=n)), dtype=np.float64)
    # training rows per learned class; the first one sometimes also absorbs a merged class
    n_train = draw(st.lists(st.integers(3, 40), min_size=k, max_size=k))
    merged = draw(st.integers(0, 5))
    return target, eff, truth, raw / raw.sum(1, keepdims=True), (n_train, merged)


def _load(con, target, eff, truth, score, train):
    for table in ("predictions", "class_predictions", "run_targets", "runs", "target_classes"):
        con.execute(f"delete from {table}")
    con.execute("insert into runs (run_id, feature_set_id, stage, split_id, tasks, fingerprint, "
                "status) values (1, 1, 'E15.5', 1, 'structures', 'x', 'finished')")
    names = CLASSES[target]
    if target == "detected":
        con.executemany("insert into predictions (run_id, experiment_id, structure_id, score, "
                        "detected) values (1, ?, 7, ?, ?)",
                        [(i, float(s), bool(t))
                         for i, (s, t) in enumerate(zip(score, truth, strict=True))])
        return
    con.execute("insert into run_targets values (1, ?, 'multinomial', 3)", [target])
    n_train, merged = train
    rows = [(names[c], names[c], n) for c, n in zip(eff, n_train, strict=True)]
    spare = [c for c in names if c not in {r[0] for r in rows}]
    if merged and spare:   # a rare class merged into the first learned one: its rows count
        rows.append((spare[0], names[eff[0]], merged))
    con.executemany("insert into target_classes values (1, 7, ?, ?, ?, 0)", rows)
    con.executemany(
        "insert into class_predictions values (1, ?, 7, ?, ?, ?)",
        [(i, names[c], float(score[i, j]), names[int(truth[i])])
         for i in range(len(truth)) for j, c in enumerate(eff)])


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(case())
def test_sql_metrics_equal_sklearn(wh, c):
    target, eff, truth, score, train = c
    con = wh
    _load(con, target, eff, truth, score, train)
    row = con.execute("select macro_auc, accuracy, balanced_accuracy, kappa, mae, level, "
                      "stage, target from target_metrics").fetchall()
    prior_row = con.execute("select accuracy_prior, balanced_accuracy_prior, kappa_prior "
                            "from target_metrics").fetchall()[0]
    conf = con.execute("select truth_grade, predicted_grade, n from class_confusion").fetchall()
    assert len(row) == 1
    auc, acc, bal, kappa, mae, level, stage, tgt = row[0]
    assert (level, stage, tgt) == (3, "E15.5", target)
    if target == "detected":
        prob = 1 / (1 + np.exp(-score))
        cols = np.stack([1 - prob, prob], axis=1)
    else:
        cols = score
    pred = np.asarray(eff)[np.argmax(cols, axis=1)]   # first maximum: the lower grade
    present = sorted(set(truth.tolist()))
    if len(present) < 2:
        assert auc is None
    elif target == "detected":
        assert auc == pytest.approx(roc_auc_score(truth, score), abs=1e-12)
    else:
        ovr = [roc_auc_score(truth == k, cols[:, j]) for j, k in enumerate(eff) if k in present]
        assert auc == pytest.approx(np.mean(ovr), abs=1e-12)
        if len(eff) > 2 and len(present) == len(eff):
            assert auc == pytest.approx(
                roc_auc_score(truth, cols, multi_class="ovr", average="macro", labels=eff),
                abs=1e-12)
    assert acc == pytest.approx(accuracy_score(truth, pred), abs=1e-12)
    assert bal == pytest.approx(balanced_accuracy_score(truth, pred), abs=1e-12)
    if target == "pattern":
        assert kappa is None and mae is None
    else:
        labels = list(range(len(CLASSES[target])))
        with np.errstate(divide="ignore", invalid="ignore"):
            want = cohen_kappa_score(truth, pred, weights="quadratic", labels=labels)
        if math.isnan(want):
            assert kappa is None
        else:
            assert kappa == pytest.approx(want, abs=1e-9)
        assert mae == pytest.approx(mean_absolute_error(truth, pred), abs=1e-12)
    _check_prior_decision(target, eff, truth, cols, train, prior_row)
    labels = sorted(set(truth.tolist()) | set(pred.tolist()))
    cm = confusion_matrix(truth, pred, labels=labels)
    got = np.zeros_like(cm)
    for t, p, n in conf:
        got[labels.index(t), labels.index(p)] = n
    assert (got == cm).all()


def _check_prior_decision(target, eff, truth, cols, train, got):
    """The prior-corrected decision: argmax of probability / training share of the class
    (ties: the lower grade); multi-class runs only."""
    if target == "detected":
        assert got == (None, None, None)
        return
    n_train, merged = train
    counts = np.array(n_train, dtype=np.float64)
    if merged and len(eff) < len(CLASSES[target]):
        counts[0] += merged
    pred = np.asarray(eff)[np.argmax(cols / (counts / counts.sum()), axis=1)]
    acc, bal, kappa = got
    assert acc == pytest.approx(accuracy_score(truth, pred), abs=1e-12)
    assert bal == pytest.approx(balanced_accuracy_score(truth, pred), abs=1e-12)
    if target == "pattern":
        assert kappa is None
        return
    with np.errstate(divide="ignore", invalid="ignore"):
        want = cohen_kappa_score(truth, pred, weights="quadratic",
                                 labels=list(range(len(CLASSES[target]))))
    if math.isnan(want):
        assert kappa is None
    else:
        assert kappa == pytest.approx(want, abs=1e-9)


def test_target_class_order_mirrors_the_vocabulary(wh):
    rows = wh.execute("select target, class, grade from target_class_order "
                      "order by target, grade").fetchall()
    want = {t: ("undetected", "detected") if t == "detected" else CLASSES[t]
            for t in ("detected", "pattern", "intensity", "density")}
    got: dict[str, list[str]] = {}
    for target, cls, grade in rows:
        got.setdefault(target, []).append(cls)
        assert got[target].index(cls) == grade
    assert {t: tuple(v) for t, v in got.items()} == want
    assert set(want) == set(TARGETS)
