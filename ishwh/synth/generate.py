"""The synthetic atlas end to end: an :class:`Atlas` (ontology, anatomy per stage, programs,
genes) renders experiments on demand; :func:`ingest_synthetic` streams them into a warehouse
and :func:`write_manifest` into a manifest folder. Everything is a pure function of
(parameters, seed): every random draw comes from a generator seeded by the seed and the
thing being drawn (stage, gene, ...), so output is byte-identical and order-independent.
"""

from __future__ import annotations

import csv
import json
import multiprocessing as mp
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ishwh.errors import InvalidInput
from ishwh.ids import SYNTHETIC_SECTION_FACTOR, section_id
from ishwh.images import store_array
from ishwh.progress import Progress, phase
from ishwh.synth import anatomy as anatomy_mod
from ishwh.synth import annotate as ann
from ishwh.synth import expression as ex
from ishwh.synth import ontology as onto
from ishwh.synth.params import ALL_STAGES, SynthParams, resolve
from ishwh.synth.render import Cells, draw_nuisance, make_cells, render_section
from ishwh.vocab import ANNOTATED_STAGES, GRADES, PATTERNS

GENE_BASE = 90_000_000
EXPERIMENT_BASE = 900_000_000
# section width in µm per stage (the frame shows the embryo head or the whole brain)
SECTION_WIDTH_UM = {"E11.5": 5000, "E13.5": 7500, "E15.5": 10000, "E18.5": 10000,
                    "P4": 11000, "P14": 12000, "P28": 12500, "P56": 13000}


@dataclass
class SynthSection:
    number: int
    position: float
    rgb: np.ndarray
    labels: np.ndarray | None  # label map aligned with rgb (0 bg, 1 embryo, 2 + s structure)


@dataclass
class SynthExperiment:
    experiment_id: int
    gene: int
    stage: str
    sections: list[SynthSection]
    pattern: np.ndarray     # per structure code (-1 unknown), see vocab.PATTERNS
    intensity: np.ndarray
    density: np.ndarray
    grid_shape: tuple[int, int, int]  # (nx, ny, nz)
    energy: np.ndarray      # float32, x fastest, -1 = no data
    gain: float


_SYLL_C = "bcdfghklmnprstvz"
_SYLL_V = "aeiou"


def _gene_symbols(n: int, rng: np.random.Generator) -> list[str]:
    """Gene-like symbols (``Tamox3``): capitalised syllables, an 'x', a digit; unique."""
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        syl = "".join(_SYLL_C[rng.integers(16)] + _SYLL_V[rng.integers(5)]
                      for _ in range(int(rng.integers(2, 4))))
        sym = f"{syl.capitalize()}x{int(rng.integers(1, 10))}"
        if sym not in seen:
            seen.add(sym)
            out.append(sym)
    return out


