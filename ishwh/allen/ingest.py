"""Ingest the Allen Developing Mouse Brain Atlas into a warehouse.

Phases, each reported on ``progress`` (:class:`ishwh.progress.Progress`):

1. ontology: ``structure_graph_download/17.json`` -> ``structures``;
2. experiments: sagittal ISH ``SectionDataSet``s of the DevMouse product at the chosen
   stages -> ``genes`` and ``experiments`` (one experiment per gene and stage: the API's
   ``delegate`` one if there are several, else the lowest id);
3. sections: ``SectionImage``s of each experiment, each image downloaded at ``downsample``
   and stored content-addressed in the warehouse's image folder -> ``sections``;
4. annotations: ``ManualAnnotation``s -> ``annotations`` (lower-case enums; "Cannot
   Annotate" and empty -> NULL = unknown); calls on structures outside the ontology are
   reported, not loaded;
5. grids (``grid=True``): the ``energy`` volume of ``grid_data/download`` -> ``expression_grids``.

Every response is cached (:class:`~ishwh.allen.client.AllenClient`), each experiment's rows
are loaded in one transaction and :func:`ishwh.loader.load` only adds new keys, so a killed
run resumes where it stopped and a repeated run changes nothing and asks the network nothing.
"""

from __future__ import annotations

import functools
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa

from ishwh import loader, warehouse
from ishwh.allen import queries as q
from ishwh.allen.client import AllenClient, Unreachable
from ishwh.allen.positions import section_positions
from ishwh.allen.readers import Volume, read_grid_annotation, read_grid_zip, read_ontology
from ishwh.errors import InvalidInput, IshwhError, NotFound
from ishwh.images import image_size, place_image, sha256_file
from ishwh.progress import Progress, phase
from ishwh.query import query_text
from ishwh.vocab import GRADES, PATTERNS

#: Allen values that mean "no call was made" -> NULL (unknown), never "undetected".
UNKNOWN_CALLS = ("", "cannot annotate", "n/a", "na", "none", "null")

_LOAD_EVERY = 25  # experiments per transaction in the annotation and grid phases
_GENES_PER_QUERY = 100  # gene acronyms per SectionDataSet query (keeps URLs short)


def normalise_call(value: Any, allowed: tuple[str, ...]) -> tuple[str | None, bool]:
    """``("Medium", GRADES) -> ("medium", True)``; unknown calls -> ``(None, True)``;
    a value outside ``allowed`` -> ``(None, False)`` (reported by the caller)."""
    if value is None:
        return None, True
    v = str(value).strip().lower()
    if v in UNKNOWN_CALLS:
        return None, True
    if v in allowed:
        return v, True
    return None, False


# --------------------------------------------------------------------------- progress


class _Phases:
    """The phases of an ingest on a :class:`~ishwh.progress.Progress`, one after another."""

    def __init__(self, progress: Progress | None):
        self.progress = progress

    def __enter__(self) -> _Phases:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def phase(self, name: str, total: int | None):
        return phase(self.progress, name, total or 0)


# --------------------------------------------------------------------------- helpers


def _pick_experiments(
    records: list[dict[str, Any]], stages: list[str]
) -> tuple[dict[int, dict[str, Any]], list[dict[str, Any]], int]:
    """Genes (by id) and one experiment row per gene x stage; also the number dropped."""
    genes: dict[int, dict[str, Any]] = {}
    chosen: dict[tuple[int, str], dict[str, Any]] = {}
    for rec in sorted(records, key=lambda r: (not r.get("delegate"), int(r["id"]))):
        if rec.get("failed"):
            continue
        age = ((rec.get("specimen") or {}).get("donor") or {}).get("age") or {}
        stage = age.get("name")
        gene_list = rec.get("genes") or []
        if stage not in stages or not gene_list:
            continue
        g = gene_list[0]  # DevMouse ISH data sets have one probe gene
        gid = int(g["id"])
        genes.setdefault(gid, {
            "gene_id": gid, "acronym": g.get("acronym") or str(gid), "name": g.get("name"),
            "entrez_id": None if g.get("entrez_id") in (None, "") else int(g["entrez_id"]),
        })
        plane = ((rec.get("plane_of_section") or {}).get("name") or "sagittal").lower()
        chosen.setdefault((gid, stage), {
            "experiment_id": int(rec["id"]), "gene_id": gid, "stage": stage,
            "plane": plane, "source": "allen",
        })
    experiments = sorted(chosen.values(), key=lambda e: e["experiment_id"])
    n_candidates = sum(1 for r in records if not r.get("failed"))
    return genes, experiments, n_candidates - len(experiments)


