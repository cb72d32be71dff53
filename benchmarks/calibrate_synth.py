"""Calibration proxy for the synthetic atlas: how hard is it? (``docs/synthetic.md``)

Renders a sample of one stage and scores two readers of the same images:

* ``oracle``: knows the true structure masks; score = max over sections of the fraction of
  darkly stained pixels inside the mask (an upper bound for any image method).
* ``proxy``: a learned baseline that does not know the masks, in the spirit of the paper's
  pipeline: features = the stain map (darkness of the green channel) of each section,
  downsampled to GRIDxGRID, pooled by max and by mean over sections; one L2 logistic
  regression per structure, trained on half of the genes and tested on the other half.

Prints mean AUC per ontology level as a Markdown table. Example::

    .venv/bin/python benchmarks/calibrate_synth.py --preset paper --genes 300 --stage E15.5
    .venv/bin/python benchmarks/calibrate_synth.py --set flip_rate=0 --set nuisance=0.5
"""

from __future__ import annotations

import argparse
import json
import time

import cv2
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from ishwh.synth import Atlas, resolve


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main() -> None:
    ap = argparse.ArgumentParser(description="calibration proxy for the synthetic atlas")
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--genes", type=int, default=300)
    ap.add_argument("--stage", default="E15.5")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--grid", type=int, default=8)
    ap.add_argument("--min-pos", type=int, default=3, help="positives needed in each half")
    ap.add_argument("--set", action="append", default=[], metavar="KNOB=VALUE")
    args = ap.parse_args()
    knobs = {k: _value(v) for k, v in (s.split("=", 1) for s in args.set)}
    atlas = Atlas(resolve(args.preset, genes=args.genes, **knobs), args.seed)
    S, G = atlas.ontology.size, args.genes
    t0 = time.perf_counter()
    feats = np.zeros((G, 2 * args.grid * args.grid), np.float32)
    oracle = np.zeros((G, S))
    truth = np.zeros((G, S), bool)
    known = np.zeros((G, S), bool)
    for g in range(G):
        exp = atlas.experiment(args.stage, g, want_labels=True)
        truth[g], known[g] = exp.pattern > 0, exp.pattern >= 0
        maps = []
        for sec in exp.sections:
            dark = 1.0 - sec.rgb[..., 1].astype(np.float32) / 255.0
            maps.append(cv2.resize(dark, (args.grid, args.grid), interpolation=cv2.INTER_AREA))
            stained = (sec.rgb[..., 1] < 140).ravel().astype(float)
            lab = sec.labels.ravel()
            hit = atlas.subtree @ np.bincount(lab, weights=stained, minlength=S + 2)[2:]
            cnt = atlas.subtree @ np.bincount(lab, minlength=S + 2)[2:]
            oracle[g] = np.maximum(oracle[g], hit / np.maximum(cnt, 1))
        maps = np.stack(maps).reshape(len(maps), -1)
        feats[g] = np.concatenate([maps.max(0), maps.mean(0)])
    render_s = time.perf_counter() - t0
    rng = np.random.default_rng(args.seed)
    test = np.zeros(G, bool)
    test[rng.permutation(G)[: G // 2]] = True
    X = StandardScaler().fit(feats[~test]).transform(feats)
    rows = {}
    for s in range(S):
        tr, te = known[:, s] & ~test, known[:, s] & test
        ytr, yte = truth[tr, s], truth[te, s]
        if min(ytr.sum(), (~ytr).sum(), yte.sum(), (~yte).sum()) < args.min_pos:
            continue
        clf = LogisticRegression(C=0.05, max_iter=2000).fit(X[tr], ytr)
        rows[s] = (roc_auc_score(yte, clf.decision_function(X[te])),
                   roc_auc_score(yte, oracle[te, s]), yte.mean())
    level = atlas.ontology.level
    print(f"preset {args.preset}, stage {args.stage}, {G} genes, seed {args.seed}, "
          f"knobs {knobs or 'default'}; rendering {render_s:.0f} s")
    print()
    print("| level | structures (with AUC / total) | positives | proxy AUC | oracle AUC |")
    print("|---|---|---|---|---|")
    for lv in np.unique(level):
        r = [rows[s] for s in rows if level[s] == lv]
        if not r:
            print(f"| {lv} | 0 / {(level == lv).sum()} | | | |")
            continue
        proxy, orc, prev = np.mean(r, 0)
        print(f"| {lv} | {len(r)} / {(level == lv).sum()} | {prev:.2f} | {proxy:.3f} | "
              f"{orc:.3f} |")
    allr = np.array(list(rows.values()))
    print(f"| all | {len(allr)} / {S} | {allr[:, 2].mean():.2f} | {allr[:, 0].mean():.3f} | "
          f"{allr[:, 1].mean():.3f} |")


if __name__ == "__main__":
    main()
