"""Measure cross-stage transfer and calibration on a featurized warehouse (docs/annotate.md).

For every annotated stage S of the warehouse (the feature set's stages): one within-stage run
(S's stratified split, seed 0), and leave-one-stage-out runs trained on all the other
annotated stages and evaluated on the same test experiments of S, once with pooled features
and once with per-stage standardised features. Prints the transfer table (mean over levels of
the level mean AUC, from the `transfer_auc` view) and the held-out expected calibration error
of every run (`calibration_error`, subset 'test': Platt fitted on out-of-fold training
scores, evaluated on the test experiments).

Run (after `ishwh ingest synthetic --preset paper ...` and `ishwh featurize --extractor cnn`):
``.venv/bin/python benchmarks/annotate_transfer.py WAREHOUSE [--features NAME]``
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("db", type=Path)
    ap.add_argument("--features", default=None, help="feature set (default: the first CNN set)")
    ap.add_argument("--norms", default="pooled,stage")
    args = ap.parse_args()

    import numpy as np

    from ishwh import warehouse
    from ishwh.fit import fit
    from ishwh.fit import models as models_mod

    with warehouse.connect(args.db, read_only=True) as con:
        fs = args.features or con.execute(
            "select name from feature_sets where extractor = 'cnn' order by feature_set_id "
            "limit 1").fetchall()[0][0]
        stages = [r[0] for r in con.execute(
            "select e.stage from experiment_features f join experiments e "
            "using (experiment_id) join feature_sets s using (feature_set_id) "
            "join stages st on st.stage = e.stage where s.name = ? and st.is_annotated "
            "group by e.stage order by min(st.stage_order)", [fs]).fetchall()]
    print(f"feature set {fs}, stages {', '.join(stages)}")
    for s in stages:
        t0 = time.perf_counter()
        fit(args.db, fs, s, progress=False)
        print(f"  {s} within-stage: {time.perf_counter() - t0:.0f} s", flush=True)
        others = [x for x in stages if x != s]
        for norm in args.norms.split(","):
            t0 = time.perf_counter()
            fit(args.db, fs, s, train_stages=others, feature_norm=norm, progress=False)
            print(f"  {s} from {','.join(others)} ({norm}): {time.perf_counter() - t0:.0f} s",
                  flush=True)

    with warehouse.connect(args.db, read_only=True) as con:
        rows = con.execute(
            "select t.stage, t.feature_norm, count(*) as n_levels, avg(t.within_auc), "
            "avg(t.transfer_auc), avg(t.auc_drop) from transfer_auc t join stages s "
            "using (stage) where t.feature_set = ? and t.scheme = 'transfer' "
            "group by t.stage, t.feature_norm, s.stage_order "
            "order by s.stage_order, t.feature_norm", [fs]).fetchall()
        print("\n| stage | features | levels | within-stage mean AUC | leave-one-stage-out "
              "mean AUC | drop |")
        print("|---|---|---|---|---|---|")
        for st, norm, n, w, t, d in rows:
            print(f"| {st} | {norm} | {n} | {w:.3f} | {t:.3f} | {d:.3f} |")
        ece = con.execute(
            "select c.stage, coalesce(t.feature_norm, 'pooled'), "
            "array_to_string(coalesce(t.train_stages, [c.stage]), ','), c.n, c.ece "
            "from calibration_error c left join run_training t using (run_id) "
            "where c.subset = 'test' order by c.run_id").fetchall()
        worst = 0.0
        runs = [r[0] for r in con.execute(
            "select run_id from models group by run_id order by run_id").fetchall()]
        for run in runs:
            m = models_mod.read_models(con, run)
            ids, X = models_mod.stage_vectors(con, m.feature_set, m.stage, m.feature_norm)
            pred = con.execute("select experiment_id, structure_id, score from predictions "
                               "where run_id = ?", [run]).fetchnumpy()
            row = np.searchsorted(ids, pred["experiment_id"])
            col = np.searchsorted(m.structure_ids, pred["structure_id"])
            worst = max(worst, float(np.abs(m.scores(X)[row, col] - pred["score"]).max()))
        print(f"\nstored models reproduce predictions.score of {len(runs)} runs: "
              f"max |diff| = {worst:.2e}")
        print("\n| stage | features | trained on | held-out predictions | ECE |")
        print("|---|---|---|---|---|")
        for st, norm, tr, n, e in ece:
            print(f"| {st} | {norm} | {tr} | {n:,} | {e:.4f} |")


if __name__ == "__main__":
    main()