class Atlas:
    """One synthetic atlas: deterministic in (params, seed); stage anatomy built lazily."""

    def __init__(self, params: SynthParams, seed: int = 0):
        self.params = params
        self.seed = int(seed)
        rng = np.random.default_rng([self.seed, 1])
        if params.ontology_path:
            self.ontology = onto.from_graph_file(params.ontology_path, len(params.level_counts))
        else:
            self.ontology = onto.generate(params.level_counts, rng)
        self.children = self.ontology.children()
        self.subtree = self.ontology.subtree_matrix()
        self.subtrees = [self.subtree.indices[self.subtree.indptr[s]:self.subtree.indptr[s + 1]]
                         for s in range(self.ontology.size)]
        self.programs = ex.make_programs(self.ontology, params.n_programs,
                                         np.random.default_rng([self.seed, 2]))
        self.tasks = ann.gene_tasks(params.n_gene_tasks, params.n_programs,
                                    np.random.default_rng([self.seed, 3]))
        self.gene_symbols = _gene_symbols(params.n_genes, np.random.default_rng([self.seed, 4]))
        self._anatomy: dict[str, anatomy_mod.StageAnatomy] = {}
        self._cells: Cells | None = None
        self._partners: list[np.ndarray] | None = None

    # ---------------------------------------------------------------- ids and names
    @property
    def source(self) -> str:
        return f"synthetic:{self.params.variant()}:seed{self.seed}"

    @property
    def half_size(self) -> tuple[int, int]:
        w, h = self.params.image_size
        return max(16, w // 2), max(12, h // 2)

    def gene_id(self, g: int) -> int:
        return GENE_BASE + g

    def experiment_id(self, stage: str, g: int) -> int:
        return EXPERIMENT_BASE + ALL_STAGES.index(stage) * 1_000_000 + g

    @staticmethod
    def section_id(experiment_id: int, number: int) -> int:
        return section_id(experiment_id, number, SYNTHETIC_SECTION_FACTOR)  # see ishwh.ids

    def task_names(self) -> list[str]:
        return [f"GO:99{k:05d}" for k in range(len(self.tasks))]

    # ---------------------------------------------------------------- model parts
    def anatomy(self, stage: str) -> anatomy_mod.StageAnatomy:
        if stage not in self._anatomy:
            rng = np.random.default_rng([self.seed, 5, ALL_STAGES.index(stage)])
            self._anatomy[stage] = anatomy_mod.build(
                self.ontology, stage, self.half_size, self.params.n_slices, rng)
        return self._anatomy[stage]

    @property
    def partners(self) -> list[np.ndarray]:
        """Per structure, those an annotator may confuse it with (see annotate.confuse)."""
        if self._partners is None:
            self._partners = ann.confusable(self.ontology.parent)
        return self._partners

    def cells(self) -> Cells:
        if self._cells is None:
            self._cells = make_cells(self.params.image_size, np.random.default_rng([self.seed, 6]))
        return self._cells

    def gene(self, g: int) -> ex.GeneModel:
        rng = np.random.default_rng([self.seed, 7, g])

        def own_stream(stage: str) -> np.random.Generator | None:
            # the annotated stages draw in turn from the gene's stream, as they always have
            # (their data, and the calibration in docs/synthetic.md, stay as they were); the
            # later stages each draw from a stream of their own
            if stage in ANNOTATED_STAGES:
                return None
            return np.random.default_rng([self.seed, 7, g, ALL_STAGES.index(stage)])

        return ex.make_gene(self.ontology, self.programs, self.params.stages,
                            self.params.gene_noise, rng, self.children, own_stream)

    def gene_labels(self, g: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 8, g])
        return ann.gene_task_labels(self.gene(g).programs, self.tasks, rng)

    def structure_mask(self, labels: np.ndarray, structure_id: int) -> np.ndarray:
        """Boolean mask of a structure (with its whole subtree) in a section label map."""
        index = int(np.flatnonzero(self.ontology.ids == structure_id)[0])
        return np.isin(labels, self.subtrees[index] + 2)

    # ---------------------------------------------------------------- one experiment
    def section_layout(self, stage: str, g: int
                       ) -> tuple[np.random.Generator, np.ndarray, np.ndarray, float]:
        """The first draws of an experiment's stream: section positions (0..1), missing
        flags and staining gain, with the stream itself (the experiment draws on from it)."""
        p = self.params
        rng = np.random.default_rng([self.seed, 9, ALL_STAGES.index(stage), g])
        lo, hi = p.sections
        n = int(rng.integers(lo, hi + 1))
        span = rng.uniform(0.8, 0.97)
        start = rng.uniform(0.01, 0.99 - span)
        pos = np.sort(np.clip(start + span * (np.arange(n) + 0.5 + rng.uniform(-0.3, 0.3, n)) / n,
                              0.0, 1.0))
        missing = rng.random(n) < p.missing_section_rate
        if (~missing).sum() < max(1, lo - 3):
            missing[:] = False
        gain = float(np.exp(rng.normal(0.0, p.gain_sd)))
        return rng, pos, missing, gain

    def experiment(self, stage: str, g: int, want_labels: bool = False,
                   images: bool = True) -> SynthExperiment:
        """Render one experiment (gene ``g`` at ``stage``): sections, annotations, grid.

        ``images=False`` skips the section images (annotations and grid are the same)."""
        p = self.params
        anat = self.anatomy(stage)
        gene = self.gene(g)
        prof = ex.profile(gene, stage, anat, self.subtrees)
        rng, pos, missing, gain = self.section_layout(stage, g)
        n = len(pos)
        bg_stain = float(rng.uniform(0.0, p.background_stain))
        # the specimen's own anatomy (its own stream: the other draws do not depend on it)
        key = [self.seed, ALL_STAGES.index(stage), g]
        warp = anatomy_mod.smooth_displacement(anat, p.specimen_warp,
                                         np.random.default_rng([11, *key]))
        # the annotator places structure borders by eye: her atlas sits a little off, which
        # matters for small structures only (own streams again, so images never change)
        ann_rng = np.random.default_rng([12, *key])
        seen_as = anatomy_mod.smooth_displacement(anat, p.annotator_warp, ann_rng, coarse=(6, 10))
        stats = ann.SectionStats(len(anat.tone))
        cells = self.cells()
        sections = []
        for i in range(n):
            if missing[i]:
                continue
            k = anat.slice_index(float(pos[i]))
            lab, xx, yy = anatomy_mod.warp_slice(anat, k, warp)
            e, d = ex.fields(prof, lab, xx, yy, anat.depth_of_slice(k))
            stats.add(anatomy_mod.remap_labels(lab, seen_as, cv2.BORDER_REPLICATE), e, d)
            if not images:
                continue
            nz = draw_nuisance(p.image_size, p.nuisance, rng, cells)
            rgb, lab_full = render_section(
                lab, e, d, anat.tone, cells, p.image_size, nz, rng,
                contrast=p.stain_contrast, gain=gain, bg_stain=bg_stain, want_labels=want_labels)
            sections.append(SynthSection(i + 1, round(float(pos[i]), 4), rgb, lab_full))
        ann.confuse(stats, self.partners, p.confusion, np.random.default_rng([13, *key]))
        kind = np.where(prof.intensity[2:] > 0, prof.kind[2:], ex.FULL)
        pattern, inten, dens = ann.annotate(
            stats, self.subtree, self.ontology.parent, kind, gain, p.flip_rate, p.faint_dropout,
            ann_rng)
        shape, energy = self._grid(prof, anat, gain, rng, pos[missing])
        return SynthExperiment(self.experiment_id(stage, g), g, stage, sections, pattern, inten,
                               dens, shape, energy, gain)

    def _grid(self, prof: ex.Profile, anat: anatomy_mod.StageAnatomy, gain: float,
              rng: np.random.Generator, missing_pos: np.ndarray):
        """Coarse 3-D energy: mean expected stain per block of the anatomy (-1 = no data).

        Like Allen's grid data it is a *measurement*, not the truth: with ``grid_noise`` > 0
        the volume is misregistered (shifted up to a voxel per axis, as each experiment's
        3-D alignment to the reference is imperfect), blurred (section thickness and
        segmentation), measured with multiplicative noise and a detection floor, and the
        slabs of missing sections have no data (-1).
        """
        lab = anat.labels[1::2, 1::2, 1::2]
        d = ((1.0 - anat.positions[1::2]) * anatomy_mod.HALF_WIDTH)[:, None, None]
        e, dd = ex.fields(prof, lab, anat.xx[1::2, 1::2], anat.yy[1::2, 1::2], d)
        z, y, x = lab.shape
        y2, x2 = y // 2, x // 2
        brain = (lab >= 2)[:, : 2 * y2, : 2 * x2].reshape(z, y2, 2, x2, 2)
        sig = (e * dd * gain)[:, : 2 * y2, : 2 * x2].reshape(z, y2, 2, x2, 2)
        n = brain.sum((2, 4))
        valid = n > 0
        mean = np.where(valid, (sig * brain).sum((2, 4)) / np.maximum(n, 1), 0.0)
        q = self.params.grid_noise
        if q > 0:
            shift = rng.integers(-1, 2, size=3) * (rng.random(3) < min(1.0, q))
            mean = np.roll(mean, tuple(int(v) for v in shift), axis=(0, 1, 2))
            mean = np.stack([cv2.GaussianBlur(m.astype(np.float32), (0, 0), 0.8 * q)
                             for m in mean])
            mean = mean * rng.lognormal(0.0, 0.6 * q, mean.shape)
            floor = 0.15 * q * float(mean[valid].max(initial=0.0))
            mean = np.where(mean < floor * rng.random(mean.shape) * 2, 0.0, mean)
            slabs = np.clip(np.asarray(missing_pos) * z, 0, z - 1).astype(int)  # slice k at ~k/z
            valid = valid.copy()
            valid[slabs] = False
        mean = np.where(valid, mean, -1.0)
        return (x2, y2, z), mean.astype(np.float32).ravel()  # (nz, ny, nx): x fastest

    def reference_volume(self, stage: str) -> np.ndarray:
        """The stage's reference annotation in the contract's axes (anterior->posterior,
        superior->inferior, lateral->medial): structure ids, 0 outside the brain. Each
        specimen is this anatomy warped (``specimen_warp``), so registering to it is work."""
        anat = self.anatomy(stage)
        lut = np.concatenate([[0, 0], self.ontology.ids]).astype(np.int32)
        return np.ascontiguousarray(lut[anat.labels].transpose(2, 1, 0))

    def reference_spacing_um(self, stage: str) -> float:
        return SECTION_WIDTH_UM[stage] / self.half_size[0]

    def spacing_um(self, stage: str) -> float:
        nx = (self.half_size[0] // 2) // 2
        return SECTION_WIDTH_UM[stage] / max(nx, 1)


# -------------------------------------------------------------------- parallel rendering

_WORKER_ATLAS: Atlas | None = None


def _encode_jpeg(rgb: np.ndarray) -> bytes:
    # JPEG, as the Allen atlas serves its section images (and 20x faster than PNG here)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise InvalidInput("cannot encode a synthetic section as JPEG")
    return buf.tobytes()


def _render_task(task: tuple[str, int, str, str]) -> dict[str, Any]:
    """Render one experiment and write its images; return compact rows (runs in workers)."""
    stage, g, mode, root = task
    atlas = _WORKER_ATLAS
    assert atlas is not None
    exp = atlas.experiment(stage, g, images=mode != "no-images")
    w, h = atlas.params.image_size
    secs = []
    for s in exp.sections:
        if mode == "warehouse":
            stored = store_array(s.rgb, Path(root), fmt=".jpg")
            path, sha = stored.relpath, stored.sha256
        else:
            rel = f"images/{stage}/{atlas.gene_symbols[g]}/{exp.experiment_id}_{s.number:02d}.jpg"
            dest = Path(root) / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(_encode_jpeg(s.rgb))
            path, sha = rel, None
        secs.append((s.number, s.position, path, sha, w, h))
    return {"stage": stage, "gene": g, "experiment_id": exp.experiment_id, "sections": secs,
            "pattern": exp.pattern, "intensity": exp.intensity, "density": exp.density,
            "grid_shape": exp.grid_shape, "energy": exp.energy}


def _pool_init(atlas: Atlas) -> None:
    global _WORKER_ATLAS
    _WORKER_ATLAS = atlas
    cv2.setNumThreads(1)  # one process per core already


def _render_all(atlas: Atlas, tasks: list[tuple[str, int, str, str]]) -> Iterator[dict]:
    """Results in task order; with workers > 1, a process pool renders in parallel.

    The pool is started with "spawn" (a forked child can deadlock on locks that OpenCV or
    DuckDB threads held in the parent) and receives the built atlas, anatomy included."""
    global _WORKER_ATLAS
    _WORKER_ATLAS = atlas
    for stage in sorted({t[0] for t in tasks}, key=ALL_STAGES.index):
        atlas.anatomy(stage)  # built once here and handed to the workers
    atlas.cells()
    workers = max(1, int(atlas.params.workers))
    if workers == 1 or len(tasks) < 8:
        for t in tasks:
            yield _render_task(t)
        return
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_pool_init, initargs=(atlas,)) as pool:
        # imap keeps order and bounds memory: results are small, images go straight to disk
        yield from pool.imap(_render_task, tasks, chunksize=2)


