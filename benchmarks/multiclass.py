"""Benchmark: the batched multi-class trainer vs a scikit-learn LogisticRegression loop.

The same standardised features, the same tasks (4 classes, 'undetected' dominating as in the
annotations; 10 % of the calls unknown), the same C. ishwh's
``BatchedMulticlassLogisticRegression(model='multinomial', C=C)`` fits every task at once and
scores the test rows; scikit-learn's ``LogisticRegression(C=C)`` (lbfgs, multinomial, defaults
otherwise but ``max_iter=1000``) is fitted and scored per task, one StandardScaler pass timed
with it. At a stage's scale the scikit-learn loop takes hours on 2 cores, so it runs on a
random sample of ``--sk-tasks`` tasks and its time is extrapolated linearly to all tasks
(each task is an independent fit of the same size, so the loop's time is linear in tasks).
Reports wall and CPU times (on a shared machine the CPU times are the fairer measure), the
ratios, and the per-task |macro AUC difference| on the sampled tasks.
The ordinal model is timed too (no scikit-learn equivalent).

Run: ``.venv/bin/python benchmarks/multiclass.py`` (a stage: 1,333 train / 667 test genes,
12,288 dims, 1,071 structures). ``--tasks 100 --dim 2000`` for a quick look.
``--tol-check --tasks 100``: the final solve's stopping rule (``FIT_TOL``) against a 1e-8
solve, both models, C 1e-4 / 1e-3 / 1e-2 (iterations, CPU, max probability and AUC difference).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings

import numpy as np


def make_data(n: int, dim: int, n_tasks: int, seed: int = 0):
    """Features with scale spread; 4 classes from a noisy linear score (about 85 % class 0)."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, dim)) * rng.uniform(0.5, 3, dim)).astype(np.float32)
    z = (x[:, :10] - x[:, :10].mean(0)) / x[:, :10].std(0)
    eta = z @ rng.standard_normal((10, n_tasks)) / 2 + rng.standard_normal((n, n_tasks))
    cut = np.quantile(eta, 0.85, axis=0)
    y = np.where(eta < cut, 0, 1 + rng.integers(0, 3, eta.shape) * (eta > cut + 0.3))
    y = np.minimum(y, 3)
    y[rng.random(y.shape) < 0.1] = -1
    return x, y


def run(n_train: int, n_test: int, dim: int, n_tasks: int, sk_tasks: int, c: float,
        device: str, seed: int = 0) -> dict:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    from ishwh.fit.multiclass import BatchedMulticlassLogisticRegression, macro_auc_columns

    x, y = make_data(n_train + n_test, dim, n_tasks, seed)
    xtr, xte, ytr, yte = x[:n_train], x[n_train:], y[:n_train], y[n_train:]
    ok = np.array([np.unique(ytr[ytr[:, j] >= 0, j]).size == 4 for j in range(n_tasks)])
    xtr_t, ytr, yte = xtr, ytr[:, ok], yte[:, ok]
    t_all = int(ok.sum())

    out = {"n_train": n_train, "n_test": n_test, "dim": dim, "tasks": t_all, "C": c}
    for model in ("multinomial", "ordinal"):
        t0, c0 = time.perf_counter(), time.process_time()
        est = BatchedMulticlassLogisticRegression(model, C=c, device=device).fit(xtr_t, ytr)
        prob = est.predict_proba(xte)
        out[f"ishwh_{model}_s"] = round(time.perf_counter() - t0, 2)
        out[f"ishwh_{model}_cpu_s"] = round(time.process_time() - c0, 2)
        out[f"ishwh_{model}_iter"] = est.n_iter_
        auc = macro_auc_columns(prob, yte, est.n_classes_)
        out[f"ishwh_{model}_mean_macro_auc"] = round(float(np.nanmean(auc)), 4)
        if model == "multinomial":
            ours_auc = auc

    rng = np.random.default_rng(seed + 1)
    sample = np.sort(rng.choice(t_all, size=min(sk_tasks, t_all), replace=False))
    t0, c0 = time.perf_counter(), time.process_time()
    scaler = StandardScaler().fit(xtr)
    a, b = scaler.transform(xtr), scaler.transform(xte)
    t_scale, c_scale = time.perf_counter() - t0, time.process_time() - c0
    diffs, sk_aucs, ours_sample = [], [], []
    t0, c0 = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for j in sample:
            rows = ytr[:, j] >= 0
            sk = LogisticRegression(C=c, max_iter=1000).fit(a[rows], ytr[rows, j])
            p = sk.predict_proba(b)
            te = yte[:, j] >= 0
            present = np.unique(yte[te, j])
            if present.size < 2:
                continue
            # one-vs-rest macro AUC over the classes present (the target_metrics definition)
            sk_auc = np.mean([roc_auc_score(yte[te, j] == k, p[te, k]) for k in present])
            sk_aucs.append(sk_auc)
            ours_sample.append(ours_auc[j])
            diffs.append(abs(sk_auc - ours_auc[j]))
    t_loop, c_loop = time.perf_counter() - t0, time.process_time() - c0
    per_task, cpu_per_task = t_loop / len(sample), c_loop / len(sample)
    out.update({
        "sklearn_sampled_tasks": int(len(sample)), "sklearn_sampled_s": round(t_loop, 2),
        "sklearn_per_task_s": round(per_task, 3),
        "sklearn_all_tasks_s_extrapolated": round(t_scale + per_task * t_all, 1),
        "sklearn_all_tasks_cpu_s_extrapolated": round(c_scale + cpu_per_task * t_all, 1),
        "sklearn_compared_tasks": len(diffs),  # sampled tasks with >= 2 test classes
        "max_abs_macro_auc_diff": round(float(max(diffs)), 5),
        "mean_macro_auc_sklearn_sample": round(float(np.mean(sk_aucs)), 4),
        "mean_macro_auc_ishwh_sample": round(float(np.mean(ours_sample)), 4),
    })
    out["speedup_multinomial_wall"] = round(out["sklearn_all_tasks_s_extrapolated"]
                                            / out["ishwh_multinomial_s"], 1)
    out["speedup_multinomial_cpu"] = round(out["sklearn_all_tasks_cpu_s_extrapolated"]
                                           / out["ishwh_multinomial_cpu_s"], 1)
    out["machine"] = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    out["load_avg_1m_at_end"] = round(os.getloadavg()[0], 1)
    return out


