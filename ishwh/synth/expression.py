"""Expression truth: shared latent programs, genes drawn from them, and the per-pixel
expression fields of a section.

A *program* is a small set of anchor structures; an anchor expresses in its whole subtree
(so programs respect the hierarchy) with a pattern (full / regional blob / gradient), an
intensity and a density. A gene uses 0-3 programs (most use few, so "undetected" dominates),
plus gene-specific noise: dropped anchors, extra small anchors, silenced sub-regions and
jittered strength. Programs switch on and off between stages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from ishwh.synth.anatomy import StageAnatomy
from ishwh.synth.ontology import Ontology

FULL, REGIONAL, GRADIENT = 0, 1, 2


@dataclass
class Anchor:
    structure: int       # index in the ontology
    kind: int            # FULL / REGIONAL / GRADIENT
    intensity: float     # 0..1 darkness of stained cells
    density: float       # 0..1 fraction of cells stained
    blob: int            # which interior sample point centres a regional blob
    direction: tuple[float, float, float]  # gradient direction (unit)
    silent: tuple[int, ...] = ()  # descendant structures (with subtrees) left unexpressed


@dataclass
class GeneModel:
    programs: list[int]
    # per stage: the anchors active at that stage, and the embryo-tissue expression
    anchors: dict[str, list[Anchor]]
    embryo: dict[str, float]


def _random_anchor(rng: np.random.Generator, structure: int) -> Anchor:
    kind = int(rng.choice(3, p=[0.55, 0.28, 0.17]))
    v = rng.standard_normal(3)
    v /= np.linalg.norm(v) + 1e-9
    return Anchor(
        structure=structure,
        kind=kind,
        intensity=float(rng.beta(2.2, 1.8)),
        density=float(rng.beta(2.0, 1.6)),
        blob=int(rng.integers(4)),
        direction=(float(v[0]), float(v[1]), float(v[2])),
    )


def make_programs(ontology: Ontology, n_programs: int,
                  rng: np.random.Generator) -> list[list[Anchor]]:
    """Programs: 1-3 anchors each, anchored at any level (coarse levels less often)."""
    levels = np.unique(ontology.level)
    lw = np.array([0.35 if lv == levels.min() else 1.0 for lv in levels])
    programs = []
    for _ in range(n_programs):
        anchors = []
        for _ in range(int(rng.choice([1, 2, 3], p=[0.4, 0.4, 0.2]))):
            lv = rng.choice(levels, p=lw / lw.sum())
            pool = np.flatnonzero(ontology.level == lv)
            anchors.append(_random_anchor(rng, int(rng.choice(pool))))
        programs.append(anchors)
    return programs


def make_gene(ontology: Ontology, programs: list[list[Anchor]], stages: tuple[str, ...],
              noise: float, rng: np.random.Generator, children: list[list[int]],
              own_stream: Callable[[str], np.random.Generator] | None = None) -> GeneModel:
    """One gene: its programs and, per stage, its noisy anchors.

    A stage for which ``own_stream(stage)`` gives a generator draws from it instead of
    ``rng``, so that adding such a stage (the postnatal ones) leaves every other stage's
    draws, and hence its data, unchanged whatever the order of ``stages``."""
    n = int(rng.choice(4, p=[0.12, 0.38, 0.30, 0.20]))
    chosen = sorted(int(p) for p in rng.choice(len(programs), size=n, replace=False)) if n else []
    anchors: dict[str, list[Anchor]] = {}
    embryo: dict[str, float] = {}
    gene_strength = float(np.exp(rng.normal(0.0, 0.25)))
    extra_base = [_random_anchor(rng, int(rng.integers(ontology.size)))
                  for _ in range(rng.poisson(1.2 * noise))]
    main_rng = rng
    for stage in stages:
        own = own_stream(stage) if own_stream is not None else None
        rng = own if own is not None else main_rng
        out: list[Anchor] = []
        for p in chosen:
            if rng.random() > 0.8:  # the program is off at this stage
                continue
            for a in programs[p]:
                if rng.random() < 0.2 * noise:
                    continue
                jitter = np.exp(rng.normal(0.0, 0.35 * noise))
                b = Anchor(
                    structure=a.structure,
                    kind=a.kind if rng.random() > 0.3 * noise else int(rng.integers(3)),
                    intensity=float(np.clip(a.intensity * jitter * gene_strength, 0.05, 1.0)),
                    density=float(np.clip(a.density * np.exp(rng.normal(0, 0.3 * noise)),
                                          0.05, 1.0)),
                    blob=a.blob if rng.random() > 0.5 * noise else int(rng.integers(4)),
                    direction=a.direction,
                )
                b.silent = _holes(a.structure, children, noise, rng)
                out.append(b)
        for a in extra_base:
            if rng.random() < 0.7:
                out.append(replace(a, silent=_holes(a.structure, children, noise, rng)))
        anchors[stage] = out
        embryo[stage] = float(rng.beta(1.2, 3.0)) if (chosen and rng.random() < 0.5) else 0.0
    return GeneModel(programs=chosen, anchors=anchors, embryo=embryo)


def _holes(anchor: int, children: list[list[int]], noise: float,
           rng: np.random.Generator) -> tuple[int, ...]:
    """Sub-structures of an anchor this gene leaves unexpressed: more likely the deeper they
    lie below the anchor, so fine levels are harder to predict than coarse ones."""
    holes = []
    kids = children[anchor]
    if kids and rng.random() < 0.35 * noise:
        holes.append(int(rng.choice(kids)))
    stack = [(c, 1) for c in kids if c not in holes]
    while stack:
        t, depth = stack.pop()
        if rng.random() < min(0.5, 0.08 * noise * depth):
            holes.append(t)
            continue
        stack.extend((c, depth + 1) for c in children[t])
    return tuple(sorted(holes))


@dataclass
class Profile:
    """Per-label lookup tables (index = label value: 0 bg, 1 embryo, 2 + s structure s)."""

    intensity: np.ndarray
    density: np.ndarray
    kind: np.ndarray
    center: np.ndarray     # (n, 3) blob centre / gradient origin
    scale: np.ndarray      # blob sigma / gradient half-length
    direction: np.ndarray  # (n, 3)
    owner: np.ndarray      # anchor structure index that set each label (-1: none)


def profile(gene: GeneModel, stage: str, anat: StageAnatomy, subtrees: list[np.ndarray]) -> Profile:
    """Lookup tables of one gene at one stage; the strongest anchor wins where they overlap."""
    n = len(anat.tone)
    inten = np.zeros(n, np.float32)
    dens = np.zeros(n, np.float32)
    kind = np.zeros(n, np.int8)
    center = np.zeros((n, 3), np.float32)
    scale = np.ones(n, np.float32)
    direction = np.zeros((n, 3), np.float32)
    owner = np.full(n, -1, np.int32)
    for a in gene.anchors[stage]:
        labs = subtrees[a.structure] + 2
        if a.silent:
            labs = np.setdiff1d(labs, np.concatenate([subtrees[s] for s in a.silent]) + 2)
        stronger = labs[inten[labs] < a.intensity]
        inten[stronger] = a.intensity
        dens[stronger] = a.density
        kind[stronger] = a.kind
        owner[stronger] = a.structure
        if a.kind == REGIONAL:
            center[stronger] = anat.samples[a.structure, a.blob]
            scale[stronger] = 0.6 * anat.radius[a.structure]
        else:
            center[stronger] = anat.centroid[a.structure]
            scale[stronger] = 1.2 * anat.radius[a.structure]
        direction[stronger] = a.direction
    if gene.embryo[stage] > 0 and anat.has_embryo:
        inten[1] = gene.embryo[stage]
        dens[1] = 0.5
        kind[1] = GRADIENT
        center[1] = (0.5, 0.3, 0.0)
        scale[1] = 0.4
        direction[1] = (1.0, 0.0, 0.0)
    return Profile(inten, dens, kind, center, scale, direction, owner)


def fields(prof: Profile, labels: np.ndarray, xx: np.ndarray, yy: np.ndarray,
           d: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Expression intensity and density maps (same shape as ``labels``), 0 where silent."""
    e = np.zeros(labels.shape, np.float32)
    dd = np.zeros(labels.shape, np.float32)
    on = prof.intensity[labels] > 0
    if not on.any():
        return e, dd
    lab = labels[on]
    shape = labels.shape
    px = np.stack([np.broadcast_to(xx, shape)[on], np.broadcast_to(yy, shape)[on],
                   np.broadcast_to(d, shape)[on]], axis=1)
    rel = px - prof.center[lab]
    k = prof.kind[lab]
    m = np.ones(len(lab), np.float32)
    reg = k == REGIONAL
    if reg.any():
        r2 = (rel[reg] ** 2).sum(1) / (2 * prof.scale[lab[reg]] ** 2)
        m[reg] = np.exp(-r2)
    gra = k == GRADIENT
    if gra.any():
        t = (rel[gra] * prof.direction[lab[gra]]).sum(1) / prof.scale[lab[gra]]
        m[gra] = np.clip(0.5 + t, 0.0, 1.0) ** 1.3
    e[on] = prof.intensity[lab] * m
    dd[on] = prof.density[lab] * np.sqrt(m)
    return e, dd
