"""Atlas features vs global CNN features on real anatomy (the shared E11.5 volume).

Writes a manifest folder (graph-17 ontology, reference/E11.5.npz, rendered sections with
planted expression, annotations with missed calls; see ishwh/atlas/planted.py), ingests it,
featurizes (global CNN + atlas), fits atlas alone / CNN alone / both, and measures
registration against the known transforms. Prints markdown tables (paste into docs/atlas.md).

    nice -n 10 python benchmarks/atlas_real_anatomy.py --out /tmp/atlas_bench --genes 400

Columns: atlas.stain, atlas.cnn, the global CNN set, their joins, and the oracle (the
noise-free planted call as a score against the noisy annotations: what label noise leaves).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ishwh.atlas import register as reg_mod  # noqa: E402
from ishwh.atlas.planted import (  # noqa: E402
    PlantedAtlas,
    PlantedParams,
    ontology_arrays,
    write_planted_manifest,
)
from ishwh.atlas.reference import Reference  # noqa: E402

ALLEN = Path("/work/shared/data/allen")
VOLUME = ALLEN / "grid/E11.5_annotation_345x371x158_from_brainmapr.npz"
TREE = ALLEN / "ontology/dmba_graph17_tree_from_brainmapr.json"
STAGE = "E11.5"
SPACING_UM = 16.0   # believed 16 x 16 x 20 um (PROVENANCE.md; not verified)


def write_manifest(out: Path, n_genes: int, n_sections: int, seed: int) -> PlantedAtlas:
    tree = json.loads(TREE.read_text())
    ann = np.load(VOLUME)["annotation"]
    return write_planted_manifest(out, ann, tree, STAGE,
                                  PlantedParams(n_genes=n_genes, n_sections=n_sections), seed,
                                  spacing_um=SPACING_UM)


def sh(*args: str) -> str:
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "ishwh", *args], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    print(f"  ishwh {' '.join(args[:3])} ... {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return out


def registration_dice(db: Path, pa_: PlantedAtlas, n_genes: int
                      ) -> tuple[dict, float, float, dict]:
    """Per level: mean Dice of each structure's projected mask (stored alignment) against
    its true mask (the known transform), over structures covering >= 50 px of a section;
    and the same for the true slice and affine (the ceiling the specimen displacement
    leaves: the reference is not the specimen)."""
    import duckdb  # noqa: PLC0415

    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute("select s.experiment_id, s.section_number, a.slice_index, a.affine, "
                       "a.ok, a.quality from section_alignments a join sections s "
                       "using (section_id)").fetchall()
    con.close()
    ref = Reference(STAGE, pa_.ann)
    sm = (pa_.sub.toarray() > 0).astype(np.float64)
    leaf_ids = pa_.leaf_ids
    n_l = leaf_ids.size
    res: dict[int, list[float]] = {}
    ceiling: dict[int, list[float]] = {}
    n_ok = sum(1 for r in rows if r[4])
    slice_err = []
    for eid, num, k, aff, ok, _ in rows:
        g, i = eid - 1_000_000, num - 1
        if g >= n_genes or not ok:
            continue
        expr, _ = pa_.gene(g)
        _, true_lab, true_k, true_a = pa_.section(g, i, expr, float(pa_.positions(g)[i]))
        slice_err.append(abs(k - true_k))
        t_i = np.searchsorted(leaf_ids, true_lab)
        for kk, a, out in ((k, np.asarray(aff).reshape(2, 3), res), (true_k, true_a, ceiling)):
            pred = reg_mod.project_labels(ref.slice_labels(kk), a, true_lab.shape)
            p_i = np.searchsorted(leaf_ids, pred)
            both = np.bincount((p_i * n_l + t_i).ravel(), minlength=n_l * n_l).reshape(n_l, n_l)
            ap, at = sm @ both.sum(1), sm @ both.sum(0)
            inter = np.einsum("sl,lm,sm->s", sm, both.astype(np.float64), sm)
            for s in np.flatnonzero(at >= 50):
                out.setdefault(int(pa_.level[s]), []).append(2 * inter[s] / (ap[s] + at[s]))
    return (res, n_ok / max(len(rows), 1), float(np.mean(slice_err)) if slice_err else 0.0,
            ceiling)


def speed(pa_: PlantedAtlas, n: int = 120) -> float:
    ref = Reference(STAGE, pa_.ann)
    model = reg_mod.RegistrationModel(ref)
    imgs = []
    for g in range(n // pa_.p.n_sections + 1):
        expr, _ = pa_.gene(g)
        for i, p in enumerate(pa_.positions(g)):
            img = pa_.section(g, i, expr, float(p))[0]
            imgs.append((cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), float(p)))
    imgs = imgs[:n]
    t = time.perf_counter()
    for gray, p in imgs:
        model.register(gray, p)
    return len(imgs) / (time.perf_counter() - t)


def oracle_auc(db: Path, pa_: PlantedAtlas, run_id: int) -> dict[int, float]:
    """Per structure: AUC of the noise-free call (the planted truth, as a score) against the
    annotations, over the test rows that run ``run_id`` scored: the ceiling label noise
    leaves (missed and false calls cannot be predicted from any image)."""
    import duckdb  # noqa: PLC0415

    from ishwh.fit.trainer import auc_columns  # noqa: PLC0415

    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute("select experiment_id, structure_id, detected from predictions "
                       "where run_id = ?", [run_id]).fetchall()
    con.close()
    exps = sorted({r[0] for r in rows})
    structs = sorted({r[1] for r in rows})
    e_of = {e: i for i, e in enumerate(exps)}
    s_of = {s: i for i, s in enumerate(structs)}
    pos = {int(s): i for i, s in enumerate(pa_.ids)}
    y = np.zeros((len(exps), len(structs)))
    mask = np.zeros_like(y, dtype=bool)
    score = np.zeros_like(y)
    truth = {e: pa_.gene_truth(e - 1_000_000)[1] for e in exps}
    for e, s, d in rows:
        i, j = e_of[e], s_of[s]
        y[i, j], mask[i, j] = float(d), True
        score[i, j] = float(truth[e][pos[int(s)]])
    auc = auc_columns(score, y, mask)
    return {s: float(a) for s, a in zip(structs, auc, strict=True) if np.isfinite(a)}


def seen_table(db: Path, run_id: int) -> None:
    """Per level, over the test pairs of an atlas.stain run: the share of experiment x
    structure pairs that no registered section of the experiment showed (``seen`` = 0), and
    the run's AUC over the seen and the unseen pairs apart."""
    import duckdb  # noqa: PLC0415

    from ishwh.fit.trainer import auc_columns  # noqa: PLC0415

    con = duckdb.connect(str(db), read_only=True)
    fs = con.execute("select feature_set_id from feature_sets where name = 'atlas.stain'"
                     ).fetchall()[0][0]
    slot = dict(con.execute("select structure_id, slot from feature_set_structures "
                            "where feature_set_id = ?", [fs]).fetchall())
    vec = {e: np.asarray(v, np.float32).reshape(len(slot), -1)
           for e, v in con.execute("select experiment_id, vec from experiment_features "
                                   "where feature_set_id = ?", [fs]).fetchall()}
    rows = con.execute("select p.experiment_id, p.structure_id, p.score, p.detected, s.level "
                       "from predictions p join structures s using (structure_id) "
                       "where run_id = ?", [run_id]).fetchall()
    con.close()
    by: dict[int, list] = {}
    for e, s, score, d, lv in rows:
        by.setdefault(s, []).append((score, float(d), vec[e][slot[s], -1] > 0, lv))
    out: dict[int, list[list[float]]] = {}
    for items in by.values():
        sc = np.array([i[0] for i in items])
        y = np.array([i[1] for i in items])
        seen = np.array([i[2] for i in items])
        acc = out.setdefault(items[0][3], [[], [], []])
        acc[0].append(1.0 - seen.mean())
        for j, m in ((1, seen), (2, ~seen)):
            a = auc_columns(sc[:, None], y[:, None], m[:, None])[0]
            if np.isfinite(a):
                acc[j].append(a)
    print("\n| level | test pairs no section showed | AUC over seen pairs | "
          "AUC over unseen pairs |\n|---|---|---|---|")
    for lv in sorted(out):
        un, a_s, a_u = out[lv]
        print(f"| {lv} | {np.mean(un):.1%} | {np.mean(a_s):.3f} | "
              + (f"{np.mean(a_u):.3f} ({len(a_u)} structures)" if a_u else "") + " |")