def tol_check(n_train: int, n_test: int, dim: int, n_tasks: int, tight: float = 1e-8,
              seed: int = 1) -> list[dict]:
    """The final solve's stopping rule: FIT_TOL against a tight solve, both models, three C."""
    from ishwh.fit.multiclass import FIT_TOL, BatchedMulticlassLogisticRegression, macro_auc_columns

    x, y = make_data(n_train + n_test, dim, n_tasks, seed)
    xtr, xte, ytr, yte = x[:n_train], x[n_train:], y[:n_train], y[n_train:]
    ok = np.array([np.unique(ytr[ytr[:, j] >= 0, j]).size == 4 for j in range(n_tasks)])
    ytr, yte = ytr[:, ok], yte[:, ok]
    rows = []
    for model in ("multinomial", "ordinal"):
        for c in (1e-4, 1e-3, 1e-2):
            fits = {}
            for tol in (tight, FIT_TOL):
                c0 = time.process_time()
                est = BatchedMulticlassLogisticRegression(model, C=c, device="cpu",
                                                          tol=tol).fit(xtr, ytr)
                p = est.predict_proba(xte)
                auc = float(np.nanmean(macro_auc_columns(p, yte, est.n_classes_)))
                fits[tol] = (p, est.n_iter_, time.process_time() - c0, auc)
            rows.append({"model": model, "C": c, "iter_tight": fits[tight][1],
                         "iter_fit_tol": fits[FIT_TOL][1],
                         "cpu_s_tight": round(fits[tight][2], 1),
                         "cpu_s_fit_tol": round(fits[FIT_TOL][2], 1),
                         "max_abs_prob_diff": float(np.abs(fits[tight][0]
                                                           - fits[FIT_TOL][0]).max()),
                         "macro_auc_diff": round(abs(fits[tight][3] - fits[FIT_TOL][3]), 6)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-train", type=int, default=1333)
    ap.add_argument("--n-test", type=int, default=667)
    ap.add_argument("--dim", type=int, default=12288)
    ap.add_argument("--tasks", type=int, default=1071)
    ap.add_argument("--sk-tasks", type=int, default=30)
    ap.add_argument("--C", type=float, default=1e-3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tol-check", action="store_true",
                    help="compare the final solve's stopping rule (FIT_TOL) with a 1e-8 solve "
                         "(use with --tasks 100)")
    args = ap.parse_args()
    if args.tol_check:
        for row in tol_check(args.n_train, args.n_test, args.dim, args.tasks):
            print(json.dumps(row))
        return
    res = run(args.n_train, args.n_test, args.dim, args.tasks, args.sk_tasks, args.C,
              args.device)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
