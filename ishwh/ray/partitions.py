"""Partitions: the unit of work, of retry and of resumption of a Ray featurize job.

A partition is one of the local engine's chunks (``chunk_size`` experiments, sorted by id).
The driver (this process, beside the warehouse) hands the partitions that have no file yet to
a Ray Data pipeline:

* **read tasks** (``decode_cpus`` each, one partition per task) read the partition's section
  files from the image source and decode them for the extractor (:mod:`.sources`);
* a fixed pool of ``workers`` **actors** (:class:`PartitionWorker` subclasses, each holding
  its extractor: a network, codebooks, reference atlases) turns a partition into tables, as
  Arrow IPC bytes: ``experiments`` (one row per experiment, a vector column per feature set),
  ``errors`` (unreadable sections) and any extractor's own (bag-of-words section counts,
  atlas alignments). Actors hold a *fraction* of a CPU so that read tasks can always run: an
  actor pool holding every CPU starves them and the job makes no progress.

The driver writes each partition as it comes back into ``<stem>_ray/part-<first
experiment>-<hash>/`` (one Parquet file per table, written in a ``.tmp`` folder that is then
renamed: a partition is whole or absent). The hash covers the job's identity (sets and their
parameters, weights digest, codebooks...) and the partition's experiments, so a file of
another job is never taken for this one. A killed job leaves its finished partitions; the
next run computes only the missing ones. The extractor then ingests every partition in ONE
DuckDB transaction and the files are removed.

Ray retries what dies: Ray Data restarts a dead actor of the pool and re-runs its partition
(``max_restarts=-1``, ``max_task_retries=-1``), and re-runs a failed read task. A partition is
computed from its own sections only, so a retried partition gives the same tables.

Why not ``Dataset.write_parquet``: its files are named per block and task, not per partition,
so a resumed job could not tell which partitions are complete; the tables travel to the
driver anyway, because the warehouse is there.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import time
from collections import namedtuple
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ishwh.errors import InvalidInput
from ishwh.progress import Progress
from ishwh.ray.cluster import RayOptions, fail_once_if_armed, quiet

TABLE = "t_"  # prefix of the table columns of a worker's output


# --------------------------------------------------------------------------- files


def staging_dir(db_path: str | os.PathLike) -> Path:
    """Where partition files wait for ingestion: ``<stem>_ray/`` beside the warehouse."""
    p = Path(db_path)
    return p.with_name(p.stem + "_ray")


def partition_path(staging: Path, key: dict, experiment_ids: Sequence[int]) -> Path:
    """A partition's folder, named by the job's identity and its experiments."""
    text = json.dumps({"job": key, "experiments": [int(e) for e in experiment_ids]},
                      sort_keys=True, default=str)
    digest = hashlib.sha256(text.encode()).hexdigest()[:20]
    return staging / f"part-{int(experiment_ids[0])}-{digest}"


def write_partition(path: Path, tables: dict[str, pa.Table]) -> None:
    """Write the tables under a temporary name, then rename: whole or absent."""
    import pyarrow.parquet as pq  # noqa: PLC0415

    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, table in tables.items():
        pq.write_table(table, tmp / f"{name}.parquet")
    os.replace(tmp, path)


def read_partition(path: Path) -> dict[str, pa.Table]:
    import pyarrow.parquet as pq  # noqa: PLC0415

    return {f.stem: pq.read_table(f) for f in sorted(path.glob("*.parquet"))}


def remove_partitions(staging: Path, paths: Sequence[Path]) -> None:
    """Remove ingested partitions, leftovers of killed writes, and the folder when empty."""
    for p in paths:
        shutil.rmtree(p, ignore_errors=True)
    if staging.is_dir():
        for tmp in staging.glob("*.tmp"):
            shutil.rmtree(tmp, ignore_errors=True)
        if not any(staging.iterdir()):
            shutil.rmtree(staging, ignore_errors=True)


def table_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def bytes_table(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


def vectors_table(experiment_ids: Sequence[int], ok: Sequence[bool],
                  vectors: Sequence[np.ndarray]) -> pa.Table:
    """``experiments`` table: ``experiment_id``, ``ok`` and one fixed-size float32 list
    column ``v<k>`` per matrix of ``vectors`` (one row per experiment)."""
    cols: dict[str, Any] = {"experiment_id": pa.array(np.asarray(experiment_ids, np.int64)),
                            "ok": pa.array(np.asarray(ok, bool))}
    for k, x in enumerate(vectors):
        x = np.asarray(x, dtype=np.float32).reshape(len(experiment_ids), -1)
        cols[f"v{k}"] = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])
    return pa.table(cols)


# --------------------------------------------------------------------------- on the workers


# A section as the workers see it (``path`` relative to the image source): the fields of
# :class:`ishwh.features.sets.Section`, without importing the warehouse side (and torch).
Section = namedtuple("Section", "experiment_id section_id section_number path width height "
                                "position")


@dataclass
class Partition:
    """One partition on a worker: its experiments and sections, the decoded images (by
    section index; unreadable ones are in ``errors`` as ``(index, why)``) and the
    extractor's own ``extra`` (e.g. the stage, stored alignments, expression grids)."""

    index: int
    experiments: list[int]
    sections: list[Section]
    extra: Any
    images: dict[int, np.ndarray] = field(default_factory=dict)
    errors: list[tuple[int, str]] = field(default_factory=list)

    def sections_of(self, experiment_id: int) -> list[int]:
        """Indices of the experiment's sections that were read (section order)."""
        return [i for i, s in enumerate(self.sections)
                if s.experiment_id == experiment_id and i in self.images]

    def errors_table(self) -> pa.Table:
        return pa.table({
            "experiment_id": pa.array([self.sections[i].experiment_id for i, _ in self.errors],
                                      pa.int64()),
            "section_id": pa.array([self.sections[i].section_id for i, _ in self.errors],
                                   pa.int64()),
            "why": pa.array([why for _, why in self.errors], pa.string())})


