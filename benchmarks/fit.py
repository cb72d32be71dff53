"""Benchmark: ishwh's batched trainer vs a scikit-learn loop, and AUC in DuckDB vs sklearn.

1. Trainer. The same standardised features, the same tasks, the same C: ishwh's
   ``BatchedLogisticRegression(C=C)`` (all tasks at once, fit + test scores) against a loop of
   ``sklearn.linear_model.LogisticRegression(C=C)`` (lbfgs, defaults otherwise; one fit and one
   ``decision_function`` per task; the one StandardScaler pass is timed with it). Reports both
   wall times, the ratio and the max per-task |test AUC difference|. Labels depend linearly on
   10 of the dims plus noise; 10% of the labels are unknown, as in the atlas.
2. AUC. ``structure_auc`` (the SQL view) over one run's predictions (``--structures`` x
   ``--experiments`` rows, scores with ties) against a loop of ``roc_auc_score`` over the same
   rows (arrays already in memory, grouping not timed). Reports times, ratio and max |diff|.

Run: ``.venv/bin/python benchmarks/fit.py`` (defaults run in about a minute on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa


def bench_trainer(n_train: int, n_test: int, dim: int, n_tasks: int, c: float, device: str,
                  seed: int = 0) -> dict:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    from ishwh.fit.trainer import BatchedLogisticRegression

    rng = np.random.default_rng(seed)
    n = n_train + n_test
    x = (rng.standard_normal((n, dim)) * rng.uniform(0.5, 3, dim)).astype(np.float32)
    z = (x[:, :10] - x[:, :10].mean(0)) / x[:, :10].std(0)
    logit = z @ rng.standard_normal((10, n_tasks))
    y = logit + 2 * rng.standard_normal((n, n_tasks)) > rng.normal(0.5, 1.5, n_tasks)
    mask = rng.random(y.shape) >= 0.1
    xtr, xte, ytr, yte, mtr, mte = x[:n_train], x[n_train:], y[:n_train], y[n_train:], \
        mask[:n_train], mask[n_train:]

    t0 = time.perf_counter()
    est = BatchedLogisticRegression(C=c, device=device).fit(xtr, ytr, mtr)
    ours = est.decision_function(xte)
    if device != "cpu":
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
    t_ours = time.perf_counter() - t0

    t0 = time.perf_counter()
    scaler = StandardScaler().fit(xtr)
    a, b = scaler.transform(xtr), scaler.transform(xte)
    theirs = np.empty_like(ours)
    n_warn = 0
    for j in range(n_tasks):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            lr = LogisticRegression(C=c).fit(a[mtr[:, j]], ytr[mtr[:, j], j])
        n_warn += any(issubclass(w.category, ConvergenceWarning) for w in caught)
        theirs[:, j] = lr.decision_function(b)
    t_sk = time.perf_counter() - t0

    diffs, aucs = [], []
    for j in range(n_tasks):
        te = mte[:, j]
        if yte[te, j].all() or not yte[te, j].any():
            continue
        a_ours = roc_auc_score(yte[te, j], ours[te, j])
        diffs.append(abs(a_ours - roc_auc_score(yte[te, j], theirs[te, j])))
        aucs.append(a_ours)
    return {"n_train": n_train, "n_test": n_test, "dim": dim, "n_tasks": n_tasks, "C": c,
            "device": str(est.device_), "ishwh_s": t_ours, "sklearn_s": t_sk,
            "speedup": t_sk / t_ours, "max_auc_diff": max(diffs), "mean_auc": float(np.mean(aucs)),
            "sklearn_convergence_warnings": n_warn, "newton_steps": est.n_iter_}


def bench_stage(n_train: int, n_test: int, dim: int, n_tasks: int, device: str,
                seed: int = 0) -> dict:
    """ishwh alone at the scale of a real stage: C by 3-fold inner CV over DEFAULT_CS."""
    from ishwh.fit.trainer import DEFAULT_CS, BatchedLogisticRegression, auc_columns

    rng = np.random.default_rng(seed)
    n = n_train + n_test
    factors = rng.standard_normal((n, 8))
    x = (factors @ rng.standard_normal((8, dim)) / 3 + rng.standard_normal((n, dim))
         ).astype(np.float32)
    y = factors @ rng.standard_normal((8, n_tasks)) + rng.standard_normal((n, n_tasks)) > \
        rng.normal(0, 2, n_tasks)
    mask = rng.random(y.shape) >= 0.1
    keep = (y[:n_train] & mask[:n_train]).sum(0) >= 3
    keep &= (~y[:n_train] & mask[:n_train]).sum(0) >= 3
    y, mask = y[:, keep], mask[:, keep]
    groups = rng.integers(1, 11, y.shape[1])            # ten "levels"
    t0 = time.perf_counter()
    est = BatchedLogisticRegression(device=device).fit(x[:n_train], y[:n_train], mask[:n_train],
                                                       groups)
    scores = est.decision_function(x[n_train:])
    t = time.perf_counter() - t0
    auc = auc_columns(scores, y[n_train:], mask[n_train:])
    return {"n_train": n_train, "n_test": n_test, "dim": dim, "n_tasks": int(y.shape[1]),
            "grid": list(DEFAULT_CS), "device": str(est.device_), "seconds": t,
            "mean_auc": float(np.nanmean(auc))}


def bench_auc(n_structures: int, n_experiments: int, seed: int = 0) -> dict:
    from sklearn.metrics import roc_auc_score

    from ishwh import warehouse

    rng = np.random.default_rng(seed)
    sid = np.repeat(np.arange(n_structures, dtype=np.int64), n_experiments)
    eid = np.tile(np.arange(n_experiments, dtype=np.int64), n_structures)
    truth = rng.random(sid.size) < rng.uniform(0.05, 0.95, n_structures)[sid]
    score = np.round(rng.standard_normal(sid.size) + truth, 2)     # 2 decimals: many ties
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "wh.duckdb"
        warehouse.init(path)
        with warehouse.connect(path) as con:
            con.execute("insert into runs (feature_set_id, stage, split_id, tasks, fingerprint, "
                        "status) values (1, 'E11.5', 1, 'structures', 'bench', 'finished')"
                        ).fetchall()
            con.register("_p", pa.table({"run_id": pa.array(np.ones(sid.size, np.int32)),
                                         "experiment_id": eid, "structure_id": sid,
                                         "score": score, "detected": truth}))
            con.execute("insert into predictions select * from _p").fetchall()
            con.unregister("_p")
            con.execute("checkpoint").fetchall()
            best = np.inf
            for _ in range(3):
                t0 = time.perf_counter()
                tbl = con.sql("select structure_id, auc from structure_auc where run_id = 1 "
                              "order by structure_id").to_arrow_table()
                best = min(best, time.perf_counter() - t0)
    sql_auc = tbl.column("auc").to_numpy()
    # group once (not timed), then time the sklearn loop alone
    order = np.argsort(sid, kind="stable")
    bounds = np.searchsorted(sid[order], np.arange(n_structures + 1))
    groups = [(truth[order[bounds[i]:bounds[i + 1]]], score[order[bounds[i]:bounds[i + 1]]])
              for i in range(n_structures)]
    t0 = time.perf_counter()
    sk_auc = np.array([roc_auc_score(t_, s_) for t_, s_ in groups])
    t_sk = time.perf_counter() - t0
    return {"rows": int(sid.size), "n_structures": n_structures, "duckdb_s": best,
            "sklearn_s": t_sk, "speedup": t_sk / best,
            "max_abs_diff": float(np.abs(sql_auc - sk_auc).max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=400)
    ap.add_argument("--n-test", type=int, default=200)
    ap.add_argument("--dim", type=int, default=4096)
    ap.add_argument("--tasks", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1,
                    help="CPU threads for BOTH sides (torch and the BLAS under numpy/sklearn); "
                         "1 keeps timings stable on a shared machine")
    ap.add_argument("--C", type=float, default=1e-3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--structures", type=int, default=1071)
    ap.add_argument("--experiments", type=int, default=430)
    ap.add_argument("--skip-trainer", action="store_true")
    ap.add_argument("--stage", action="store_true",
                    help="also time ishwh alone on a stage: --stage-train x half as many "
                         "test experiments, --stage-tasks tasks, C by inner CV")
    ap.add_argument("--stage-dim", type=int, default=4096)
    ap.add_argument("--stage-train", type=int, default=1300)
    ap.add_argument("--stage-tasks", type=int, default=1071)
    ap.add_argument("--skip-auc", action="store_true")
    args = ap.parse_args()
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    print(f"threads: {args.threads} (torch and BLAS)")
    if not args.skip_trainer:
        r = bench_trainer(args.n_train, args.n_test, args.dim, args.tasks, args.C, args.device)
        print(f"trainer: n_train={r['n_train']} n_test={r['n_test']} d={r['dim']} "
              f"tasks={r['n_tasks']} C={r['C']:g} device={r['device']}")
        print(f"  ishwh {r['ishwh_s']:.2f} s ({r['newton_steps']} Newton steps) | "
              f"sklearn loop {r['sklearn_s']:.2f} s "
              f"({r['sklearn_convergence_warnings']} convergence warnings) | "
              f"speedup {r['speedup']:.1f}x | max |AUC diff| {r['max_auc_diff']:.5f} | "
              f"mean test AUC {r['mean_auc']:.3f}")
    if args.stage:
        r = bench_stage(args.stage_train, args.stage_train // 2, args.stage_dim,
                        args.stage_tasks, args.device)
        print(f"stage: n_train={r['n_train']} n_test={r['n_test']} d={r['dim']} "
              f"tasks={r['n_tasks']} device={r['device']}, C by 3-fold CV over "
              f"{len(r['grid'])} values per level")
        print(f"  ishwh fit + test scores {r['seconds']:.1f} s | mean test AUC "
              f"{r['mean_auc']:.3f}")
    if not args.skip_auc:
        r = bench_auc(args.structures, args.experiments)
        print(f"structure_auc: {r['rows']:,} prediction rows, {r['n_structures']} structures")
        print(f"  duckdb view {r['duckdb_s']:.3f} s | sklearn roc_auc_score loop "
              f"{r['sklearn_s']:.3f} s | speedup {r['speedup']:.1f}x | "
              f"max |diff| {r['max_abs_diff']:.2e}")


if __name__ == "__main__":
    main()