# -------------------------------------------------------------------- rows

_PATTERN_LUT = np.array(list(PATTERNS) + [None], dtype=object)
_GRADE_LUT = np.array(list(GRADES) + [None], dtype=object)


def _annotation_columns(atlas: Atlas, results: list[dict], source: str | None = None):
    """The annotator's calls of ``results`` as an ``annotations`` table (with ``source``:
    a ``withheld_annotations`` table)."""
    import pyarrow as pa  # noqa: PLC0415  (main process only; workers stay light)

    ids, sids, pat, inten, dens = [], [], [], [], []
    for r in results:
        seen = r["pattern"] >= 0
        ids.append(np.full(int(seen.sum()), r["experiment_id"], dtype=np.int64))
        sids.append(atlas.ontology.ids[seen])
        pat.append(_PATTERN_LUT[r["pattern"][seen]])
        inten.append(_GRADE_LUT[r["intensity"][seen]])
        dens.append(_GRADE_LUT[r["density"][seen]])
    cat = np.concatenate
    table = pa.table({
        "experiment_id": pa.array(cat(ids) if ids else [], pa.int64()),
        "structure_id": pa.array(cat(sids) if sids else [], pa.int64()),
        "pattern": pa.array(list(cat(pat)) if pat else [], pa.string()),
        "intensity": pa.array(list(cat(inten)) if inten else [], pa.string()),
        "density": pa.array(list(cat(dens)) if dens else [], pa.string()),
    })
    if source is not None:
        table = table.append_column("source", pa.array([source] * table.num_rows, pa.string()))
    return table


