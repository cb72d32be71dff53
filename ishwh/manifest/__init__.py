"""Ingesting a manifest folder (the contract of ``ishwh ingest dir PATH``).

A manifest folder holds::

    ontology.json      Allen structure-graph JSON (nested ``children``)   } one of
    structures.csv     structure_id,acronym,name,parent_id,level           } the two
    sections.csv       gene,stage,experiment_id,section_number,image[,position][,gene_name]
    annotations.csv    experiment_id,structure,pattern,intensity,density   (optional)
    gene_labels.csv    gene,task,label                                     (optional)

Ingesting is all-or-nothing: every file is read and every row checked (images decoded and
checksummed) *before* anything is written. Every problem is collected as
``file:line: reason`` and raised together as :class:`~ishwh.errors.ManifestError`; then the
warehouse is untouched. A clean manifest is loaded with :func:`ishwh.loader.load`, which adds
only rows whose key is new, so re-ingesting a folder adds nothing and a folder that extends
an earlier one adds only its new rows.

Ids (a manifest names genes by symbol and sections by number only):

* ``gene_id``: the id of the warehouse gene with the same acronym; new genes get
  ``max(gene_id, GENE_ID_BASE) + 1, + 2, ...`` in order of first appearance in
  ``sections.csv`` (above the ids the Allen and synthetic atlases use, so a warehouse may
  mix them).
* ``section_id``: the id of the warehouse section with the same
  ``(experiment_id, section_number)``; new sections get
  ``experiment_id * 10_000 + section_number`` (so ``section_number`` must be 0..9999;
  the rule lives in :mod:`ishwh.ids`).

Where each part lives: :mod:`.csvfiles` (reading the CSV files, problems, loader schemas),
:mod:`.structures` (the ontology), :mod:`.sections` (genes, experiments, sections, images),
:mod:`.annotations` (annotations and gene labels), :mod:`.planning` (:func:`plan`: all of it
checked, nothing written), :mod:`.ingest` (:func:`ingest_dir`: check, then load).
"""

from ishwh.manifest.csvfiles import (
    ANNOTATIONS_COLUMNS,
    GENE_LABELS_COLUMNS,
    SECTIONS_COLUMNS,
    STRUCTURES_COLUMNS,
)
from ishwh.manifest.ingest import ingest_dir
from ishwh.manifest.planning import Plan, plan
from ishwh.manifest.sections import GENE_ID_BASE, MAX_EXPERIMENT_ID

__all__ = ["ANNOTATIONS_COLUMNS", "GENE_ID_BASE", "GENE_LABELS_COLUMNS", "MAX_EXPERIMENT_ID",
           "SECTIONS_COLUMNS", "STRUCTURES_COLUMNS", "Plan", "ingest_dir", "plan"]
