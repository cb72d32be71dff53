"""Parameters of the synthetic atlas: one frozen dataclass, two presets.

Every knob that changes how hard the atlas is lives here, so a calibration can turn it and
record the value (see ``docs/synthetic.md``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields, replace
from typing import Any

from ishwh.errors import InvalidInput
from ishwh.vocab import ANNOTATED_STAGES, STAGES

# The stages the warehouse schema accepts, in developmental order (index = id block).
ALL_STAGES = STAGES  # (vocab.STAGES)
# Stages whose sagittal sections show the surrounding embryo (as in the real atlas).
EMBRYO_STAGES = ("E11.5", "E13.5", "E15.5")


@dataclass(frozen=True)
class SynthParams:
    """Everything that defines one synthetic atlas (together with the seed)."""

    name: str
    level_counts: tuple[int, ...]          # structures per ontology level 1..L
    stages: tuple[str, ...]
    n_genes: int
    sections: tuple[int, int] = (15, 20)   # sections per experiment, inclusive range
    image_size: tuple[int, int] = (320, 200)  # width, height of each section image (px)
    n_slices: int = 40                     # anatomy slices across the hemisphere
    n_programs: int = 16                   # shared latent expression programs
    n_gene_tasks: int = 8                  # GO-like gene-level tasks
    ontology_path: str | None = None       # real Allen graph JSON instead of the generated tree
    # --- difficulty knobs (the calibration turns these) ---
    gene_noise: float = 0.5        # gene-specific deviation from its programs (0 = pure programs)
    flip_rate: float = 0.03        # annotator flips per structure call
    faint_dropout: float = 0.5     # chance a faint expression is annotated "undetected"
    nuisance: float = 1.0          # strength of rotation/shift/scale/illumination/artefacts
    stain_contrast: float = 1.0    # optical density of the ISH stain at full intensity
    background_stain: float = 0.12  # max non-specific diffuse stain (per experiment)
    gain_sd: float = 0.3           # experiment-to-experiment staining variability (log sd)
    missing_section_rate: float = 0.04  # chance a section is missing (lost / damaged)
    grid_noise: float = 1.75       # misregistration/blur/noise of the 3-D grid data (0 = truth)
    specimen_warp: float = 0.0     # anatomy of each specimen vs the stage's (section widths, sd)
    annotator_warp: float = 0.01   # annotator's misplacement of structure borders (widths, sd)
    confusion: float = 0.5         # chance a tiny structure is taken for a sibling or cousin
    workers: int = 2               # rendering processes (1 = in-process); not part of the data

    def __post_init__(self) -> None:
        if not self.level_counts or any(int(c) < 1 for c in self.level_counts):
            raise InvalidInput("level_counts must be positive integers, one per level")
        bad = [s for s in self.stages if s not in ALL_STAGES]
        if bad or not self.stages:
            raise InvalidInput(
                f"unknown stage(s) {', '.join(bad) or '(none)'}",
                hint=f"choose from {', '.join(ALL_STAGES)}",
            )
        if self.n_genes < 1:
            raise InvalidInput("genes must be at least 1")
        lo, hi = self.sections
        if not (1 <= lo <= hi <= 60):
            raise InvalidInput("sections must be a range 1 <= min <= max <= 60")
        w, h = self.image_size
        if not (64 <= w <= 4096 and 48 <= h <= 4096):
            raise InvalidInput("image size must be between 64x48 and 4096x4096 pixels")
        if not (0.0 <= self.flip_rate <= 0.5):
            raise InvalidInput("flip_rate must be in 0..0.5")
        if not (0.0 <= self.missing_section_rate <= 0.5):
            raise InvalidInput("missing_section_rate must be in 0..0.5")

    def data_dict(self) -> dict[str, Any]:
        """The parameters that define the data (not ``workers``), JSON-ready."""
        out = {}
        for f in fields(self):
            if f.name == "workers":
                continue
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    def variant(self) -> str:
        """``name`` for a preset as shipped, ``name~<hash>`` when a knob that changes the data
        of an experiment was turned (genes and stages only add experiments)."""
        def identity(p: SynthParams) -> str:
            d = p.data_dict()
            for k in ("n_genes", "stages"):
                d.pop(k)
            return json.dumps(d, sort_keys=True)

        base = PRESETS.get(self.name)
        if base is not None and identity(base) == identity(self):
            return self.name
        return f"{self.name}~{hashlib.sha256(identity(self).encode()).hexdigest()[:8]}"


PRESETS: dict[str, SynthParams] = {
    # Small and fast: the default data of `ishwh demo` (60 structures, 2 stages, 200 experiments).
    "demo": SynthParams(
        name="demo",
        level_counts=(3, 6, 10, 12, 14, 15),
        stages=("E13.5", "E18.5"),
        n_genes=100,
        sections=(15, 17),
        image_size=(320, 200),
        n_slices=32,
        n_programs=14,
        n_gene_tasks=6,
    ),
    # The paper's ontology (structures annotated per level 1..10) and its 4 annotated stages.
    "paper": SynthParams(
        name="paper",
        level_counts=(3, 6, 19, 14, 81, 46, 123, 40, 307, 432),
        stages=ANNOTATED_STAGES,
        n_genes=2000,
        sections=(15, 20),
        image_size=(400, 250),
        n_slices=48,
        n_programs=48,
        n_gene_tasks=20,
    ),
}


def resolve(preset: str | SynthParams = "demo", **overrides: Any) -> SynthParams:
    """A preset by name (or given params) with ``overrides`` applied (``None`` = keep).

    ``genes`` is accepted for ``n_genes``; ``ontology`` for ``ontology_path``.
    """
    if isinstance(preset, SynthParams):
        base = preset
    else:
        if preset not in PRESETS:
            raise InvalidInput(
                f"unknown synthetic preset {preset!r}", hint=f"choose from {', '.join(PRESETS)}"
            )
        base = PRESETS[preset]
    aliases = {"genes": "n_genes", "ontology": "ontology_path"}
    names = {f.name for f in fields(SynthParams)}
    clean: dict[str, Any] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        key = aliases.get(key, key)
        if key not in names:
            raise InvalidInput(f"unknown synthetic parameter {key!r}")
        if key in ("level_counts", "stages", "sections", "image_size"):
            value = tuple(value)
        if key == "ontology_path":
            value = str(value)
        clean[key] = value
    return replace(base, **clean) if clean else base


# The knobs ``--set KEY=VALUE`` may turn (numbers only; sizes and stages have options).
KNOBS = ("gene_noise", "flip_rate", "faint_dropout", "nuisance", "stain_contrast",
         "background_stain", "gain_sd", "missing_section_rate", "grid_noise", "specimen_warp",
         "annotator_warp", "confusion",
         "n_programs", "n_gene_tasks", "n_slices")


def parse_knobs(items: list[str] | None) -> dict[str, float | int]:
    """``["grid_noise=1.8", "n_programs=32"]`` -> ``{"grid_noise": 1.8, "n_programs": 32}``."""
    types = {f.name: f.type for f in fields(SynthParams)}
    out: dict[str, float | int] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in KNOBS:
            raise InvalidInput(f"cannot set {item!r}",
                               hint=f"use KEY=NUMBER with KEY one of {', '.join(KNOBS)}")
        try:
            out[key] = int(value) if types[key] in (int, "int") else float(value)
        except ValueError:
            raise InvalidInput(f"cannot set {item!r}: {value.strip()!r} is not a number") from None
    return out