def _batch(atlas: Atlas, results: list[dict]):
    import pyarrow as pa  # noqa: PLC0415

    from ishwh import loader  # noqa: PLC0415

    exps, secs, grids = [], [], []
    for r in results:
        exps.append({"experiment_id": r["experiment_id"], "gene_id": atlas.gene_id(r["gene"]),
                     "stage": r["stage"], "plane": "sagittal", "source": atlas.source})
        for number, position, path, sha, w, h in r["sections"]:
            secs.append({"section_id": atlas.section_id(r["experiment_id"], number),
                         "experiment_id": r["experiment_id"], "section_number": number,
                         "image_path": path, "width": w, "height": h, "position": position,
                         "sha256": sha})
        nx, ny, nz = r["grid_shape"]
        grids.append((r["experiment_id"], nx, ny, nz, atlas.spacing_um(r["stage"]), r["energy"]))
    grid_table = pa.table({
        "experiment_id": pa.array([g[0] for g in grids], pa.int64()),
        "nx": pa.array([g[1] for g in grids], pa.int32()),
        "ny": pa.array([g[2] for g in grids], pa.int32()),
        "nz": pa.array([g[3] for g in grids], pa.int32()),
        "spacing_um": pa.array([g[4] for g in grids], pa.float64()),
        "energy": pa.array([g[5] for g in grids], pa.list_(pa.float32())),
    })
    sec_table = pa.table({
        "section_id": pa.array([s["section_id"] for s in secs], pa.int64()),
        "experiment_id": pa.array([s["experiment_id"] for s in secs], pa.int64()),
        "section_number": pa.array([s["section_number"] for s in secs], pa.int32()),
        "image_path": pa.array([s["image_path"] for s in secs], pa.string()),
        "width": pa.array([s["width"] for s in secs], pa.int32()),
        "height": pa.array([s["height"] for s in secs], pa.int32()),
        "position": pa.array([s["position"] for s in secs], pa.float64()),
        "sha256": pa.array([s["sha256"] for s in secs], pa.string()),
    })
    # the Allen-like rule: the calls of an unannotated stage are withheld (truth table only)
    withheld = [r for r in results if atlas.params.withholds(r["stage"])]
    annotated = [r for r in results if not atlas.params.withholds(r["stage"])]
    return loader.Batch(experiments=exps, sections=sec_table,
                        annotations=_annotation_columns(atlas, annotated),
                        withheld_annotations=_annotation_columns(atlas, withheld, atlas.source),
                        expression_grids=grid_table)


