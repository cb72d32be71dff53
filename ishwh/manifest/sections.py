"""The manifest's ``sections.csv``: genes, experiments and sections read row by row (ids,
stages, positions, images confined to the folder), the images decoded and checksummed, and
everything checked against the warehouse (clashing experiments, sections, derived ids)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from ishwh import images
from ishwh.errors import IshwhError
from ishwh.ids import SECTION_ID_FACTOR, section_id
from ishwh.manifest.csvfiles import (
    SECTIONS_COLUMNS,
    STAGE_BY_KEY,
    Problems,
    WarehouseView,
    at,
    parse_int,
    read_csv,
)
from ishwh.progress import Progress, phase
from ishwh.store import registered
from ishwh.vocab import STAGES

# Manifest genes get ids above this: Allen gene ids and the synthetic atlas's (90,000,000 + i)
# lie below it, so one warehouse can hold all three.
GENE_ID_BASE = 2_000_000_000

# Largest |experiment_id| whose derived section ids still fit a signed 64-bit integer.
MAX_EXPERIMENT_ID = (2**63 - 1 - (SECTION_ID_FACTOR - 1)) // SECTION_ID_FACTOR


@dataclass
class SectionImage:
    """An image named on a line of sections.csv; its size and checksum once decoded."""

    line: int
    src: Path
    text: str  # the path as written in sections.csv
    width: int = 0
    height: int = 0
    sha256: str = ""
    error: str | None = None


@dataclass
class SectionsFile:
    """What ``sections.csv`` defines, row by row (see :meth:`read`)."""

    folder: Path
    wh: WarehouseView
    problems: Problems
    genes: dict[str, dict[str, Any]] = field(default_factory=dict)  # acronym -> row (+ line)
    experiments: dict[int, dict[str, Any]] = field(default_factory=dict)
    sections: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    images: list[SectionImage] = field(default_factory=list)
    unreadable: bool = False  # the file exists but could not be read at all
    next_gene_id: int = 0

    NAME = "sections.csv"

    @classmethod
    def read(cls, folder: Path, wh: WarehouseView, problems: Problems) -> SectionsFile:
        """Read and check every row (images not decoded yet: :func:`decode_images`)."""
        out = cls(folder, wh, problems, next_gene_id=max(wh.max_gene_id, GENE_ID_BASE) + 1)
        if not (folder / cls.NAME).is_file():
            problems.add(str(folder), "no sections.csv")
            return out
        n_problems = len(problems)
        rows = read_csv(folder, cls.NAME, SECTIONS_COLUMNS, problems) or []
        out.unreadable = not rows and len(problems) > n_problems
        for line, row in rows:
            out._row(line, row)
        return out

    def _row(self, line: int, row: dict[str, str]) -> None:
        where = at(self.NAME, line)
        gene = row["gene"]
        stage, eid, num, position = self._fields(where, row)
        if gene:
            self._gene(where, line, gene, row.get("gene_name") or None)
        if eid is not None and gene and stage:
            self._experiment(where, line, eid, gene, stage)
        if eid is not None and num is not None:
            key = (eid, num)
            if key in self.sections:
                self.problems.add(where, f"duplicate section: experiment {eid} section {num} "
                                         f"is also on line {self.sections[key]['line']}")
                return
            self.sections[key] = {"experiment_id": eid, "section_number": num,
                                  "position": position, "line": line}
        img = self._image(where, line, row["image"])
        if img is not None and eid is not None and num is not None:
            self.sections[(eid, num)]["image"] = img

    def _fields(self, where: str, row: dict[str, str]
                ) -> tuple[str | None, int | None, int | None, float | None]:
        """Stage, experiment id, section number and position of a row (None: bad/absent)."""
        problems = self.problems
        stage = STAGE_BY_KEY.get(row["stage"].upper())
        eid = parse_int(row["experiment_id"])
        num = parse_int(row["section_number"])
        if not row["gene"]:
            problems.add(where, "empty gene")
        if stage is None:
            problems.add(where, f"unknown stage {row['stage']!r} (one of: {', '.join(STAGES)})")
        if eid is None:
            problems.add(where, f"experiment_id {row['experiment_id']!r} is not an integer")
        elif not -MAX_EXPERIMENT_ID <= eid <= MAX_EXPERIMENT_ID:
            problems.add(where, f"experiment_id {eid} is out of range (at most "
                                f"{MAX_EXPERIMENT_ID:,}: section ids are experiment_id x "
                                f"{SECTION_ID_FACTOR:,} + section_number, a 64-bit integer)")
            eid = None
        if num is None or not 0 <= num < SECTION_ID_FACTOR:
            problems.add(where, f"section_number {row['section_number']!r} is not an integer "
                                f"in 0..{SECTION_ID_FACTOR - 1}")
            num = None
        position = None
        if row.get("position"):
            try:
                position = float(row["position"])
            except ValueError:
                position = -1.0
            if not 0.0 <= position <= 1.0:
                problems.add(where, f"position {row['position']!r} is not a number in 0..1")
                position = None
        return stage, eid, num, position

    def _gene(self, where: str, line: int, gene: str, gname: str | None) -> None:
        """A gene symbol (+ optional name): its id (known or new), and names that agree."""
        g = self.genes.get(gene)
        if g is None:
            old = self.wh.genes.get(gene)
            if old is None:
                g = {"gene_id": self.next_gene_id, "name": None}
                self.next_gene_id += 1
            else:  # a known gene keeps its id; its name is the one to agree with
                g = {"gene_id": old[0], "name": old[1]}
            g = self.genes[gene] = {**g, "acronym": gene, "line": None}
        if gname:
            if g["name"] is None:
                g["name"], g["line"] = gname, line
            elif g["name"] != gname:
                seen = "in the warehouse" if g["line"] is None else f"on line {g['line']}"
                self.problems.add(where, f"gene {gene} is named {gname!r} here but "
                                         f"{g['name']!r} {seen}")

    def _experiment(self, where: str, line: int, eid: int, gene: str, stage: str) -> None:
        e = self.experiments.get(eid)
        if e is None:
            self.experiments[eid] = {"experiment_id": eid, "gene": gene, "stage": stage,
                                     "line": line}
        elif (e["gene"], e["stage"]) != (gene, stage):
            self.problems.add(where, f"experiment {eid} is listed as {gene} {stage} here but "
                                     f"as {e['gene']} {e['stage']} on line {e['line']}")

    def _image(self, where: str, line: int, text: str) -> SectionImage | None:
        if not text:
            self.problems.add(where, "empty image")
            return None
        src, reason = confined(self.folder, text)
        if reason is not None:
            self.problems.add(where, f"image {text} {reason}")
            return None
        img = SectionImage(line, src, text)
        self.images.append(img)
        return img

    def check_images(self, progress: Progress | None) -> None:
        """Decode and checksum every image; name the unreadable ones."""
        decode_images(self.images, progress)
        for img in self.images:
            if img.error:
                self.problems.add(at(self.NAME, img.line), f"image {img.text}: {img.error}")


def decode_images(
    todo: list[SectionImage], progress: Progress | None, workers: int | None = None
) -> None:
    """Decode (proves readability, gives the size) and checksum every image, in threads."""
    def one(img: SectionImage) -> SectionImage:
        try:
            img.width, img.height = images.image_size(img.src)
            img.sha256 = images.sha256_file(img.src)
        except images.ImageTooLarge as exc:
            img.error = exc.reason
        except IshwhError:
            img.error = "not a readable PNG, JPEG or TIFF image"
        except OSError as exc:
            img.error = f"cannot read the image: {exc.strerror or exc}"
        except Exception as exc:  # a decoder failure is a bad row, not a crash
            img.error = f"cannot decode the image: {type(exc).__name__}: {exc}"
        return img

    workers = workers or min(4, os.cpu_count() or 1)  # cv2 decodes outside the GIL
    with phase(progress, "checking images", len(todo), "images") as advance, \
            ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(one, todo):
            advance(1)


def confined(folder: Path, text: str) -> tuple[Path, str | None]:
    """The real file an image path names, or the reason it may not be used.

    The rule: the path is relative to the manifest folder and, as written, stays inside it
    (no absolute path, no ``..`` that climbs out). A symbolic link inside the folder is the
    folder owner's choice: it is followed, and its real file is what gets copied or linked
    (so a stored link never points at another link).
    """
    rel = Path(text)
    drive = len(text) > 2 and text[1] == ":" and text[2] in "/\\"  # C:\ on Windows
    if rel.is_absolute() or text.startswith(("/", "\\")) or drive:
        return rel, "is an absolute path (give a path relative to the manifest folder)"
    if os.path.normpath(text).replace("\\", "/").split("/")[0] == "..":
        return rel, "leads outside the manifest folder (images must lie inside it)"
    src = folder / rel
    try:
        real = src.resolve(strict=True)
    except FileNotFoundError:
        return rel, "not found" if not src.is_symlink() else "is a link to a missing file"
    except (OSError, RuntimeError) as exc:  # a symlink loop, a permission problem
        return rel, f"cannot be resolved ({getattr(exc, 'strerror', None) or exc})"
    if not real.is_file():
        return rel, "not found" if not real.exists() else "is not a file"
    return real, None


def check_experiments(
    con: duckdb.DuckDBPyConnection, experiments: dict[int, dict[str, Any]],
    genes: dict[str, dict[str, Any]], problems: Problems,
) -> None:
    if not experiments:
        return
    new = pa.table({
        "experiment_id": pa.array(list(experiments), pa.int64()),
        "acronym": [e["gene"] for e in experiments.values()],
        "stage": [e["stage"] for e in experiments.values()],
        "line": [e["line"] for e in experiments.values()],
    })
    with registered(con, new, "_ishwh_exp"):
        clashes = con.execute(
            """
            select n.line, n.experiment_id, g.acronym, e.stage
            from _ishwh_exp n join experiments e using (experiment_id)
            left join genes g on g.gene_id = e.gene_id
            where g.acronym is distinct from n.acronym or e.stage <> n.stage
            order by n.line
            """
        ).fetchall()
    for line, eid, acr, stage in clashes:
        problems.add(at("sections.csv", line),
                     f"experiment {eid} is already in the warehouse as {acr} {stage}")


def section_rows(
    con: duckdb.DuckDBPyConnection, sections: dict[tuple[int, int], dict[str, Any]],
    problems: Problems,
) -> list[dict[str, Any]]:
    """Give every section its id (existing or derived) and check it against the warehouse."""
    usable = {k: s for k, s in sections.items() if "image" in s and not s["image"].error}
    if not usable:
        return []
    keys = list(usable)
    new = pa.table({
        "experiment_id": pa.array([k[0] for k in keys], pa.int64()),
        "section_number": pa.array([k[1] for k in keys], pa.int32()),
        "derived_id": pa.array([section_id(*k) for k in keys], pa.int64()),
        "sha256": [usable[k]["image"].sha256 for k in keys],
    })
    with registered(con, new, "_ishwh_sec"):
        same_key = con.execute(
            """
            select n.experiment_id, n.section_number, s.section_id, s.sha256
            from _ishwh_sec n join sections s using (experiment_id, section_number)
            """
        ).fetchall()
        taken = con.execute(
            """
            select n.experiment_id, n.section_number, s.experiment_id, s.section_number
            from _ishwh_sec n join sections s on s.section_id = n.derived_id
            where (s.experiment_id, s.section_number) <> (n.experiment_id, n.section_number)
            """
        ).fetchall()
    existing = {(e, n): (sid, sha) for e, n, sid, sha in same_key}
    out = []
    for (eid, num), s in usable.items():
        img: SectionImage = s["image"]
        where = at("sections.csv", s["line"])
        if (eid, num) in existing:
            sid, sha = existing[(eid, num)]
            if sha is not None and sha != img.sha256:
                problems.add(where, f"experiment {eid} section {num} is already in the "
                                    "warehouse with a different image")
        else:
            sid = section_id(eid, num)
        out.append({"section_id": sid, "experiment_id": eid, "section_number": num,
                    "image_path": images.content_relpath(img.src, img.sha256),
                    "width": img.width, "height": img.height, "position": s["position"],
                    "sha256": img.sha256})
    for eid, num, oe, on in taken:
        if (eid, num) not in existing:
            problems.add(
                at("sections.csv", usable[(eid, num)]["line"]),
                f"section id {section_id(eid, num)} (experiment {eid} section {num}) "
                f"is already used by experiment {oe} section {on} in the warehouse",
            )
    return out
