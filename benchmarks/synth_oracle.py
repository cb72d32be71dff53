"""The oracle ceiling of a synthetic warehouse: the noise-free truth as a score, on the rows a
run was scored on.

The synthetic atlas stores the annotator's calls (with her noise: faint dropout, flips,
misplaced borders, confusions, spurious sub-structure calls) and a noisy expression grid;
it does not store the noise-free expression. This script regenerates it from the atlas's
seed: for every experiment of the warehouse it replays the experiment's draws that place
its sections (count, positions, missing ones, staining gain; the same random stream as
``Atlas.experiment``), evaluates the true expression fields on the present sections with
the **true** structure borders, and applies the annotator's own rule
(``ishwh.synth.annotate.annotate``) **without** her noise (no dropout, no flips, no
confusion, no misplaced borders). That gives, per experiment x structure:

- ``oracle_score`` (detected): 2 + frac where the rule calls the structure with a clear
  intensity (perceived >= FAINT), 1 + frac where it calls it faintly (the calls the
  annotator drops half the time), frac otherwise (frac = stained area fraction / 2, so the
  three bands do not overlap);
- ``oracle_pattern``, ``oracle_intensity``, ``oracle_density``: the rule's grades.

Then, for every finished run of the warehouse (or ``--runs``), it scores the same rows the
run's views score (binary runs: ``predictions``; annotate runs: ``predicted_annotations``
against ``withheld_labels``; multi-class runs: ``class_predictions``) with the oracle, and
prints model beside oracle: the mean over ontology levels of the level mean AUC (as
``transfer_auc``), the mean over structures, and for multi-class runs macro AUC (the oracle's
one-vs-rest scores are its hard class indicators) and quadratic kappa per level.

    python benchmarks/synth_oracle.py WAREHOUSE [--runs 1,2] [--set sections=4,5]

The oracle table is cached beside the warehouse (``WAREHOUSE.oracle.parquet``; ``--oracle``
names another, e.g. one built on a copy of the same atlas). ``--set``
repeats the synthetic parameters the warehouse was generated with (the script refuses a
warehouse whose atlas ``source`` differs from the one the parameters give).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from pathlib import Path

import cv2
import numpy as np
import polars as pl

from ishwh.synth import Atlas, resolve
from ishwh.synth import anatomy as anatomy_mod
from ishwh.synth import annotate as ann
from ishwh.synth import expression as ex
from ishwh.synth.generate import EXPERIMENT_BASE
from ishwh.synth.params import ALL_STAGES
from ishwh.vocab import GRADES, PATTERNS

_ATLAS: Atlas | None = None


def layout(atlas: Atlas, stage: str, g: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Section positions, missing flags and staining gain of one experiment
    (``Atlas.section_layout``, the first draws of the experiment's stream)."""
    _, pos, missing, gain = atlas.section_layout(stage, g)
    return pos, missing, gain


def check_layout(atlas: Atlas, stage: str, g: int) -> None:
    """The replayed layout equals the rendered experiment's (section numbers and positions)."""
    pos, missing, _ = layout(atlas, stage, g)
    exp = atlas.experiment(stage, g, images=True)
    want = [(i + 1, round(float(pos[i]), 4)) for i in range(len(pos)) if not missing[i]]
    got = [(s.number, s.position) for s in exp.sections]
    if want != got:
        raise SystemExit(f"layout replay differs from Atlas.experiment at {stage} gene {g}")


