"""URLs and RMA statements for the Allen Brain Atlas API (api.brain-map.org).

RMA ("RESTful Model Access") statements look like
``model::SectionDataSet,rma::criteria,[failed$eqfalse],products[id$eq3],rma::include,genes,
rma::options[num_rows$eq2000][start_row$eq0][order$eq'data_sets.id']`` and are sent as
``/api/v2/data/query.json?criteria=<statement>``. A response is
``{"success": true, "id": 0, "start_row": N, "num_rows": n, "total_rows": M, "msg": [...]}``
(on failure ``success`` is false and ``msg`` is a string); a query is paged with
``start_row``/``num_rows`` until ``total_rows`` rows were seen.

The sort key is table-qualified (``data_sets.id`` rather than ``id``) because criteria on
associations (products, specimen, donor, age) join other tables whose ``id`` would make a
bare ``id`` ambiguous; AllenSDK orders the same way (``'structures.graph_order'``). The
table names come from the API schema (``api/v2/data.json``).
"""

from __future__ import annotations

from dataclasses import dataclass

# Stage names as the API's ``Age.name`` spells them (and as the warehouse stores them);
# P56 data sets belong to the adult product as well: allowed, not a default.
from ishwh.vocab import DEVMOUSE_STAGES, STAGES  # noqa: F401  (re-exported: q.STAGES)

API_BASE = "http://api.brain-map.org"
DOWNLOAD_BASE = "http://download.alleninstitute.org"

#: Product 3 = "Developing Mouse Brain" (abbreviation DevMouse).
DEVMOUSE_PRODUCT_ID = 3
#: Structure graph 17 = the Developing Mouse ontology (root 15564).
DEVMOUSE_GRAPH_ID = 17
#: Largest page the API serves.
PAGE_SIZE = 2000

#: RMA model -> SQL table (for the ``order`` option).
MODEL_TABLES = {
    "SectionDataSet": "data_sets",
    "SectionImage": "sub_images",
    "ManualAnnotation": "manual_annotations",
    "Structure": "structures",
    "Gene": "genes",
}

#: The grid annotation volume of each stage (structure id per grid voxel), per the download
#: site's ``mouse_annotation`` folder (stage "E11.5" -> "E11pt5").
GRID_ANNOTATION_PATH = (
    "/informatics-archive/current-release/mouse_annotation/{tag}_DevMouse2012_gridAnnotation.zip"
)

#: Grid size (x, y, z) and spacing (µm) per stage (gridAnnotation_details.csv of the ADA).
GRID_SHAPES: dict[str, tuple[tuple[int, int, int], float]] = {
    "E11.5": ((70, 75, 40), 80.0),
    "E13.5": ((89, 109, 69), 100.0),
    "E15.5": ((94, 132, 65), 120.0),
    "E18.5": ((67, 43, 40), 140.0),
    "P4": ((77, 43, 50), 160.0),
    "P14": ((68, 40, 50), 200.0),
    "P28": ((73, 41, 53), 200.0),
    "P56": ((67, 41, 58), 200.0),
}


def _quoted(values: list[str] | tuple[str, ...]) -> str:
    for v in values:
        if "'" in v or "," in v:
            raise ValueError(f"value {v!r} cannot be used in an RMA criterion")
    return ",".join(f"'{v}'" for v in values)


@dataclass(frozen=True)
class Rma:
    """One RMA query; :meth:`url` renders one page of it."""

    model: str
    criteria: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    order: str | None = None

    def statement(self, start_row: int = 0, num_rows: int = PAGE_SIZE) -> str:
        parts = [f"model::{self.model}"]
        if self.criteria:
            parts.append("rma::criteria")
            parts.extend(self.criteria)
        if self.include:
            parts.append("rma::include")
            parts.extend(self.include)
        order = self.order or f"{MODEL_TABLES.get(self.model, self.model.lower())}.id"
        parts.append(
            f"rma::options[num_rows$eq{num_rows}][start_row$eq{start_row}][order$eq'{order}']"
        )
        return ",".join(parts)

    def url(self, base: str = API_BASE, start_row: int = 0, num_rows: int = PAGE_SIZE) -> str:
        return f"{base}/api/v2/data/query.json?criteria={self.statement(start_row, num_rows)}"


def section_data_sets(
    stages: list[str] | tuple[str, ...],
    genes: list[str] | tuple[str, ...] | None = None,
    *,
    product_id: int = DEVMOUSE_PRODUCT_ID,
    plane: str = "sagittal",
    delegate_only: bool = False,
) -> Rma:
    """Sagittal ISH experiments of the DevMouse product at ``stages`` (optionally only
    ``genes``), with their gene, age and plane included."""
    criteria = [
        "[failed$eqfalse]",
        f"products[id$eq{product_id}]",
        "treatments[name$eq'ISH']",
        f"plane_of_section[name$eq'{plane}']",
        f"specimen(donor(age[name$in{_quoted(list(stages))}]))",
    ]
    if delegate_only:
        criteria.insert(1, "[delegate$eqtrue]")
    if genes:
        criteria.append(f"genes[acronym$in{_quoted(list(genes))}]")
    return Rma(
        "SectionDataSet",
        tuple(criteria),
        include=("genes", "specimen(donor(age))", "plane_of_section"),
    )


def section_images(data_set_id: int) -> Rma:
    """The section images of one experiment, in section order."""
    return Rma(
        "SectionImage",
        (f"[data_set_id$eq{int(data_set_id)}]",),
        order="sub_images.section_number",
    )


def manual_annotations(data_set_id: int) -> Rma:
    """The expert annotations (pattern/intensity/density per structure) of one experiment."""
    return Rma("ManualAnnotation", (f"[section_data_set_id$eq{int(data_set_id)}]",))


def structures(graph_id: int = DEVMOUSE_GRAPH_ID) -> Rma:
    """The flat form of an ontology (one ``Structure`` row per node)."""
    return Rma("Structure", (f"[graph_id$eq{int(graph_id)}]",), order="structures.graph_order")


def structure_graph_url(base: str = API_BASE, graph_id: int = DEVMOUSE_GRAPH_ID) -> str:
    """The nested ontology: ``msg`` holds the root with ``children``."""
    return f"{base}/api/v2/structure_graph_download/{int(graph_id)}.json"


def section_image_url(section_image_id: int, downsample: int, base: str = API_BASE) -> str:
    """A section image as JPEG; each downsample step halves both sides."""
    sid, n = int(section_image_id), int(downsample)
    return f"{base}/api/v2/section_image_download/{sid}?downsample={n}"


def grid_data_url(data_set_id: int, include: tuple[str, ...] = ("energy",),
                  base: str = API_BASE) -> str:
    """A zip of ``{vol}.mhd`` + ``{vol}.raw`` per included volume, plus ``data_set.xml``."""
    return f"{base}/grid_data/download/{int(data_set_id)}?include={','.join(include)}"


def grid_annotation_url(stage: str, base: str = DOWNLOAD_BASE) -> str:
    """The zip with the stage's grid annotation volume (structure id per voxel)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}")
    return base + GRID_ANNOTATION_PATH.format(tag=stage.replace(".", "pt"))
