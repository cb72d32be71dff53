"""Is a run's held-out ECE the estimator's noise or real miscalibration? (docs/annotate.md)

For each within-stage run (one stratified split per stage of the warehouse's feature set):

* ``ece``: the held-out expected calibration error of the stored Platt probabilities (test
  experiments; the view ``calibration_error``);
* ``null mean / null p95``: the ECE a perfectly calibrated model shows at the same n and the
  same probabilities: labels redrawn ``y* ~ Bernoulli(p)`` (``--draws`` times), ECE of
  ``(p, y*)``; an observed ECE above the null's 95th percentile is real miscalibration;
* the causes, on the run's own training side: the models are refitted with the run's C per
  task, out-of-fold scores cross-fitted as ``fit`` does, and the test scores compared with
  them (``scale``: std of test scores / std of out-of-fold scores, median over structures);
* alternatives fitted on the same out-of-fold scores and evaluated on the same test
  predictions: Platt (what ``fit`` stores, recomputed), isotonic regression per structure,
  and Platt on out-of-fold scores whose fold models standardise with their own training rows
  (so held-out rows meet a standardisation they did not shape, as test rows do; computed
  here, not used by ``fit``).

Run: ``.venv/bin/python benchmarks/calibration_noise.py WAREHOUSE --features grid``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def ece(p: np.ndarray, y: np.ndarray) -> float:
    from ishwh.fit.calibration import expected_calibration_error

    return expected_calibration_error(p, y)


def null_ece(p: np.ndarray, draws: int, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    vals = [ece(p, rng.random(p.size) < p) for _ in range(draws)]
    return float(np.mean(vals)), float(np.quantile(vals, 0.95))


def _own_scale_oof(est, X, y, m, folds):
    """Out-of-fold scores whose fold models standardise with their own training rows."""
    from ishwh.fit.trainer import BatchedLogisticRegression

    out = np.full(y.shape, np.nan)
    for f in np.unique(folds):
        tr, va = folds != f, folds == f
        lab = m[tr] & (y[tr] > 0.5)
        both = lab.any(0) & (m[tr] & ~lab).any(0)
        mm = m[tr] & both
        yy = np.where(both, y[tr], 0.0)
        mm[0, ~both], yy[0, ~both], mm[1, ~both], yy[1, ~both] = True, 1.0, True, 0.0
        fold_est = BatchedLogisticRegression(C=est.C_, scale_floor=est.scale_floor)
        fold_est.fit(X[tr], yy, mm)
        sc = fold_est.decision_function(X[va])
        sc[:, ~both] = np.nan
        out[va] = sc
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("db", type=Path)
    ap.add_argument("--features", required=True)
    ap.add_argument("--stages", default=None, help="default: every annotated stage of the set")
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--scale-floor", type=float, default=0.0, help="the fit's --scale-floor")
    args = ap.parse_args()

    from sklearn.isotonic import IsotonicRegression

    from ishwh import warehouse
    from ishwh.fit import fit, runner
    from ishwh.fit import models as models_mod
    from ishwh.fit.calibration import apply_platt, platt
    from ishwh.fit.trainer import BatchedLogisticRegression, crossfit_scores

    with warehouse.connect(args.db, read_only=True) as con:
        stages = args.stages.split(",") if args.stages else [r[0] for r in con.execute(
            "select e.stage from experiment_features f join experiments e "
            "using (experiment_id) join feature_sets s using (feature_set_id) "
            "join stages st on st.stage = e.stage where s.name = ? and st.is_annotated "
            "group by e.stage order by min(st.stage_order)", [args.features]).fetchall()]
    print("stage | n test | ECE | null mean | null p95 | scale | Platt | isotonic | "
          "Platt, folds on their own scale")
    for stage in stages:
        (run,) = fit(args.db, args.features, stage, feature_norm="pooled",
                     scale_floor=args.scale_floor, progress=False)
        with warehouse.connect(args.db, read_only=True) as con:
            m = models_mod.read_models(con, run)
            d = runner._read_stage(con, args.features, stage, "pooled")
            side = dict(con.execute("select experiment_id, subset from splits join runs "
                                    "using (split_id) where run_id = ?", [run]).fetchall())
            pred = con.execute("select experiment_id, structure_id, score, detected from "
                               "predictions where run_id = ?", [run]).fetchall()
            cs = dict(con.execute("select task, c from run_tasks where run_id = ? and "
                                  "status = 'fitted' and task_kind = 'structure'",
                                  [run]).fetchall())
        col = {int(s): j for j, s in enumerate(m.structure_ids)}
        e_i = np.array([col[s] for _, s, _, _ in pred])
        sc = np.array([x for _, _, x, _ in pred])
        y = np.array([bool(x) for *_, x in pred])
        p = apply_platt(sc, m.platt_a[e_i], m.platt_b[e_i])
        obs = ece(p, y)
        nm, n95 = null_ece(p, args.draws)
        # the run's training side, refitted with its C per task, out-of-fold as fit does
        tr = np.array([side.get(int(e)) == "train" for e in d.feat_ids])
        names = [str(s) for s in m.structure_ids]
        where = {n: i for i, n in enumerate(d.struct.names)}
        cols = [where[n] for n in names]
        rows = d.row[tr]
        yt = d.struct.y[rows][:, cols]
        mt = d.struct.mask[rows][:, cols]
        est = BatchedLogisticRegression(C=np.array([cs[n] for n in names]),
                                        scale_floor=args.scale_floor)
        est.fit(d.X[tr], yt, mt)
        folds = models_mod.gene_folds(d.gene_ids[rows], yt, mt, 5, 0)
        oof = crossfit_scores(est, yt, mt, folds)
        ok = mt & np.isfinite(oof)
        scale = np.nanmedian([np.std(sc[e_i == j]) / np.std(oof[ok[:, j], j])
                              for j in range(len(names)) if ok[:, j].sum() > 5])
        a, b = platt(oof, yt, ok)
        p_platt = apply_platt(sc, a[e_i], b[e_i])
        oof2 = _own_scale_oof(est, d.X[tr], yt, mt, folds)
        ok2 = mt & np.isfinite(oof2)
        a2, b2 = platt(oof2, yt, ok2)
        p_own = apply_platt(sc, a2[e_i], b2[e_i])
        p_iso = np.empty_like(sc)
        for j in range(len(names)):
            sel = e_i == j
            iso = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1)
            iso.fit(oof[ok[:, j], j], yt[ok[:, j], j])
            p_iso[sel] = iso.predict(sc[sel])
        print(f"{stage} | {sc.size:,} | {obs:.3f} | {nm:.4f} | {n95:.4f} | {scale:.2f} | "
              f"{ece(p_platt, y):.3f} | {ece(p_iso, y):.3f} | {ece(p_own, y):.3f}",
              flush=True)


if __name__ == "__main__":
    main()