def oracle(atlas: Atlas, stage: str, g: int, view: str = "true") -> dict[str, np.ndarray]:
    """The annotator's rule on the noise-free expression of one experiment: with the true
    borders (``view`` 'true'), or as she placed them, confusions included ('annotator': only
    her random calls, dropout, flips and spurious calls, are left out)."""
    p = atlas.params
    anat = atlas.anatomy(stage)
    prof = ex.profile(atlas.gene(g), stage, anat, atlas.subtrees)
    pos, missing, gain = layout(atlas, stage, g)
    key = [atlas.seed, ALL_STAGES.index(stage), g]
    warp = anatomy_mod.smooth_displacement(anat, p.specimen_warp,
                                           np.random.default_rng([11, *key]))
    seen_as = None
    if view == "annotator":  # her mental atlas: the stream Atlas.experiment uses
        seen_as = anatomy_mod.smooth_displacement(anat, p.annotator_warp,
                                                  np.random.default_rng([12, *key]),
                                                  coarse=(6, 10))
    stats = ann.SectionStats(len(anat.tone))
    for i in np.flatnonzero(~missing):
        k = anat.slice_index(float(pos[i]))
        lab, xx, yy = anatomy_mod.warp_slice(anat, k, warp)
        e, d = ex.fields(prof, lab, xx, yy, anat.depth_of_slice(k))
        stats.add(lab if seen_as is None
                  else anatomy_mod.remap_labels(lab, seen_as, cv2.BORDER_REPLICATE), e, d)
    if view == "annotator":
        ann.confuse(stats, atlas.partners, p.confusion, np.random.default_rng([13, *key]))
    kind = np.where(prof.intensity[2:] > 0, prof.kind[2:], ex.FULL)
    pattern, intensity, density = ann.annotate(
        stats, atlas.subtree, atlas.ontology.parent, kind, gain, 0.0, 0.0,
        np.random.default_rng(0))  # flip_rate 0, faint_dropout 0: the draws change nothing
    npix = atlas.subtree @ stats.npix[2:]
    cov = atlas.subtree @ stats.cov[2:]
    frac = np.where(npix > 0, cov / np.maximum(npix, 1), 0.0)
    mean_e = (atlas.subtree @ stats.sum_e[2:]) / np.maximum(cov, 1) * gain
    called = pattern > 0
    band = np.where(called, np.where(mean_e >= ann.FAINT, 2.0, 1.0), 0.0)
    return {"oracle_score": band + frac / 2, "oracle_pattern": pattern,
            "oracle_intensity": intensity, "oracle_density": density}


_VIEW = "true"


def _init(params, seed: int, view: str) -> None:
    global _ATLAS, _VIEW
    _ATLAS, _VIEW = Atlas(params, seed), view


def _one(task: tuple[int, str, int]) -> pl.DataFrame:
    eid, stage, g = task
    assert _ATLAS is not None
    o = oracle(_ATLAS, stage, g, _VIEW)
    return pl.DataFrame({"experiment_id": np.full(_ATLAS.ontology.size, eid, np.int64),
                         "structure_id": _ATLAS.ontology.ids.astype(np.int64),
                         **{k: v.astype(np.float64 if k == "oracle_score" else np.int8)
                            for k, v in o.items()}})


def build(db: Path, out: Path, overrides: dict, workers: int, view: str = "true",
          only_scored: bool = False) -> None:
    from ishwh import warehouse

    with warehouse.connect(db, read_only=True) as con:
        rows = con.execute("select experiment_id, stage, source from experiments "
                           "order by experiment_id").fetchall()
        if only_scored:
            keep = {r[0] for r in con.execute(
                "select experiment_id from predictions union "
                "select experiment_id from predicted_annotations union "
                "select experiment_id from class_predictions").fetchall()}
    sources = {r[2] for r in rows}
    preset = next(iter(sources)).split(":")[1].split("~")[0]
    seed = int(next(iter(sources)).rsplit("seed", 1)[1])
    params = resolve(preset, stages=tuple(dict.fromkeys(r[1] for r in rows)), **overrides)
    atlas = Atlas(params, seed)
    if sources != {atlas.source}:
        raise SystemExit(f"warehouse atlas {sources} is not {atlas.source}: pass its --set")
    tasks = [(eid, st, eid - EXPERIMENT_BASE - ALL_STAGES.index(st) * 1_000_000)
             for eid, st, _ in rows if not only_scored or eid in keep]
    for st in dict.fromkeys(t[1] for t in tasks):
        check_layout(atlas, st, next(t[2] for t in tasks if t[1] == st))
    t0 = time.perf_counter()
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_init, initargs=(params, seed, view)) as pool:
        parts = list(pool.imap(_one, tasks, chunksize=8))
    pl.concat(parts).write_parquet(out)
    print(f"oracle of {len(tasks)} experiments in {time.perf_counter() - t0:.0f} s -> {out}",
          flush=True)


