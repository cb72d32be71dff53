"""Registration accuracy and speed on sections with known transforms (no warehouse).

Real anatomy (the shared E11.5 volume, default) or the synthetic atlas (``--synthetic
STAGE``, with specimen variation): sections are rendered in memory with their true labels,
registered with ``RegistrationModel`` (affine only, and affine + the non-rigid grid), and
each structure's projected mask is scored against its true mask (Dice, structures covering
>= 50 px), per ontology level. The ceiling column projects the true slice with the true
affine (real anatomy only: the specimen displacement is what no affine undoes).

    nice -n 10 python benchmarks/registration.py --genes 40
    nice -n 10 python benchmarks/registration.py --synthetic E13.5 --genes 30
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ishwh.atlas.accuracy import StructureDice  # noqa: E402
from ishwh.atlas.features import subtree_matrix  # noqa: E402
from ishwh.atlas.planted import PlantedAtlas, PlantedParams, ontology_arrays  # noqa: E402
from ishwh.atlas.reference import Reference  # noqa: E402
from ishwh.atlas.register import CALIBRATION, RegistrationModel, project_labels  # noqa: E402

ALLEN = Path("/work/shared/data/allen")
VOLUME = ALLEN / "grid/E11.5_annotation_345x371x158_from_brainmapr.npz"
TREE = ALLEN / "ontology/dmba_graph17_tree_from_brainmapr.json"


def planted_sections(n_genes: int, n_sections: int, seed: int):
    """(reference, scorer, [(gray, position, true labels, true slice, true affine)])."""
    tree = json.loads(TREE.read_text())
    ids, parent, level = ontology_arrays(tree)
    ann = np.load(VOLUME)["annotation"].astype(np.int32)
    pa_ = PlantedAtlas(ann, ids, parent, level,
                       PlantedParams(n_genes=n_genes, n_sections=n_sections), seed)
    out = []
    for g in range(n_genes):
        expr, _ = pa_.gene(g)
        for i, p in enumerate(pa_.positions(g)):
            img, lab, k, a = pa_.section(g, i, expr, float(p))
            out.append((cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), float(p), lab, k, a))
    return Reference("E11.5", ann), StructureDice(pa_.sub, pa_.leaf_ids, level), out


def synthetic_sections(stage: str, n_genes: int, warp: float, seed: int):
    """The synthetic atlas' sections of ``stage`` with their true label maps."""
    from ishwh.synth.generate import Atlas  # noqa: PLC0415
    from ishwh.synth.params import resolve  # noqa: PLC0415

    params = resolve("demo", specimen_warp=warp, n_genes=n_genes)
    atlas = Atlas(params, seed=seed)
    ann = atlas.reference_volume(stage)
    onto = atlas.ontology
    ids = np.asarray(onto.ids)
    parent = np.asarray(onto.parent)
    level = np.asarray(onto.level)
    leaf_ids = np.unique(ann)
    scorer = StructureDice(subtree_matrix(ids, parent, leaf_ids), leaf_ids, level)
    lut = np.concatenate([[0, 0], ids]).astype(np.int64)
    out = []
    for g in range(n_genes):
        exp = atlas.experiment(stage, g, want_labels=True)
        for s in exp.sections:
            gray = cv2.cvtColor(s.rgb, cv2.COLOR_RGB2GRAY)
            out.append((gray, s.position, lut[s.labels], None, None))
    return Reference(stage, ann), scorer, out


def evaluate(ref: Reference, scorer: StructureDice, sections, refine: bool) -> dict:
    model = RegistrationModel(ref, refine=refine)
    model.calibrate([(g, p) for g, p, *_ in sections[:CALIBRATION]])
    per_level: dict[int, list[float]] = {}
    ceiling: dict[int, list[float]] = {}
    n_ok, slice_err, t_reg, cpu = 0, [], 0.0, 0.0
    brain = {True: [], False: []}   # whole-brain Dice of sections marked ok / not ok
    for gray, pos, lab, k_true, a_true in sections:
        t, c = time.perf_counter(), time.process_time()
        al = model.register(gray, pos)
        t_reg += time.perf_counter() - t
        cpu += time.process_time() - c
        if k_true is not None:
            slice_err.append(abs(al.slice_index - k_true))
            if refine:   # the ceiling once (it does not depend on the model)
                true = project_labels(ref.slice_labels(k_true), a_true, lab.shape)
                for lv, d in scorer.score(true, lab):
                    ceiling.setdefault(lv, []).append(d)
        pred = project_labels(ref.slice_labels(al.slice_index), al.affine, lab.shape,
                              displacement=al.displacement)
        inter = np.logical_and(pred > 0, lab > 0).sum()
        brain[al.ok].append(2 * inter / max((pred > 0).sum() + (lab > 0).sum(), 1))
        if not al.ok:
            continue
        n_ok += 1
        for lv, d in scorer.score(pred, lab):
            per_level.setdefault(lv, []).append(d)
    return {"levels": per_level, "ceiling": ceiling, "ok": n_ok, "n": len(sections),
            "slice_err": float(np.mean(slice_err)) if slice_err else None,
            "speed": len(sections) / t_reg, "cpu_speed": len(sections) / cpu, "brain": brain}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--genes", type=int, default=40)
    ap.add_argument("--sections", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--synthetic", metavar="STAGE", help="the synthetic atlas' stage instead")
    ap.add_argument("--warp", type=float, default=0.02, help="synthetic specimen_warp")
    ap.add_argument("--only", choices=["affine", "nonrigid"])
    a = ap.parse_args()
    t0 = time.perf_counter()
    if a.synthetic:
        ref, scorer, secs = synthetic_sections(a.synthetic, a.genes, a.warp, a.seed)
        what = f"synthetic {a.synthetic}, specimen_warp {a.warp}, {a.genes} genes"
    else:
        ref, scorer, secs = planted_sections(a.genes, a.sections, a.seed)
        what = f"real E11.5 anatomy, {a.genes} genes x {a.sections} sections, seed {a.seed}"
    print(f"{len(secs)} sections rendered in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    runs = {}
    for name, refine in (("affine", False), ("nonrigid", True)):
        if a.only and a.only != name:
            continue
        runs[name] = evaluate(ref, scorer, secs, refine)
    ceiling = next((r["ceiling"] for r in runs.values() if r["ceiling"]), {})
    levels = sorted({lv for r in runs.values() for lv in r["levels"]})
    print(f"\n### Registration Dice per level ({what}, {len(secs)} sections)\n")
    cols = list(runs) + (["ceiling (true slice + affine)"] if ceiling else [])
    print("| level | masks | " + " | ".join(cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for lv in levels:
        n = max(len(r["levels"].get(lv, [])) for r in runs.values())
        cells = [f"{np.mean(r['levels'][lv]):.3f}" if lv in r["levels"] else ""
                 for r in runs.values()]
        if ceiling:
            cells.append(f"{np.mean(ceiling[lv]):.3f}" if lv in ceiling else "")
        print(f"| {lv} | {n} | " + " | ".join(cells) + " |")
    print()
    for name, r in runs.items():
        se = "" if r["slice_err"] is None else f", mean |slice error| {r['slice_err']:.2f}"
        bd = {k: f"{np.mean(v):.3f}" if v else "-" for k, v in r["brain"].items()}
        print(f"- {name}: {r['ok']} of {r['n']} sections ok{se}; whole-brain Dice "
              f"{bd[True]} (ok) / {bd[False]} (not ok); "
              f"{r['speed']:.1f} sections/s wall, {r['cpu_speed']:.1f} per CPU second "
              "(register only, 1 process)")


if __name__ == "__main__":
    main()