def _experiment_records(client: AllenClient, stages: list[str],
                        genes: list[str] | None) -> list[dict[str, Any]]:
    """The SectionDataSet rows; a long gene list is asked for in chunks so that no URL
    grows past what web servers accept (~8 KB)."""
    if not genes:
        return client.rma(q.section_data_sets(stages))
    by_id: dict[int, dict[str, Any]] = {}
    for i in range(0, len(genes), _GENES_PER_QUERY):
        for rec in client.rma(q.section_data_sets(stages, genes[i:i + _GENES_PER_QUERY])):
            by_id.setdefault(int(rec["id"]), rec)
    return list(by_id.values())


def _parallel(
    fn: Callable[[Any], Any], items: Iterable[Any], workers: int
) -> Iterator[tuple[Any, Any, BaseException | None]]:
    """Yield ``(item, result, error)`` as tasks finish, keeping at most ``2*workers``
    submitted (so a long list does not queue everything at once)."""
    items = iter(items)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: dict[Future, Any] = {}
        try:
            while True:
                while len(pending) < 2 * workers:
                    try:
                        item = next(items)
                    except StopIteration:
                        break
                    pending[pool.submit(fn, item)] = item
                if not pending:
                    return
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    item = pending.pop(fut)
                    exc = fut.exception()
                    yield item, (None if exc else fut.result()), exc
        finally:
            for fut in pending:
                fut.cancel()


def _grid_table(rows: list[tuple[int, Any]]) -> pa.Table:
    vols = [v for _, v in rows]
    values = np.concatenate([v.flat().astype(np.float32) for v in vols])
    offsets = np.cumsum([0] + [int(np.prod(v.shape)) for v in vols]).astype(np.int32)
    return pa.table({
        "experiment_id": pa.array([e for e, _ in rows], pa.int64()),
        "nx": pa.array([v.shape[0] for v in vols], pa.int32()),
        "ny": pa.array([v.shape[1] for v in vols], pa.int32()),
        "nz": pa.array([v.shape[2] for v in vols], pa.int32()),
        "spacing_um": pa.array([float(v.spacing_um[0]) for v in vols], pa.float64()),
        "energy": pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, pa.float32())),
    })


def fetch_ontology(client: AllenClient, graph_id: int = q.DEVMOUSE_GRAPH_ID
                   ) -> list[dict[str, Any]]:
    """Structure rows of an ontology: the nested ``structure_graph_download`` file, or, when
    that endpoint fails or is missing from an offline cache, the flat RMA ``Structure``
    rows (same fields, paged)."""
    try:
        return read_ontology(client.get_json(q.structure_graph_url(client.base_url, graph_id)))
    except Unreachable:
        raise
    except IshwhError as first:
        try:
            return read_ontology(client.rma(q.structures(graph_id)))
        except Unreachable:
            raise
        except IshwhError:
            raise first from None


def fetch_grid_annotation(client: AllenClient, stage: str) -> Volume:
    """The stage's grid annotation volume (structure id per voxel, ``[x, y, z]``), fetched
    once from download.alleninstitute.org and cached like every other download."""
    if stage not in q.STAGES:
        raise InvalidInput(f"unknown stage {stage!r}", hint=f"stages are {', '.join(q.STAGES)}")
    return read_grid_annotation(client.download(q.grid_annotation_url(stage), "zip"))


# --------------------------------------------------------------------------- the ingest