def _static_rows(atlas: Atlas) -> dict[str, Any]:
    genes = [{"gene_id": atlas.gene_id(g), "acronym": sym, "name": f"synthetic gene {sym}",
              "entrez_id": None} for g, sym in enumerate(atlas.gene_symbols)]
    names = atlas.task_names()
    labels = []
    for g in range(atlas.params.n_genes):
        for name, value in zip(names, atlas.gene_labels(g), strict=True):
            labels.append({"gene_id": atlas.gene_id(g), "task": name, "label": bool(value)})
    return {"genes": genes, "structures": atlas.ontology.rows(), "gene_labels": labels}


def _check_compatible(con, atlas: Atlas) -> None:
    """Refuse to mix two different atlases (their ids overlap) in one warehouse."""
    others = con.execute(
        "select distinct source from experiments where source like 'synthetic:%' and source <> ?",
        [atlas.source]).fetchall()
    if others:
        raise InvalidInput(
            f"the warehouse already holds another synthetic atlas ({others[0][0]})",
            hint="use a fresh --db for a different preset or seed")
    ours = {r["structure_id"]: r["acronym"] for r in atlas.ontology.rows()}
    clash = con.execute(
        "select structure_id, acronym from structures where structure_id between ? and ?",
        [min(ours), max(ours)]).fetchall()
    bad = [sid for sid, acr in clash if sid in ours and ours[sid] != acr]
    if bad:
        raise InvalidInput(
            f"the warehouse holds a different ontology (structure {bad[0]} differs)",
            hint="ingest the synthetic atlas into a fresh --db")