def _auc(score: np.ndarray, y: np.ndarray) -> float | None:
    """Mann-Whitney AUC with ties counted half (the house formula of sql/task_auc.sql)."""
    from scipy.stats import rankdata

    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    r = rankdata(score)
    return float((r[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _kappa(t: np.ndarray, p: np.ndarray) -> float | None:
    """Quadratic-weighted kappa on grade numbers (the formula of sql/target_metrics.sql)."""
    n = len(t)
    den = (t ** 2).sum() + (p ** 2).sum() - 2 * t.sum() * p.sum() / n
    return None if den == 0 else float(1 - ((t - p) ** 2).sum() / den)


def _rollup(per: pl.DataFrame, cols: list[str]) -> pl.DataFrame:
    return per.group_by("level").agg(
        pl.len().alias("n"), *[pl.col(c).drop_nulls().mean().alias(c) for c in cols]
    ).sort("level")


def binary_sets(con, run: int, stage: str) -> list[tuple[str, pl.DataFrame]]:
    """The row sets a binary run is scored on: its predictions (test or out-of-fold) of its
    stage, and its annotations of never-annotated stages against the withheld truth."""
    out = []
    df = pl.from_arrow(con.sql(
        "select experiment_id, structure_id, score, detected, subset from predictions "
        "where run_id = ?", params=[run]).to_arrow_table())
    if len(df):
        out.append((f"{stage} ({df['subset'][0]})", df))
    ann_rows = pl.from_arrow(con.sql(
        "select p.experiment_id, p.structure_id, p.score, t.detected, e.stage "
        "from predicted_annotations p join withheld_labels t using (experiment_id, structure_id) "
        "join experiments e using (experiment_id) where p.run_id = ?",
        params=[run]).to_arrow_table())
    for (st,), part in ann_rows.group_by(["stage"]):
        out.append((f"{st} (annotated; withheld truth)", part))
    return out


def score_binary(df: pl.DataFrame, levels: pl.DataFrame) -> pl.DataFrame:
    out = []
    for (sid,), part in df.group_by(["structure_id"]):
        y = part["detected"].to_numpy()
        out.append((sid, _auc(part["score"].to_numpy(), y),
                    _auc(part["oracle_score"].to_numpy(), y)))
    per = pl.DataFrame(out, schema=["structure_id", "auc", "oracle_auc"], orient="row")
    return per.join(levels, on="structure_id")


def score_classes(con, run: int, oracle_df: pl.DataFrame, levels: pl.DataFrame,
                  target: str) -> pl.DataFrame:
    """Per structure: the run's macro AUC (= target_metrics) and the oracle's, and quadratic
    kappa of the oracle's grade against the truth (raw annotated classes, unmerged)."""
    names = PATTERNS if target == "pattern" else GRADES
    cp = pl.from_arrow(con.sql(
        "select experiment_id, structure_id, class, probability, truth from class_predictions "
        "where run_id = ?", params=[run]).to_arrow_table())
    raw = pl.from_arrow(con.sql(
        f"select experiment_id, structure_id, {target} as raw from annotations "
        f"where {target} is not null and (experiment_id, structure_id) in "
        "(select experiment_id, structure_id from class_predictions where run_id = ?)",
        params=[run]).to_arrow_table())
    code = {c: i for i, c in enumerate(names)}
    raw = raw.with_columns(pl.col("raw").replace_strict(code).cast(pl.Int8).alias("raw_code"))
    raw = raw.join(oracle_df.select("experiment_id", "structure_id", f"oracle_{target}"),
                   on=["experiment_id", "structure_id"])
    model = {}
    for (sid,), part in cp.group_by(["structure_id"]):
        truth = part.filter(pl.col("class") == part["class"][0])
        aucs = []
        for (c,), pc in part.group_by(["class"]):
            a = _auc(pc["probability"].to_numpy(), (pc["truth"] == c).to_numpy())
            if a is not None:
                aucs.append(a)
        model[sid] = (float(np.mean(aucs)) if aucs else None, len(truth))
    out = []
    for (sid,), part in raw.group_by(["structure_id"]):
        t = part["raw_code"].to_numpy().astype(float)
        o = part[f"oracle_{target}"].to_numpy().astype(float)
        aucs = [a for c in np.unique(t) if (a := _auc((o == c).astype(float), t == c)) is not None]
        out.append((sid, model.get(sid, (None, 0))[0], float(np.mean(aucs)) if aucs else None,
                    None if target == "pattern" else _kappa(t, o)))
    per = pl.DataFrame(out, schema=["structure_id", "macro_auc", "oracle_macro_auc",
                                    "oracle_kappa"], orient="row")
    return per.join(levels, on="structure_id")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("db", type=Path)
    ap.add_argument("--runs", default=None, help="comma-separated run ids (default: all)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="synthetic parameters of the warehouse (sections=4,5; knobs)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--oracle", type=Path, default=None,
                    help="oracle table (default WAREHOUSE.oracle.parquet; built when missing)")
    ap.add_argument("--levels", action="store_true", help="print the per-level tables too")
    ap.add_argument("--view", choices=("true", "annotator"), default="true",
                    help="true borders, or the annotator's borders and confusions")
    ap.add_argument("--only-scored", action="store_true",
                    help="build the oracle only for experiments some run scored")
    args = ap.parse_args()
    overrides: dict = {}
    for item in args.set:
        k, _, v = item.partition("=")
        vals = [float(x) if "." in x else int(x) for x in v.split(",")]
        overrides[k] = tuple(vals) if len(vals) > 1 else vals[0]
    suffix = "" if args.view == "true" else f"-{args.view}"
    out = args.oracle or args.db.with_name(args.db.name + f".oracle{suffix}.parquet")
    if not out.exists():
        build(args.db, out, overrides, args.workers, args.view, args.only_scored)
    oracle_df = pl.read_parquet(out)

    from ishwh import warehouse

    pl.Config.set_tbl_rows(60)
    pl.Config.set_tbl_cols(20)
    with warehouse.connect(args.db, read_only=True) as con:
        levels = pl.from_arrow(con.sql(
            "select structure_id, level from structures").to_arrow_table())
        runs = con.execute(
            "select r.run_id, r.stage, coalesce(t.target, 'detected'), coalesce(t.model, 'binary'),"
            " coalesce(array_to_string(rt.train_stages, ','), r.stage),"
            " coalesce(rt.feature_norm, 'pooled'), coalesce(rt.holdout, 'split'), fs.name "
            "from runs r left join run_targets t using (run_id) "
            "left join run_training rt using (run_id) join feature_sets fs using (feature_set_id)"
            " where r.status = 'finished' order by r.run_id").fetchall()
        wanted = {int(x) for x in args.runs.split(",")} if args.runs else None
        print("| run | features | scored rows | target (model) | trained on | norm | holdout | "
              "model: mean over levels | oracle: mean over levels | model: all structures | "
              "oracle: all structures | structures | oracle kappa: mean over levels |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for run, stage, target, model, train, norm, holdout, fs in runs:
            if wanted is not None and run not in wanted:
                continue
            if target == "detected":
                sets = [(name, score_binary(df.join(oracle_df, on=["experiment_id",
                                                                   "structure_id"]), levels))
                        for name, df in binary_sets(con, run, stage)]
                cols = ["auc", "oracle_auc"]
            else:
                sets = [(f"{stage} (test)", score_classes(con, run, oracle_df, levels, target))]
                cols = ["macro_auc", "oracle_macro_auc", "oracle_kappa"]
            for name, per in sets:
                lv = _rollup(per, cols)
                kappa = (f"{lv['oracle_kappa'].mean():.3f}"
                         if target in ("intensity", "density") else "")
                print(f"| {run} | {fs} | {name} | {target} ({model}) | {train} | {norm} | "
                      f"{holdout} | {lv[cols[0]].mean():.3f} | {lv[cols[1]].mean():.3f} | "
                      f"{per[cols[0]].drop_nulls().mean():.3f} | "
                      f"{per[cols[1]].drop_nulls().mean():.3f} | "
                      f"{per[cols[0]].drop_nulls().len()} | {kappa} |", flush=True)
                if args.levels:
                    print(lv.with_columns(pl.col(cols).cast(pl.Float64).round(3)))


if __name__ == "__main__":
    main()
