"""Annotate a never-annotated stage of the synthetic atlas and score it against the truth
the atlas withheld (the `annotation_truth_auc` view).

Paper preset: generate the training stage(s) and the target stage (default E18.5 -> P4),
featurize, fit production models (`holdout none`) on the training stage(s), annotate the
target stage, and print the AUC per ontology level against the withheld truth, beside the
within-stage (out-of-fold) AUC of the same models on their own training stage.

    python benchmarks/annotate_withheld.py --genes 1000 --work /tmp/p4     # grid features
    python benchmarks/annotate_withheld.py --genes 2000 --features cnn     # the full scale

`--features grid` renders no images (`ingest_synthetic(images=False)`: the same annotations;
the grids' noise differs from an image-rendering ingest, docs/synthetic.md), so it runs in
minutes; `--features cnn` renders the
sections and computes the default CNN features (tens of minutes per 1,000 experiments on
2 cores).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import polars as pl

from ishwh import warehouse
from ishwh.annotate import annotate
from ishwh.features import featurize
from ishwh.fit import fit
from ishwh.synth import ingest_synthetic


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--genes", type=int, default=1000)
    ap.add_argument("--train", default="E18.5", help="training stage(s), comma-separated")
    ap.add_argument("--target", default="P4")
    ap.add_argument("--features", choices=("grid", "cnn"), default="grid")
    ap.add_argument("--feature-norm", choices=("pooled", "stage"), default="stage")
    ap.add_argument("--work", type=Path, default=Path("/tmp/ishwh-annotate-withheld"))
    args = ap.parse_args()
    train = tuple(s.strip() for s in args.train.split(","))
    args.work.mkdir(parents=True, exist_ok=True)
    db = args.work / "paper.duckdb"
    times: dict[str, float] = {}
    t = time.perf_counter()
    warehouse.init(db)
    ingest_synthetic(db, "paper", genes=args.genes, stages=(*train, args.target),
                     images=args.features == "cnn", progress=False)
    times["generate_s"] = time.perf_counter() - t
    t = time.perf_counter()
    names = featurize(db, extractor=args.features, progress=False).names
    times["featurize_s"] = time.perf_counter() - t
    name = names[0]
    t = time.perf_counter()
    (run,) = fit(db, name, train[0], train_stages=train, holdout="none",
                 feature_norm=args.feature_norm, progress=False)
    times["fit_s"] = time.perf_counter() - t
    t = time.perf_counter()
    annotate(db, run, args.target)
    times["annotate_s"] = time.perf_counter() - t
    pl.Config.set_tbl_rows(40)
    with warehouse.connect(db, read_only=True) as con:
        truth = pl.from_arrow(con.sql(
            "select level, n_structures, round(mean_auc, 3) as truth_auc, "
            "round(accuracy, 3) as accuracy, round(balanced_accuracy, 3) as balanced_accuracy "
            f"from annotation_truth_auc where run_id = {run} order by level").to_arrow_table())
        within = pl.from_arrow(con.sql(
            "select level, round(mean_auc, 3) as within_oof_auc from level_auc "
            f"where run_id = {run} order by level").to_arrow_table())
        overall = con.sql(
            "select avg(auc), sum(accuracy * n_calls) / sum(n_calls), count(auc) "
            f"from truth_structure_auc where run_id = {run}").fetchall()[0]
        oof = con.sql(f"select avg(auc) from structure_auc where run_id = {run}").fetchall()[0]
        ece = con.sql(f"select ece from calibration_error where run_id = {run}").fetchall()
    print(truth.join(within, on="level", how="left"))
    print(json.dumps({
        "genes": args.genes, "features": name, "train": train, "target": args.target,
        "run_id": run, "truth_auc_all": round(overall[0], 4),
        "truth_accuracy_all": round(overall[1], 4), "structures_with_auc": overall[2],
        "within_oof_auc_all": round(oof[0], 4), "ece_oof": [round(e[0], 4) for e in ece],
        **{k: round(v, 1) for k, v in times.items()}}, indent=1))


if __name__ == "__main__":
    main()