def _partition_of(batch: dict[str, np.ndarray], r: int) -> Partition:
    part = Partition(int(batch["partition"][r]), json.loads(batch["experiments"][r]),
                     [Section(*s) for s in json.loads(batch["sections"][r])],
                     pickle.loads(batch["extra"][r]))
    if "images" in batch:
        part.images = pickle.loads(batch["images"][r])
        part.errors = [tuple(e) for e in json.loads(batch["errors"][r])]
    return part


def read_sections(batch: dict[str, np.ndarray], root: str, decoder: str, kwargs: dict
                  ) -> dict[str, np.ndarray]:
    """Ray Data read task (one row = one partition): read and decode its sections with
    ``sources.DECODERS[decoder]``; adds ``images`` (pickled ``{index: array}``) and
    ``errors`` (JSON ``[[index, why]]``)."""
    import cv2  # noqa: PLC0415

    from ishwh.ray.sources import DECODERS, read_image  # noqa: PLC0415

    cv2.setNumThreads(1)
    decode = DECODERS[decoder]
    images, errors = [], []
    for r in range(len(batch["partition"])):
        got, bad = {}, []
        for i, sec in enumerate(json.loads(batch["sections"][r])):
            s = Section(*sec)
            try:
                name, data = read_image(root, s.path)
                got[i] = decode(name, data, s.width, s.height, **kwargs)
            except Exception as exc:  # noqa: BLE001 - reported per section by the driver
                bad.append([i, str(getattr(exc, "message", exc))])
        images.append(pickle.dumps(got, protocol=5))
        errors.append(json.dumps(bad))
    out = dict(batch)
    out["images"] = np.asarray(images, dtype=object)
    out["errors"] = np.asarray(errors, dtype=object)
    return out


class PartitionWorker:
    """Ray Data actor: partitions in, tables out (:meth:`compute`, per extractor)."""

    def compute(self, part: Partition) -> dict[str, pa.Table]:
        raise NotImplementedError

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        fail_once_if_armed()
        out: dict[str, list] = {"partition": []}
        for r in range(len(batch["partition"])):
            part = _partition_of(batch, r)
            tables = self.compute(part)
            tables["errors"] = part.errors_table()
            out["partition"].append(part.index)
            for name, table in tables.items():
                out.setdefault(TABLE + name, []).append(table_bytes(table))
        return {k: np.asarray(v, dtype=np.int64 if k == "partition" else object)
                for k, v in out.items()}


# --------------------------------------------------------------------------- the job


@dataclass
class Job:
    """What to compute: partitions (index -> experiments, sections, extra) and how.

    ``key``: the job's identity in partition file names (sets, parameters...);
    ``worker`` / ``worker_args``: the actor class and its constructor arguments;
    ``decoder`` / ``decoder_kwargs``: what the read tasks make of each file (``None``: no
    read stage, the partition's ``extra`` carries the inputs); ``units``: progress units
    (sections) per partition; ``describe(section_id, why)``: a skipped section in words.
    """

    kind: str
    key: dict
    experiments: dict[int, list[int]]
    sections: dict[int, list[Section]]
    extra: dict[int, Any]
    worker: type
    worker_args: tuple
    decoder: str | None
    decoder_kwargs: dict
    describe: Callable[[int, str], str]
    gpus: float = 0.0

    def units(self, c: int) -> int:
        return len(self.sections[c]) or len(self.experiments[c])


