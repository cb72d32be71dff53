"""Atlas features vs global CNN features on real anatomy (the shared E11.5 volume).

Writes a manifest folder (graph-17 ontology, reference/E11.5.npz, rendered sections with
planted expression, annotations with missed calls; see ishwh/atlas/planted.py), ingests it,
featurizes (global CNN + atlas), fits atlas alone / CNN alone / both, and measures
registration against the known transforms. Prints markdown tables (paste into docs/atlas.md).

    nice -n 10 python benchmarks/atlas_real_anatomy.py --out /tmp/atlas_bench --genes 400
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

from ishwh.atlas import alignments  # noqa: E402
from ishwh.atlas import register as reg_mod  # noqa: E402
from ishwh.atlas.accuracy import StructureDice  # noqa: E402
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
    """Per level: mean Dice of each structure's projected mask (stored alignment, with its
    displacement grid) against its true mask (the known transform), over structures
    covering >= 50 px of a section; and the same for the true slice and affine (the
    ceiling the specimen displacement leaves to an affine: the reference is not the
    specimen)."""
    import duckdb  # noqa: PLC0415

    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute("select s.experiment_id, s.section_number, a.slice_index, a.affine, "
                       "a.ok, a.quality, a.displacement, a.disp_rows, a.disp_cols "
                       "from section_alignments a join sections s using (section_id)").fetchall()
    con.close()
    ref = Reference(STAGE, pa_.ann)
    scorer = StructureDice(pa_.sub, pa_.leaf_ids, pa_.level)
    res: dict[int, list[float]] = {}
    ceiling: dict[int, list[float]] = {}
    n_ok = sum(1 for r in rows if r[4])
    slice_err = []
    for eid, num, k, aff, ok, _, *disp in rows:
        g, i = eid - 1_000_000, num - 1
        if g >= n_genes or not ok:
            continue
        expr, _ = pa_.gene(g)
        _, true_lab, true_k, true_a = pa_.section(g, i, expr, float(pa_.positions(g)[i]))
        slice_err.append(abs(k - true_k))
        for kk, a, d, out in ((k, np.asarray(aff).reshape(2, 3), alignments.grid(*disp), res),
                              (true_k, true_a, None, ceiling)):
            pred = reg_mod.project_labels(ref.slice_labels(kk), a, true_lab.shape,
                                          displacement=d)
            for lv, dice in scorer.score(pred, true_lab):
                out.setdefault(lv, []).append(dice)
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("/tmp/atlas_bench"))
    ap.add_argument("--genes", type=int, default=400)
    ap.add_argument("--sections", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layer", default="blocks.5")
    ap.add_argument("--registration-only", action="store_true",
                    help="only the registration tables, on the warehouse of an earlier run")
    a = ap.parse_args()
    t0 = time.perf_counter()
    man = a.out / "manifest"
    if a.registration_only:
        tree = json.loads(TREE.read_text())
        ids, parent, level = ontology_arrays(tree)
        pa_ = PlantedAtlas(np.load(VOLUME)["annotation"].astype(np.int32), ids, parent, level,
                           PlantedParams(n_genes=a.genes, n_sections=a.sections), a.seed)
        registration_table(a.out / "bench.duckdb", pa_, a.genes)
        return
    pa_ = write_manifest(man, a.genes, a.sections, a.seed)
    print(f"manifest: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    db = a.out / "bench.duckdb"
    for p in a.out.glob("bench*"):
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    sh("init", "--db", str(db))
    sh("ingest", "dir", str(man), "--db", str(db), "--link")
    t = time.perf_counter()
    sh("featurize", "--extractor", "atlas", "--db", str(db), "--no-progress")
    t_atlas = time.perf_counter() - t
    t = time.perf_counter()
    sh("featurize", "--extractor", "cnn", "--layers", a.layer, "--db", str(db), "--no-progress")
    t_cnn = time.perf_counter() - t
    cnn = f"efficientnet_lite0.{a.layer}.max"
    sets = {"atlas.stain": "atlas", cnn: "global CNN", f"atlas.stain+{cnn}": "both"}
    table: dict[str, dict[int, tuple[float, int]]] = {}
    for name in sets:
        out = json.loads(sh("fit", "--features", name, "--stage", STAGE, "--db", str(db),
                            "--json"))
        table[name] = {r["level"]: (r["mean_auc"], r["n_structures"]) for r in out["levels"]}
    levels = sorted({lv for v in table.values() for lv in v})
    print(f"\n### Mean AUC per level, real E11.5 anatomy ({a.genes} genes x {a.sections} "
          f"sections, seed {a.seed})\n")
    print("| level | structures | " + " | ".join(sets.values()) + " |")
    print("|---|---|" + "---|" * len(sets))
    for lv in levels:
        n = table["atlas.stain"].get(lv, (None, 0))[1]
        cells = [f"{table[s][lv][0]:.3f}" if lv in table[s] and table[s][lv][0] is not None
                 else "" for s in sets]
        print(f"| {lv} | {n} | " + " | ".join(cells) + " |")
    import duckdb  # noqa: PLC0415

    con = duckdb.connect(str(db), read_only=True)
    overall = con.execute(
        "select f.name, avg(a.auc), count(a.auc) from structure_auc a join runs r using "
        "(run_id) join feature_sets f on f.feature_set_id = r.feature_set_id "
        "where a.auc is not null group by f.name").fetchall()
    skipped = con.execute(
        "select count(*) from run_tasks where reason like 'never seen%'").fetchall()[0][0]
    con.close()
    print("\n| feature set | mean AUC over all scored structures | structures |")
    print("|---|---|---|")
    for name, auc, n in sorted(overall):
        print(f"| {name} | {auc:.3f} | {n} |")
    print(f"\n(task rows skipped as never seen on a registered section, all runs: {skipped})")
    print(f"featurize atlas: {t_atlas:.0f} s; featurize cnn: {t_cnn:.0f} s "
          f"({a.genes * a.sections} sections)")
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