# -------------------------------------------------------------------- public entry points


def ingest_synthetic(db_path: str | os.PathLike, preset: str | SynthParams = "demo",
                     seed: int = 0, progress: Progress | None = None, chunk: int = 16,
                     images: bool = True, **overrides: Any) -> dict[str, Any]:
    """Generate the synthetic atlas straight into an initialised warehouse.

    Streams: experiments are rendered (images written to the warehouse image folder) and
    loaded in chunks of ``chunk``, each chunk in one transaction, so memory stays bounded
    and an interrupted run resumes where it stopped (experiments already loaded are skipped).
    Running it twice adds nothing. Returns counts of new rows and timing.
    ``images=False`` renders no section images (experiments without sections; annotations
    and expression grids are the same): a fast atlas for the grid features only.
    """
    from ishwh import loader, warehouse  # noqa: PLC0415  (workers never import DuckDB)

    params = resolve(preset, **overrides)
    t0 = time.perf_counter()
    atlas = Atlas(params, seed)
    root = warehouse.images_dir(db_path)
    root.mkdir(parents=True, exist_ok=True)
    added: dict[str, int] = {}

    def count(new: dict[str, int]) -> None:
        for k, v in new.items():
            added[k] = added.get(k, 0) + v

    with warehouse.connect(db_path) as con:
        _check_compatible(con, atlas)
        static = _static_rows(atlas)
        count(loader.load(con, loader.Batch(**static)))
        from ishwh.atlas import reference as ref_mod  # noqa: PLC0415

        with warehouse.transaction(con):   # the atlas registers its own references
            count({"reference_atlases": sum(
                ref_mod.store(con, st, atlas.reference_volume(st),
                              atlas.reference_spacing_um(st), atlas.source)
                for st in params.stages)})
        have = {r[0] for r in con.execute(
            "select experiment_id from experiments where source = ?", [atlas.source]).fetchall()}
        mode = "warehouse" if images else "no-images"
        tasks = [(st, g, mode, str(root)) for st in params.stages
                 for g in range(params.n_genes) if atlas.experiment_id(st, g) not in have]
        n_sections = 0
        with phase(progress, f"synthetic {params.name}", len(tasks), "experiments") as advance:
            pending: list[dict] = []
            for res in _render_all(atlas, tasks):
                pending.append(res)
                n_sections += len(res["sections"])
                advance(1)
                if len(pending) >= chunk:
                    count(loader.load(con, _batch(atlas, pending)))
                    pending = []
            if pending:
                count(loader.load(con, _batch(atlas, pending)))
    seconds = time.perf_counter() - t0
    return {
        "preset": params.name, "seed": int(seed), "source": atlas.source,
        "stages": list(params.stages), "genes": params.n_genes,
        "structures": atlas.ontology.size,
        "experiments_rendered": len(tasks), "experiments_skipped": len(have),
        "sections_rendered": n_sections, "added": added, "seconds": round(seconds, 2),
        "sections_per_second": round(n_sections / seconds, 1) if seconds > 0 else None,
    }


