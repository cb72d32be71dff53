"""The manifest's plan: every file read and checked against the warehouse, nothing written.
A :class:`Plan` holds the rows to load, the images to place, the stage references, and every
problem found (then nothing is loaded)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from ishwh.errors import IshwhError
from ishwh.manifest.annotations import annotations_rows, gene_label_rows
from ishwh.manifest.csvfiles import STAGE_BY_KEY, Problems, WarehouseView, table
from ishwh.manifest.sections import SectionsFile, check_experiments, section_rows
from ishwh.manifest.structures import check_structures, ontology_rows
from ishwh.progress import Progress
from ishwh.vocab import STAGES


@dataclass
class Plan:
    """A checked manifest: the rows to load and the image files to place."""

    folder: Path
    tables: dict[str, pa.Table] = field(default_factory=dict)
    images: dict[str, Path] = field(default_factory=dict)  # sha256 -> source file
    problems: Problems = field(default_factory=Problems)
    # stage -> (annotation volume, spacing_um, file name): reference/<STAGE>.npz|.mhd
    references: dict[str, tuple[Any, float | None, str]] = field(default_factory=dict)


def plan(
    con: duckdb.DuckDBPyConnection, folder: str | os.PathLike, *,
    progress: Progress | None = None,
) -> Plan:
    """Read and check a manifest folder against the warehouse; write nothing.

    Returns a :class:`Plan` whose ``problems`` lists every problem found (empty = loadable).
    """
    folder = Path(folder)
    result = Plan(folder)
    problems = result.problems
    if not folder.is_dir():
        problems.add(str(folder), "not a folder")
        return result
    wh = WarehouseView.read(con)
    # A file that could not be read at all is a root cause: the rows that name its
    # structures (or experiments, genes) are not listed one by one after it.
    broken: dict[str, str] = {}

    # ---- ontology
    n_problems = len(problems)
    onto_name, onto_rows, roots = ontology_rows(folder, problems)
    if onto_name is not None and not onto_rows and len(problems) > n_problems:
        broken["unknown structure"] = onto_name
    if onto_name is None and not wh.structures:
        problems.add(str(folder), "no ontology.json or structures.csv (and the warehouse "
                                  "has no structures yet)")
    structures = check_structures(onto_rows, roots, wh, problems)
    all_structures = {**{s: v[0] for s, v in wh.structures.items()},
                      **{s: r["acronym"] for s, r in structures.items()}}
    by_acronym: dict[str, list[int]] = {}
    for sid, acr in all_structures.items():
        by_acronym.setdefault(acr, []).append(sid)

    # ---- sections: genes, experiments, sections, then against the warehouse
    sf = SectionsFile.read(folder, wh, problems)
    if sf.unreadable:
        broken["unknown experiment"] = broken["unknown gene"] = sf.NAME
    sf.check_images(progress)
    check_experiments(con, sf.experiments, sf.genes, problems)
    sections = section_rows(con, sf.sections, problems)

    # ---- annotations
    before = len(problems)
    ann_rows = annotations_rows(con, folder, sf.experiments, all_structures, by_acronym,
                                problems)
    label_rows = gene_label_rows(con, folder, sf.genes, wh, problems)
    fold_consequences(problems, before, broken)
    result.references = references(folder, set(all_structures), problems)

    if problems:
        return result
    source = f"dir:{folder.resolve()}"
    result.tables = {
        "genes": table("genes", list(sf.genes.values())),
        "structures": table("structures", list(structures.values())),
        "experiments": table("experiments", [
            {**e, "gene_id": sf.genes[e["gene"]]["gene_id"], "source": source}
            for e in sf.experiments.values()
        ]),
        "sections": table("sections", sections),
        "annotations": ann_rows,
        "gene_labels": table("gene_labels", label_rows),
    }
    result.images = {s["image"].sha256: s["image"].src for s in sf.sections.values()}
    return result


def fold_consequences(problems: Problems, start: int, broken: dict[str, str]) -> None:
    """Replace the problems (from ``start`` on) that only follow from an unreadable file by
    one line per file that says how many there were."""
    if not broken:
        return
    kept, folded = [], {}
    for p in problems[start:]:
        reason = p.split(": ", 1)[1] if ": " in p else p
        cause = next((f for key, f in broken.items() if reason.startswith(key)), None)
        if cause is None:
            kept.append(p)
        else:
            where = p.split(":", 1)[0]
            folded[(where, cause)] = folded.get((where, cause), 0) + 1
    del problems[start:]
    problems.extend(kept)
    for (where, cause), n in folded.items():
        problems.add(where, f"{n:,} row(s) name structures, experiments or genes that "
                            f"{cause} should have defined; fix {cause} first (not listed)")


def references(folder: Path, known: set[int], problems: Problems
                ) -> dict[str, tuple[Any, float | None, str]]:
    """Read and check ``reference/<STAGE>.npz`` or ``.mhd`` (optional)."""
    from ishwh.atlas import reference as ref_mod  # noqa: PLC0415

    out: dict[str, tuple[Any, float | None, str]] = {}
    ref_dir = folder / "reference"
    if not ref_dir.is_dir():
        return out
    for path in sorted(ref_dir.iterdir()):
        if path.suffix.lower() not in (".npz", ".mhd"):
            continue
        where = f"reference/{path.name}"
        stage = STAGE_BY_KEY.get(path.stem.upper())
        if stage is None:
            problems.add(where, f"unknown stage {path.stem!r} (one of: {', '.join(STAGES)})")
            continue
        if stage in out:
            problems.add(where, f"a second reference of stage {stage}")
            continue
        try:
            vol, spacing = ref_mod.read_reference_file(path)
            ref_mod.check_ids(vol, known, where)
        except IshwhError as exc:
            problems.add(where, exc.message.removeprefix(f"{where}: ")
                         .removeprefix(f"{path.name}: "))
            continue
        out[stage] = (vol, spacing, path.name)
    return out