def ingest_allen(
    db: str | os.PathLike,
    stages: list[str],
    *,
    genes: list[str] | None = None,
    limit: int | None = None,
    downsample: int = 4,
    grid: bool = False,
    images: bool = True,
    cache_dir: str | os.PathLike | None = None,
    from_cache: str | os.PathLike | None = None,
    concurrency: int = 4,
    client: AllenClient | None = None,
    transport: httpx.BaseTransport | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Fill the warehouse ``db`` from the Allen API (or a cache folder of its responses).

    Parameters
    ----------
    stages:
        Stage names (``E11.5`` ... ``P28``; ``P56`` allowed).
    genes, limit:
        Only these gene acronyms, or only the first ``limit`` genes by acronym (not both).
    downsample:
        Image size: each step halves both sides of the ~1 µm/px original (4 -> ~16 µm/px).
    grid:
        Also load each experiment's 3-D expression energy grid.
    images:
        Download section images (needed for ``sections``); ``False`` skips the phase.
    cache_dir, from_cache:
        Where responses are cached; ``from_cache`` serves only from that folder (offline).
    client, transport:
        Inject an :class:`AllenClient` or an httpx transport (tests).
    progress:
        Where to report the phases (:class:`ishwh.progress.Progress`); None: nowhere.

    Returns a summary: counts per table, new rows, reported problems and network use.
    """
    t0 = time.perf_counter()
    stages = list(dict.fromkeys(stages))
    if not stages:
        raise InvalidInput("give at least one stage", hint=f"one of {', '.join(q.STAGES)}",
                           param="stage")
    bad = [s for s in stages if s not in q.STAGES]
    if bad:
        raise InvalidInput(f"unknown stage {', '.join(bad)}",
                           hint=f"stages are {', '.join(q.STAGES)}", param="stage")
    if genes and limit is not None:
        raise InvalidInput("genes and limit cannot be combined", param="genes")
    if limit is not None and limit < 1:
        raise InvalidInput("limit must be at least 1", param="limit")
    if concurrency < 1:
        raise InvalidInput("concurrency must be at least 1", param="concurrency")
    if not 0 <= downsample <= 8:
        raise InvalidInput("downsample must be between 0 and 8", param="downsample")
    if from_cache is not None and cache_dir is not None:
        raise InvalidInput("from_cache and cache_dir cannot be combined",
                           hint="from_cache already names the cache folder", param="from_cache")
    if from_cache is not None and not Path(from_cache).is_dir():
        raise NotFound(f"no cache folder at {from_cache}")
    genes = list(dict.fromkeys(g.strip() for g in genes or [] if g.strip())) or None
    bad = [g for g in genes or [] if "'" in g or "," in g]
    if bad:
        raise InvalidInput(f"{bad[0]!r} is not a gene acronym", param="genes")

    own_client = client is None
    if client is None:
        client = AllenClient(
            from_cache if from_cache is not None else cache_dir,
            offline=from_cache is not None, transport=transport, concurrency=concurrency,
        )
    before = client.stats.as_dict()  # an injected client may have been used already
    summary: dict[str, Any] = {"stages": stages, "offline": client.offline,
                               "cache_dir": str(client.cache_dir)}
    try:
        with warehouse.connect(db) as con, _Phases(progress) as bars:
            _run(con, Path(db), client, bars, summary, stages, genes, limit, downsample,
                 grid, images)
    finally:
        if own_client:
            client.close()
    summary["network"] = {k: v - before[k] for k, v in client.stats.as_dict().items()}
    summary["elapsed_s"] = round(time.perf_counter() - t0, 2)
    return summary


def _run(con, db: Path, client: AllenClient, bars: _Phases, summary: dict[str, Any],
         stages: list[str], genes: list[str] | None, limit: int | None, downsample: int,
         grid: bool, images: bool) -> None:
    run = _Ingest(con, db, client, bars, summary)
    structure_ids = run.ontology()
    exp_ids = run.experiments(stages, genes, limit)
    done: dict[str, set[int]] = {"sections": set(), "annotations": set(), "grids": set()}
    for part, eid in con.sql(query_text("allen_done")).fetchall():
        done[part].add(int(eid))
    run.sections([e for e in exp_ids if e not in done["sections"]], len(exp_ids),
                 downsample, images)
    run.annotations([e for e in exp_ids if e not in done["annotations"]], len(exp_ids),
                    structure_ids)
    run.grids([e for e in exp_ids if e not in done["grids"]], len(exp_ids), grid)
    run.finish()


class _Ingest:
    """One ingest's phases (``_run`` calls them in order) and what they share: the
    warehouse, the client, the progress, the new rows per table and the failures."""

    def __init__(self, con: Any, db: Path, client: AllenClient, bars: _Phases,
                 summary: dict[str, Any]):
        self.con, self.db, self.client, self.bars, self.summary = con, db, client, bars, summary
        self.new: Counter[str] = Counter()
        self.failures: list[str] = []
        self.workers = client.concurrency

    def load(self, **tables: Any) -> None:
        """Load rows (one :func:`ishwh.loader.load`: one transaction) and count the new."""
        self.new.update(loader.load(self.con, loader.Batch(**tables)))

    def record_failure(self, what: str, exc: BaseException) -> None:
        if isinstance(exc, Unreachable):
            raise exc  # nothing else will work either
        if not isinstance(exc, IshwhError):
            raise exc  # a bug: do not hide it
        self.failures.append(f"{what}: {exc.message}")

    def ontology(self) -> set[int]:
        """1. The structure graph -> ``structures``; returns the structure ids."""
        with self.bars.phase("ontology", 1) as advance:
            structures = fetch_ontology(self.client)
            self.load(structures=structures)
            advance(1)
        self.summary["structures"] = len(structures)
        return {r["structure_id"] for r in structures}

    def experiments(self, stages: list[str], genes: list[str] | None,
                    limit: int | None) -> list[int]:
        """2. Genes and experiments; returns the experiment ids."""
        summary = self.summary
        with self.bars.phase("experiments", 1) as advance:
            records = _experiment_records(self.client, stages, genes)
            gene_rows, experiments, dropped = _pick_experiments(records, stages)
            if genes:
                found = {g["acronym"] for g in gene_rows.values()}
                summary["missing_genes"] = [g for g in genes if g not in found]
            if limit is not None:
                keep = {g["gene_id"] for g in sorted(gene_rows.values(),
                                                     key=lambda g: g["acronym"])[:limit]}
                gene_rows = {k: v for k, v in gene_rows.items() if k in keep}
                experiments = [e for e in experiments if e["gene_id"] in keep]
            used = {e["gene_id"] for e in experiments}
            gene_list = [g for gid, g in sorted(gene_rows.items()) if gid in used]
            self.load(genes=gene_list or None, experiments=experiments or None)
            advance(1)
        summary["genes"] = len(gene_list)
        summary["experiments"] = len(experiments)
        summary["experiments_not_chosen"] = dropped
        return [e["experiment_id"] for e in experiments]

    def sections(self, todo: list[int], total: int, downsample: int, images: bool) -> None:
        """3. Section images (downloaded, placed content-addressed) -> ``sections``."""
        images_root = warehouse.images_dir(self.db)
        images_root.mkdir(parents=True, exist_ok=True)
        n_sections = 0
        if images:
            fetch = functools.partial(_fetch_sections, self.client, downsample, images_root)
            with self.bars.phase("sections", total) as advance:
                advance(total - len(todo))
                for eid, rows, exc in _parallel(fetch, todo, self.workers):
                    if exc is not None:
                        self.record_failure(f"sections of experiment {eid}", exc)
                    elif rows:
                        self.load(sections=rows)
                        n_sections += len(rows)
                    advance(1)
        self.summary["images"] = images
        self.summary["sections_loaded_now"] = n_sections

    def annotations(self, todo: list[int], total: int, structure_ids: set[int]) -> None:
        """4. Manual annotations -> ``annotations`` (loaded every ``_LOAD_EVERY``
        experiments); calls on structures outside the ontology are counted, not loaded."""
        calls = _Calls(structure_ids)
        pending: list[dict[str, Any]] = []
        n_annotations = 0
        fetch = functools.partial(_fetch_annotations, self.client)
        with self.bars.phase("annotations", total) as advance:
            advance(total - len(todo))
            for i, (eid, recs, exc) in enumerate(_parallel(fetch, todo, self.workers)):
                if exc is not None:
                    self.record_failure(f"annotations of experiment {eid}", exc)
                else:
                    pending += calls.rows(eid, recs)
                if pending and ((i + 1) % _LOAD_EVERY == 0):
                    n_annotations += len(pending)
                    self.load(annotations=pending)
                    pending = []
                advance(1)
            if pending:
                n_annotations += len(pending)
                self.load(annotations=pending)
        self.summary["annotations_loaded_now"] = n_annotations
        self.summary.update(calls.summary())

    def grids(self, todo: list[int], total: int, grid: bool) -> None:
        """5. Expression energy grids -> ``expression_grids`` (``grid=True`` only)."""
        n_grids = 0
        if grid:
            fetch = functools.partial(_fetch_grid, self.client)
            batch: list[tuple[int, Any]] = []
            with self.bars.phase("grids", total) as advance:
                advance(total - len(todo))
                for eid, vol, exc in _parallel(fetch, todo, self.workers):
                    if exc is not None:
                        self.record_failure(f"grid of experiment {eid}", exc)
                    else:
                        batch.append((eid, vol))
                    if len(batch) >= _LOAD_EVERY:
                        self.load(expression_grids=_grid_table(batch))
                        n_grids += len(batch)
                        batch = []
                    advance(1)
                if batch:
                    self.load(expression_grids=_grid_table(batch))
                    n_grids += len(batch)
        self.summary["grids_loaded_now"] = n_grids

    def finish(self) -> None:
        """New rows per table and the failures, into the summary."""
        tables = ("structures", "genes", "experiments", "sections", "annotations",
                  "expression_grids")
        self.summary["new_rows"] = {t: self.new.get(t, 0) for t in tables}
        self.summary["failures"] = {"count": len(self.failures),
                                    "examples": self.failures[:10]}


def _fetch_sections(client: AllenClient, downsample: int, images_root: Path,
                    eid: int) -> list[dict[str, Any]]:
    """The section rows of one experiment, each image downloaded and placed."""
    rows, seen = [], set()
    for im in client.rma(q.section_images(eid)):
        if im.get("failed") or int(im["section_number"]) in seen:
            continue
        seen.add(int(im["section_number"]))
        path = client.download(
            q.section_image_url(im["id"], downsample, client.base_url), "image")
        width, height = image_size(path)  # decodes: proves it is readable
        digest = sha256_file(path)
        # safe from several threads: place_image writes to a per-thread temp name
        rel = place_image(path, images_root, digest)
        rows.append({
            "section_id": int(im["id"]), "experiment_id": eid,
            "section_number": int(im["section_number"]),
            "image_path": rel, "width": width, "height": height, "sha256": digest,
        })
    # lateral (0) -> medial (1) from the section numbers (docs/allen.md)
    for row, pos in zip(rows, section_positions([r["section_number"] for r in rows]),
                        strict=True):
        row["position"] = pos
    return rows


def _fetch_annotations(client: AllenClient, eid: int) -> list[dict[str, Any]]:
    return client.rma(q.manual_annotations(eid))


def _fetch_grid(client: AllenClient, eid: int) -> Volume:
    path = client.download(q.grid_data_url(eid, base=client.base_url), "zip")
    return read_grid_zip(path)


class _Calls:
    """Manual annotation records -> ``annotations`` rows, with a tally of what was left out
    (structures outside the ontology, values outside the enumerations, unknown calls)."""

    def __init__(self, structure_ids: set[int]):
        self.structure_ids = structure_ids
        self.unknown_structures: Counter[int] = Counter()
        self.bad_values: Counter[str] = Counter()
        self.n_unknown_calls = 0

    def rows(self, eid: int, recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One row per structure of experiment ``eid`` (its lowest-id record)."""
        out: list[dict[str, Any]] = []
        seen: set[int] = set()
        for rec in sorted(recs, key=lambda r: int(r.get("id") or 0)):
            if rec.get("structure_id") in (None, ""):
                self.bad_values["structure_id=None"] += 1
                continue
            sid = int(rec["structure_id"])
            if sid not in self.structure_ids:
                self.unknown_structures[sid] += 1
                continue
            if sid in seen:
                continue
            seen.add(sid)
            row = {"experiment_id": eid, "structure_id": sid}
            for col, field, allowed in (("pattern", "pattern_call", PATTERNS),
                                        ("intensity", "intensity_call", GRADES),
                                        ("density", "density_call", GRADES)):
                row[col], ok = normalise_call(rec.get(field), allowed)
                if not ok:
                    self.bad_values[f"{field}={rec.get(field)!r}"] += 1
                if row[col] is None:
                    self.n_unknown_calls += 1
            out.append(row)
        return out

    def summary(self) -> dict[str, Any]:
        return {
            "unknown_calls": self.n_unknown_calls,
            "unknown_structures": {
                "count": len(self.unknown_structures),
                "annotations": sum(self.unknown_structures.values()),
                "examples": [sid for sid, _ in self.unknown_structures.most_common(10)],
            },
            "unexpected_values": dict(self.bad_values.most_common(10)),
        }
