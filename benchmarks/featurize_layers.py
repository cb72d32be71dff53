"""Screen CNN layers on the synthetic atlas: mean test AUC per layer (how DEFAULT_LAYERS was
chosen; see docs/benchmarks_featurize.md).

Per stage and structure with >= 6 positive and >= 6 negative experiments: one stratified
70/30 split (seed 0), standardised features, L2 logistic regression (C = 0.01), test AUC.

    .venv/bin/python benchmarks/featurize_layers.py /tmp/lay/demo.duckdb
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

LAYERS = ["blocks.2", "blocks.3", "blocks.4", "blocks.5", "blocks.6", "conv_head"]


def main() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    from ishwh import store, warehouse
    from ishwh.features import featurize
    from ishwh.synth import ingest_synthetic

    d = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()) / "demo.duckdb"
    if not d.exists():
        warehouse.init(d)
        ingest_synthetic(d, preset="demo", seed=0, progress=False)
    t = time.time()
    names = featurize(d, layers=LAYERS, pools=("max",), progress=False).names
    print(f"featurize {time.time() - t:.0f} s", file=sys.stderr)
    names = featurize(d, extractor="grid", progress=False).names + names
    with warehouse.connect(d, read_only=True) as con:
        lab = con.sql("select l.experiment_id, l.structure_id, l.detected, e.stage from labels l "
                      "join experiments e using (experiment_id)").pl()
        sets = {n: store.read_experiment_features(con, n) for n in names}
    print("| feature set | dims | tasks | mean AUC | std |\n|---|---:|---:|---:|---:|")
    for name, (ids, x) in sets.items():
        pos = {e: i for i, e in enumerate(ids)}
        aucs = []
        for _, g in lab.group_by(["stage", "structure_id"]):
            g = g.filter(g["experiment_id"].is_in(list(pos)))
            y = g["detected"].to_numpy().astype(int)
            if y.sum() < 6 or (1 - y).sum() < 6:
                continue
            idx = np.array([pos[e] for e in g["experiment_id"]])
            tr, te = train_test_split(np.arange(len(y)), test_size=0.3, stratify=y,
                                      random_state=0)
            sc = StandardScaler().fit(x[idx[tr]])
            clf = LogisticRegression(C=0.01, max_iter=300).fit(sc.transform(x[idx[tr]]), y[tr])
            aucs.append(roc_auc_score(y[te], clf.decision_function(sc.transform(x[idx[te]]))))
        print(f"| {name} | {x.shape[1]:,} | {len(aucs)} | {np.mean(aucs):.3f} | "
              f"{np.std(aucs):.3f} |", flush=True)


if __name__ == "__main__":
    main()