def _items(job: Job, missing: list[int]) -> list[dict]:
    return [{"partition": c, "experiments": json.dumps(job.experiments[c]),
             "sections": json.dumps([list(s) for s in job.sections[c]]),
             "extra": pickle.dumps(job.extra.get(c), protocol=5)} for c in missing]


def run_job(ray: Any, job: Job, staging: Path, opts: RayOptions, root: str, on_error: str,
            progress: Progress, result: Any) -> dict[int, Path]:
    """Compute the partitions of ``job`` that have no file yet; return every partition's
    folder. Fills ``result.partitions`` (total / computed / reused / first_sections) and
    ``result.timings`` (compute, first_partition)."""
    files = {c: partition_path(staging, job.key, job.experiments[c]) for c in job.experiments}
    missing = [c for c in sorted(files) if not files[c].is_dir()]
    result.partitions = {"total": len(files), "computed": len(missing),
                         "reused": len(files) - len(missing)}
    if not missing:
        return files
    t1 = time.perf_counter()
    staging.mkdir(parents=True, exist_ok=True)
    progress.start(f"featurize {job.kind} (ray)", sum(job.units(c) for c in missing),
                   "sections" if job.decoder else "experiments")
    first: tuple[float, int] | None = None
    try:
        with quiet(ray):
            # One row (and block) per partition: a read task per partition, then the actors.
            ds = ray.data.from_items(_items(job, missing), override_num_blocks=len(missing))
            if job.decoder is not None:
                ds = ds.map_batches(read_sections, batch_size=1, batch_format="numpy",
                                    num_cpus=opts.decode_cpus,
                                    fn_kwargs={"root": root, "decoder": job.decoder,
                                               "kwargs": job.decoder_kwargs})
            ds = ds.map_batches(job.worker, batch_size=1, batch_format="numpy",
                                compute=ray.data.ActorPoolStrategy(size=opts.workers),
                                num_cpus=opts.cpus_per_worker, num_gpus=job.gpus,
                                fn_constructor_args=job.worker_args)
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                for r in range(len(batch["partition"])):
                    c = int(batch["partition"][r])
                    tables = {k[len(TABLE):]: bytes_table(batch[k][r])
                              for k in batch if k.startswith(TABLE)}
                    if on_error == "fail":
                        _fail_on_error(tables["errors"], job.describe)
                    write_partition(files[c], tables)
                    first = first or (time.perf_counter(), c)
                    progress.advance(job.units(c))
    finally:
        progress.done()
    if first is None:  # every partition failed to come back: Ray raised already
        raise InvalidInput("the Ray job returned no partition")
    result.timings["compute"] = time.perf_counter() - t1
    # Until the first partition: the actors' start (imports, loading the extractor) and the
    # pipeline filling; the rest is the steady state.
    result.timings["first_partition"] = first[0] - t1
    result.partitions["first_sections"] = job.units(first[1])
    return files


def _fail_on_error(errors: pa.Table, describe: Callable[[int, str], str]) -> None:
    for section_id, why in zip(errors.column("section_id").to_pylist(),
                               errors.column("why").to_pylist(), strict=True):
        raise InvalidInput(f"unreadable image: {describe(section_id, why)}",
                           hint="fix or remove the file, or re-run with --on-error skip "
                                "(nothing was written to the warehouse; finished "
                                "partitions are kept for the next run)")


def take_problems(tables: dict[str, pa.Table], describe: Callable[[int, str], str],
                  result: Any, progress: Progress, failed: set[int]) -> list[int]:
    """Record a partition's skipped sections and experiments without a readable section
    (``result.problems``, ``failed``); returns the experiments that have a vector."""
    err = tables["errors"]
    for section_id, why in zip(err.column("section_id").to_pylist(),
                               err.column("why").to_pylist(), strict=True):
        text = describe(section_id, why)
        result.problems.append(text)
        progress.message(f"skipped: {text}")
    exp = tables["experiments"]
    good = []
    for e, ok in zip(exp.column("experiment_id").to_pylist(), exp.column("ok").to_pylist(),
                     strict=True):
        if ok:
            good.append(int(e))
        else:
            failed.add(int(e))
            result.problems.append(f"experiment {e}: no readable section, no vector written")
    return good
