"""The words of the domain, in one place: stages, annotation grades, targets, ontology levels.

Every module (and, through the ``stages`` table laid by ``migrations/0002_stages.sql``, every
SQL view) takes these from here instead of writing the lists out again.
"""

from __future__ import annotations

from ishwh.errors import InvalidInput

#: Developmental stages the warehouse accepts, in developmental order.
STAGES: tuple[str, ...] = ("E11.5", "E13.5", "E15.5", "E18.5", "P4", "P14", "P28", "P56")
#: The stages of the Allen Developing Mouse Brain Atlas (P56 belongs to the adult atlas).
DEVMOUSE_STAGES: tuple[str, ...] = STAGES[:7]
#: The stages the Allen experts annotated (the paper's four); the others are to be predicted.
ANNOTATED_STAGES: tuple[str, ...] = ("E11.5", "E13.5", "E15.5", "E18.5")
#: Stages whose sagittal sections show the surrounding embryo around the brain (Allen's
#: reference spaces 1-3, anatomy "Embryo"); registration must find the brain inside it.
EMBRYO_STAGES: tuple[str, ...] = ("E11.5", "E13.5", "E15.5")
#: Stages without expert annotations in the developing atlas.
UNANNOTATED_STAGES: tuple[str, ...] = tuple(s for s in STAGES if s not in ANNOTATED_STAGES)

#: Expression pattern calls (nominal), ``undetected`` first.
PATTERNS: tuple[str, ...] = ("undetected", "full", "regional", "gradient")
#: Intensity and density grades (ordinal), lowest first.
GRADES: tuple[str, ...] = ("undetected", "low", "medium", "high")
#: What a classifier can be trained to predict per structure.
TARGETS: tuple[str, ...] = ("detected", "pattern", "intensity", "density")
#: What a run's tasks are: structures (annotations), genes (gene-level labels) or both.
TASK_KINDS: tuple[str, ...] = ("structures", "genes", "all")

#: Ontology levels (Allen ``st_level``) the paper evaluates.
PAPER_LEVELS: tuple[int, ...] = tuple(range(1, 11))


def stage_order(stage: str) -> int:
    """Position of ``stage`` in developmental order (0 = E11.5)."""
    return STAGES.index(check_stage(stage))


def check_stage(stage: str, allowed: tuple[str, ...] = STAGES, what: str = "stage") -> str:
    """Return ``stage`` if it is one of ``allowed``, else raise :class:`InvalidInput`."""
    if stage not in allowed:
        raise InvalidInput(f"unknown {what} {stage!r}", hint=f"choose from {', '.join(allowed)}",
                           param="stage")
    return stage


def stage_key(stage: str) -> int:
    """Sort key of a stage: its developmental position (unknown names after all stages)."""
    return STAGES.index(stage) if stage in STAGES else len(STAGES)


def sort_stages(stages) -> list[str]:
    """``stages`` in developmental order (unknown names last, alphabetically)."""
    return sorted(stages, key=lambda s: (stage_key(s), s))