def sets_for(layer: str, what: list[str]) -> dict[str, str]:
    """Feature sets fitted (name -> column title): each kind alone and the joins."""
    cnn = f"efficientnet_lite0.{layer}.max"
    sets = {"atlas.stain": "atlas.stain"} if "stain" in what else {}
    if "cnn" in what:
        sets["atlas.cnn"] = "atlas.cnn"
    sets[cnn] = "global CNN"
    if len(what) == 2:
        sets["atlas.stain+atlas.cnn"] = "stain + cnn"
    for w in what:
        sets[f"atlas.{w}+{cnn}"] = f"{w} + global"
    if len(what) == 2:
        sets[f"atlas.stain+atlas.cnn+{cnn}"] = "stain + cnn + global"
    return sets


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("/tmp/atlas_bench"))
    ap.add_argument("--genes", type=int, default=400)
    ap.add_argument("--sections", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layer", default="blocks.5", help="layer of the global CNN set")
    ap.add_argument("--what", default="stain,cnn", help="atlas feature kinds")
    ap.add_argument("--reuse", action="store_true",
                    help="keep OUT/bench.duckdb of an earlier run with the same --genes/--seed "
                    "(featurize resumes, fits already made are reused)")
    ap.add_argument("--skip-registration", action="store_true",
                    help="leave out the registration Dice tables (they re-render every section)")
    ap.add_argument("--registration-only", action="store_true",
                    help="only the registration tables, on the warehouse of an earlier run")
    a = ap.parse_args()
    what = [w.strip() for w in a.what.split(",") if w.strip()]
    t0 = time.perf_counter()
    man = a.out / "manifest"
    db = a.out / "bench.duckdb"
    tree = json.loads(TREE.read_text())
    ids, parent, level = ontology_arrays(tree)
    if a.registration_only or (a.reuse and db.exists()):
        pa_ = PlantedAtlas(np.load(VOLUME)["annotation"].astype(np.int32), ids, parent, level,
                           PlantedParams(n_genes=a.genes, n_sections=a.sections), a.seed)
        if a.registration_only:
            registration_table(db, pa_, a.genes)
            return
        sh("init", "--db", str(db))    # migrates an older warehouse
    else:
        pa_ = write_manifest(man, a.genes, a.sections, a.seed)
        print(f"manifest: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        for p in a.out.glob("bench*"):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        sh("init", "--db", str(db))
        sh("ingest", "dir", str(man), "--db", str(db), "--link")
    t = time.perf_counter()
    sh("featurize", "--extractor", "atlas", "--what", ",".join(what), "--db", str(db),
       "--no-progress")
    t_atlas = time.perf_counter() - t
    t = time.perf_counter()
    sh("featurize", "--extractor", "cnn", "--layers", a.layer, "--db", str(db), "--no-progress")
    t_cnn = time.perf_counter() - t
    sets = sets_for(a.layer, what)
    run_of = {}
    for name in sets:
        out = json.loads(sh("fit", "--features", name, "--stage", STAGE, "--db", str(db),
                            "--json"))
        run_of[name] = out["run_ids"][0]
    import duckdb  # noqa: PLC0415

    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute("select run_id, structure_id, level, auc from structure_auc "
                       "where auc is not null and list_contains($runs, run_id)",
                       {"runs": list(run_of.values())}).fetchall()
    skipped = con.execute(
        "select count(*) from run_tasks where reason like 'never seen%' and "
        "list_contains($runs, run_id)", {"runs": list(run_of.values())}).fetchall()[0][0]
    con.close()
    first = next(iter(sets))
    oracle = oracle_auc(db, pa_, run_of[first])
    lev = {s: lv for _, s, lv, _ in rows}
    table: dict[str, dict[int, list[float]]] = {n: {} for n in sets}
    table["oracle"] = {}
    name_of = {r: n for n, r in run_of.items()}
    for r, _s, lv, auc in rows:
        table[name_of[r]].setdefault(lv, []).append(auc)
    for s, auc in oracle.items():
        if s in lev:
            table["oracle"].setdefault(lev[s], []).append(auc)
    cols = [*sets, "oracle"]
    titles = [*sets.values(), "oracle (noise-free call as score)"]
    levels = sorted({lv for v in table.values() for lv in v})
    print(f"\n### Mean test AUC per level, real E11.5 anatomy ({a.genes} genes x {a.sections} "
          f"sections, seed {a.seed})\n")
    print("| level | structures | " + " | ".join(titles) + " |")
    print("|---|---|" + "---|" * len(cols))

    def cell(c, lvs):
        v = [x for lv in lvs for x in table[c].get(lv, [])]
        return (f"{np.mean(v):.3f}", len(v)) if v else ("", 0)

    for lv in levels:
        n = cell(first, [lv])[1]
        print(f"| {lv} | {n} | " + " | ".join(cell(c, [lv])[0] for c in cols) + " |")
    print(f"| all | {cell(first, levels)[1]} | "
          + " | ".join(f"**{cell(c, levels)[0]}**" for c in cols) + " |")
    coarse = [lv for lv in levels if lv <= 3]
    fine = [lv for lv in levels if lv >= 5]
    print("\n| feature set | levels 1-3 | levels 5+ | worst fine level vs levels 1-3 |")
    print("|---|---|---|---|")
    for c, tt in zip(cols, titles, strict=True):
        co = float(cell(c, coarse)[0] or "nan")
        worst = min((float(cell(c, [lv])[0]), lv) for lv in fine if cell(c, [lv])[0])
        print(f"| {tt} | {co:.3f} | {cell(c, fine)[0]} | {worst[0] - co:+.3f} "
              f"(level {worst[1]}) |")
    if "atlas.stain" in run_of:
        seen_table(db, run_of["atlas.stain"])
    print(f"\n(task rows skipped as never seen on a registered section, all runs: {skipped})")
    print(f"featurize atlas ({','.join(what)}): {t_atlas:.0f} s; featurize cnn: {t_cnn:.0f} s "
          f"({a.genes * a.sections} sections; 0 s = already done)")
    if not a.skip_registration:
        registration_table(db, pa_, a.genes)


def registration_table(db: Path, pa_: PlantedAtlas, n_genes: int) -> None:
    res, ok_frac, slice_err, ceiling = registration_dice(db, pa_, n_genes)
    print("\n### Registration: Dice of projected structure masks vs the known transform\n")
    print("| level | masks | mean Dice | ceiling (true slice + transform) |\n|---|---|---|---|")
    for lv in sorted(res):
        print(f"| {lv} | {len(res[lv])} | {np.mean(res[lv]):.3f} | "
              f"{np.mean(ceiling[lv]):.3f} |")
    print(f"\nsections ok: {ok_frac:.1%}; mean |slice error|: {slice_err:.2f} slices")
    print(f"registration speed (1 process): {speed(pa_):.1f} sections/s")


if __name__ == "__main__":
    main()
