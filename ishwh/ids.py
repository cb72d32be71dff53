"""Ids a source makes up itself: the one rule for derived section ids.

The Allen API names its sections; a manifest folder and the synthetic atlas name a section
only by ``(experiment_id, section_number)``, so its id is derived from the two:
``experiment_id * factor + section_number``.

* Manifest folders (and so ``ishwh synth write`` + ``ishwh ingest dir``): ``factor`` =
  :data:`SECTION_ID_FACTOR` = 10,000, section numbers 0..9,999.
* The synthetic atlas ingested directly (``ishwh ingest synthetic``):
  :data:`SYNTHETIC_SECTION_FACTOR` = 100 (its experiments have fewer than 100 sections).
  It keeps the factor it always had: the bag-of-words codebook sample is seeded by section
  id, so another factor would change the features (and Table 1) of every synthetic
  warehouse, and a resumed ingest would no longer match the ids already stored.
"""

from __future__ import annotations

SECTION_ID_FACTOR = 10_000
SYNTHETIC_SECTION_FACTOR = 100


def section_id(experiment_id: int, section_number: int, factor: int = SECTION_ID_FACTOR) -> int:
    """The derived id of section ``section_number`` (0 <= number < ``factor``) of an
    experiment."""
    if not 0 <= section_number < factor:
        raise ValueError(f"section number {section_number} is outside 0..{factor - 1}")
    return int(experiment_id) * factor + int(section_number)