def write_manifest(out_dir: str | os.PathLike, preset: str | SynthParams = "demo", seed: int = 0,
                   progress: Progress | None = None, **overrides: Any) -> dict[str, Any]:
    """Write the synthetic atlas as a manifest folder (the ``ishwh ingest dir`` contract):
    ``ontology.json``, ``sections.csv``, ``annotations.csv``, ``gene_labels.csv``,
    ``images/<stage>/<gene>/*.jpg`` and ``synthetic.json`` (the parameters and seed); the
    calls of withheld stages (``SynthParams.withholds``) go to ``withheld_annotations.csv``
    (same columns as ``annotations.csv``), which ``ishwh ingest dir`` does not read."""
    params = resolve(preset, **overrides)
    t0 = time.perf_counter()
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        if not (out / "synthetic.json").exists():
            raise InvalidInput(f"{out} exists and is not empty",
                               hint="choose a new folder (it will be created)")
    out.mkdir(parents=True, exist_ok=True)
    atlas = Atlas(params, seed)
    (out / "ontology.json").write_text(json.dumps(atlas.ontology.graph_json(), indent=1),
                                       encoding="utf-8")
    (out / "synthetic.json").write_text(
        json.dumps({"seed": int(seed), "params": params.data_dict(), "source": atlas.source},
                   indent=2), encoding="utf-8")
    with open(out / "gene_labels.csv", "w", newline="", encoding="utf-8") as f:
        wr = csv.writer(f, lineterminator="\n")
        wr.writerow(["gene", "task", "label"])
        for g, sym in enumerate(atlas.gene_symbols):
            for name, value in zip(atlas.task_names(), atlas.gene_labels(g), strict=True):
                wr.writerow([sym, name, int(value)])
    (out / "reference").mkdir(exist_ok=True)
    for st in params.stages:
        np.savez_compressed(out / "reference" / f"{st}.npz",
                            annotation=atlas.reference_volume(st),
                            spacing_um=np.float64(atlas.reference_spacing_um(st)))
    tasks = [(st, g, "manifest", str(out)) for st in params.stages for g in range(params.n_genes)]
    n_sections = n_ann = 0
    withholds = any(params.withholds(st) for st in params.stages)
    with open(out / "sections.csv", "w", newline="", encoding="utf-8") as fs, \
            open(out / "annotations.csv", "w", newline="", encoding="utf-8") as fa, \
            open(out / "withheld_annotations.csv" if withholds else os.devnull, "w",
                 newline="", encoding="utf-8") as fw, \
            phase(progress, f"synthetic {params.name}", len(tasks), "experiments") as advance:
        ws = csv.writer(fs, lineterminator="\n")
        header = ["experiment_id", "structure", "pattern", "intensity", "density"]
        writers = {False: csv.writer(fa, lineterminator="\n"),
                   True: csv.writer(fw, lineterminator="\n")}
        ws.writerow(["gene", "stage", "experiment_id", "section_number", "image", "position",
                     "gene_name"])
        for w in writers.values():
            w.writerow(header)
        for r in _render_all(atlas, tasks):
            sym = atlas.gene_symbols[r["gene"]]
            for number, position, path, _sha, _w, _h in r["sections"]:
                ws.writerow([sym, r["stage"], r["experiment_id"], number, path,
                             f"{position:.4f}", f"synthetic gene {sym}"])
                n_sections += 1
            wa = writers[params.withholds(r["stage"])]
            for s in np.flatnonzero(r["pattern"] >= 0):
                wa.writerow([r["experiment_id"], int(atlas.ontology.ids[s]),
                             PATTERNS[r["pattern"][s]], GRADES[r["intensity"][s]],
                             GRADES[r["density"][s]]])
                n_ann += 1
            advance(1)
    seconds = time.perf_counter() - t0
    return {"path": str(out), "preset": params.name, "seed": int(seed),
            "structures": atlas.ontology.size, "genes": params.n_genes,
            "experiments": len(tasks), "sections": n_sections, "annotations": n_ann,
            "seconds": round(seconds, 2),
            "sections_per_second": round(n_sections / seconds, 1) if seconds > 0 else None}
