"""``featurize --engine ray``: the CNN feature sets computed on a Ray cluster with Ray Data.

The science is the local engine's: the same :class:`~ishwh.features.cnn.CNNFeatures`
(``section_features`` on batches of ``batch_size`` images), the same decoding
(:func:`~ishwh.features.imageio.decode_for_cnn`) and the same pooling
(:func:`~ishwh.features.cnn.pool_sections`), so the vectors equal the local engine's (up to
float rounding of the thread count). Only the plumbing differs:

* the **driver** (this process, beside the warehouse) reads the experiments to do and cuts
  them into *partitions*: the local engine's chunks of ``chunk_size`` experiments;
* **decoding** runs in Ray tasks (``num_cpus`` = ``decode_cpus``), one partition per task: the
  task reads the section files (a local folder, or a URL every worker can read) and resizes
  them to the network input;
* **extraction** runs in a fixed pool of ``workers`` Ray actors, each holding one network,
  with a *fraction* of a CPU (``cpus_per_worker``) and, on a GPU cluster, a fraction of a GPU
  (``gpus_per_worker``): an actor pool holding every CPU starves the decoding tasks and the
  job makes no progress. An actor pools the sections of each experiment (max / mean) and
  returns one row per experiment;
* the driver writes each finished partition as one Parquet file (written under a temporary
  name, then renamed: a partition file is whole or absent) in ``<warehouse>_ray/``, and when
  every partition is there, ingests them all in **one DuckDB transaction** and removes them.

A killed job leaves its finished partition files behind; the next run with the same arguments
computes only the partitions that are missing. Nothing reaches the warehouse before the final
transaction, so a failed job writes nothing there. Ray retries a task or actor that dies
(Ray Data restarts actors of a pool); the result is the same because a partition is computed
from its own sections only.

Why not ``Dataset.write_parquet``: its files are named per block and task, not per partition,
so a resumed job could not tell which partitions are complete; the vectors travel to the
driver anyway, because the warehouse is there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ishwh import store, warehouse
from ishwh.errors import InvalidInput
from ishwh.progress import Progress, or_silent

INSTALL_HINT = ("install the Ray extra: pip install 'ishwh[ray]' "
                "(in a checkout: ISHWH_EXTRAS=ray scripts/install.sh)")
# The image sources the workers can read: a local folder (the same path on every node) or a
# URL that pyarrow.fs opens.
URL_SCHEMES = ("file", "s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")


@dataclass
class RayOptions:
    """How the Ray engine runs.

    Parameters
    ----------
    address: ``None`` starts a private local cluster for the job (all local cores);
        ``auto`` joins the cluster started on this machine with ``ray start``;
        ``ray://host:port`` connects through Ray Client; ``host:port`` is a GCS address.
        A process that already called ``ray.init`` keeps its connection.
    workers: extractor actors (each holds one network).
    cpus_per_worker: CPUs reserved per actor (fractional; torch gets ``ceil`` of it threads).
    gpus_per_worker: GPUs per actor (fractional shares one GPU); ``None``: 1 when the cluster
        has GPUs, else 0.
    decode_cpus: CPUs per decoding task.
    images: where the workers read the section files: ``None`` = the warehouse's image folder
        (a shared path on a real cluster), a folder, or a URL (``file://``, ``s3://``,
        ``gs://``, ``hdfs://``) under which the warehouse's relative image paths resolve.
    """

    address: str | None = None
    workers: int = 1
    cpus_per_worker: float = 0.5
    gpus_per_worker: float | None = None
    decode_cpus: float = 1.0
    images: str | None = None

    def check(self) -> None:
        """Refuse impossible values by name."""
        if self.workers < 1:
            raise InvalidInput(f"ray workers must be >= 1, got {self.workers}",
                               param="ray_workers")
        for label, v in (("cpus_per_worker", self.cpus_per_worker),
                         ("decode_cpus", self.decode_cpus)):
            if not v > 0:
                raise InvalidInput(f"ray {label} must be > 0, got {v}",
                                   param=label if label == "cpus_per_worker" else None)
        if self.gpus_per_worker is not None and self.gpus_per_worker < 0:
            raise InvalidInput(f"ray gpus_per_worker must be >= 0, got {self.gpus_per_worker}",
                               param="gpus_per_worker")
        if self.address is not None:
            _address_host_port(self.address)  # refuses a malformed address
        if self.images and "://" in self.images:
            scheme = self.images.split("://", 1)[0].lower()
            if scheme not in URL_SCHEMES:
                raise InvalidInput(f"image source {self.images}: {scheme}:// is not supported",
                                   hint="use a folder every worker can read, or one of "
                                        + ", ".join(f"{s}://" for s in URL_SCHEMES),
                                   param="images")


def import_ray() -> Any:
    """The ``ray`` module (with Ray Data), or a clear :class:`InvalidInput` without it."""
    try:
        import ray  # noqa: PLC0415
        import ray.data  # noqa: F401, PLC0415
    except ImportError as exc:
        raise InvalidInput("the Ray engine needs Ray, which is not installed",
                           hint=INSTALL_HINT) from exc
    return ray


# --------------------------------------------------------------------------- connecting


def _address_host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``ray://host:port`` or ``host:port``; ``None`` for ``auto``."""
    if address == "auto":
        return None
    rest = address[len("ray://"):] if address.startswith("ray://") else address
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise InvalidInput(f"Ray address {address!r} is not auto, ray://host:port or host:port",
                           param="address")
    return host, int(port)


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not minutes, when nothing listens at the address (Ray itself retries
    an unreachable GCS for a minute or more)."""
    hp = _address_host_port(address)
    if hp is None:
        return
    try:
        with socket.create_connection(hp, timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise InvalidInput(f"cannot reach the Ray cluster at {address}: {reason}",
                           hint="start it (ray start --head) or check the address and port; "
                                "Ray Client listens on port 10001 by default",
                           param="address") from exc


@contextmanager
def ray_session(address: str | None) -> Iterator[Any]:
    """Connected ``ray`` for the block: an existing connection is kept as it is; otherwise
    connect (or start a local cluster) and disconnect afterwards."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    if address is not None:
        _check_reachable(address)
    # Ray's core worker logs a warning line on stderr for every actor pool of Ray Data
    # (constructor arguments in the object store, ray-project/ray#53727); keep stderr to our
    # own lines. Ray's log files keep everything; set the variable to see it on stderr.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 logging_level="error", configure_logging=True)
    except (ConnectionError, OSError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = address or "a new local cluster"
        hint = ("start one on this machine with `ray start --head`, or give no address for a "
                "private local cluster" if address == "auto" else
                "check the address (auto, ray://host:port) and that the cluster runs the same "
                "Ray and Python versions as this machine")
        raise InvalidInput(f"cannot connect to the Ray cluster at {where}: {first}",
                           hint=hint, param="address" if address else None) from exc
    try:
        yield ray
    finally:
        ray.shutdown()


_QUIET = {"enable_progress_bars": False, "enable_operator_progress_bars": False,
          "print_on_execution_start": False, "enable_auto_log_stats": False,
          "verbose_stats_logs": False}


@contextmanager
def _quiet(ray: Any) -> Iterator[None]:
    """The library never prints: no Ray Data progress bars, banners or notes for the block
    (the caller's settings come back afterwards)."""
    ctx = ray.data.DataContext.get_current()
    saved = {k: getattr(ctx, k) for k in _QUIET}
    loggers = {n: logging.getLogger(n) for n in ("ray", "ray.data")}
    levels = {n: lg.level for n, lg in loggers.items()}
    for k, v in _QUIET.items():
        setattr(ctx, k, v)
    for lg in loggers.values():
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(ctx, k, v)
        for n, lg in loggers.items():
            lg.setLevel(levels[n])


# --------------------------------------------------------------------------- reading images


def read_image(root: str, relpath: str) -> tuple[str, np.ndarray]:
    """``(name, bytes)`` of one section file under ``root`` (a folder or a URL).

    Runs on the workers. Missing, empty or truncated files raise :class:`InvalidInput`
    naming the file, as the local engine does.
    """
    from ishwh.features.imageio import looks_truncated, read_bytes  # noqa: PLC0415

    if "://" not in root:
        name = str(Path(root) / relpath)
        return name, read_bytes(name)
    import pyarrow.fs as pafs  # noqa: PLC0415

    name = root.rstrip("/") + "/" + relpath
    try:
        fs, path = pafs.FileSystem.from_uri(name)
        with fs.open_input_stream(path) as f:
            data = np.frombuffer(f.readall(), dtype=np.uint8)
    except (OSError, ValueError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidInput(f"cannot read image {name}: {msg}") from exc
    if data.size == 0 or looks_truncated(data):
        raise InvalidInput(f"cannot read image {name}: empty or truncated file")
    return name, data


def _probe_read(root: str, relpath: str) -> str | None:
    """Ray task of the preflight: ``None`` when a worker reads one section, else why not."""
    try:
        read_image(root, relpath)
    except Exception as exc:  # noqa: BLE001 - turned into one line by the driver
        return str(getattr(exc, "message", exc))
    return None


def decode_partition(batch: dict[str, np.ndarray], root: str, size: int
                     ) -> dict[str, np.ndarray]:
    """Ray Data task (one row = one partition): read and resize its sections.

    Returns the partition with ``images`` (the decoded (n_ok, size, size, 3) uint8 array as
    bytes), ``ok`` (indices of the sections decoded) and ``errors`` (JSON ``[[index, why]]``);
    the partition's experiment and section ids (JSON) pass through.
    """
    import cv2  # noqa: PLC0415

    from ishwh.features.imageio import decode_for_cnn  # noqa: PLC0415

    cv2.setNumThreads(1)
    keep = ("experiments", "section_experiments", "section_ids")
    out: dict[str, list] = {k: [] for k in ("partition", "images", "ok", "errors", *keep)}
    for r in range(len(batch["partition"])):
        imgs, ok, errors = [], [], []
        for i, (rel, w, h) in enumerate(zip(batch["paths"][r], batch["widths"][r],
                                            batch["heights"][r], strict=True)):
            try:
                name, data = read_image(root, str(rel))
                imgs.append(decode_for_cnn(name, size, int(w), int(h), data=data))
                ok.append(i)
            except Exception as exc:  # noqa: BLE001 - reported per section by the driver
                errors.append([i, str(getattr(exc, "message", exc))])
        stack = np.stack(imgs) if imgs else np.zeros((0, size, size, 3), np.uint8)
        out["partition"].append(int(batch["partition"][r]))
        out["images"].append(stack.tobytes())
        out["ok"].append(json.dumps(ok))
        out["errors"].append(json.dumps(errors))
        for k in keep:
            out[k].append(str(batch[k][r]))
    return {k: np.asarray(v, dtype=np.int64 if k == "partition" else object)
            for k, v in out.items()}


class Extractor:
    """Ray Data actor: one :class:`CNNFeatures` network; partition in, experiment rows out.

    Output columns: ``partition``, ``experiment_id``, ``ok`` (the experiment had a readable
    section), ``errors`` (JSON ``[[section_id, why]]``) and ``v0``, ``v1``, ... (one pooled
    vector per (layer, pool) in :attr:`keys`; zeros when not ``ok``).
    """

    def __init__(self, cnn_params: dict, threads: int):
        import torch  # noqa: PLC0415

        from ishwh.features.cnn import CNNFeatures  # noqa: PLC0415

        torch.set_num_threads(max(1, threads))
        self.ext = CNNFeatures(**cnn_params).fit()
        self.keys = [(lay, p) for lay in self.ext.layers_ for p in self.ext.pools]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from ishwh.features.cnn import pool_sections  # noqa: PLC0415

        size = self.ext.image_size
        cols: dict[str, list] = {"partition": [], "experiment_id": [], "ok": [], "errors": []}
        vecs: list[list[np.ndarray]] = [[] for _ in self.keys]
        for r in range(len(batch["partition"])):
            c = int(batch["partition"][r])
            exp_ids, sec_exp, sec_ids = (json.loads(batch[k][r]) for k in (
                "experiments", "section_experiments", "section_ids"))
            ok = json.loads(batch["ok"][r])
            imgs = np.frombuffer(batch["images"][r], dtype=np.uint8).reshape(-1, size, size, 3)
            rows: dict[str, list[np.ndarray]] = {lay: [] for lay in self.ext.layers_}
            for start in range(0, len(imgs), self.ext.batch_size):
                for lay, v in self.ext.section_features(
                        imgs[start:start + self.ext.batch_size]).items():
                    rows[lay].append(v)
            feats = {lay: np.concatenate(v) if v else None for lay, v in rows.items()}
            owner = np.asarray([sec_exp[i] for i in ok], dtype=np.int64)
            errs: dict[int, list] = {}
            for i, why in json.loads(batch["errors"][r]):
                errs.setdefault(sec_exp[i], []).append([sec_ids[i], why])
            for e in exp_ids:
                mine = np.flatnonzero(owner == e)
                cols["partition"].append(c)
                cols["experiment_id"].append(e)
                cols["ok"].append(len(mine) > 0)
                cols["errors"].append(json.dumps(errs.get(e, [])))
                for k, (lay, p) in enumerate(self.keys):
                    if len(mine):
                        vecs[k].append(pool_sections(feats[lay][mine], p))
                    else:
                        vecs[k].append(np.zeros(self.ext.dims_[lay], np.float32))
        out = {"partition": np.asarray(cols["partition"], dtype=np.int64),
               "experiment_id": np.asarray(cols["experiment_id"], dtype=np.int64),
               "ok": np.asarray(cols["ok"], dtype=bool),
               "errors": np.asarray(cols["errors"], dtype=object)}
        for k, v in enumerate(vecs):
            out[f"v{k}"] = np.stack(v).astype(np.float32, copy=False)
        return out


# --------------------------------------------------------------------------- partitions


def staging_dir(db_path: str | os.PathLike) -> Path:
    """Where partition files wait for ingestion: ``<stem>_ray/`` beside the warehouse."""
    p = Path(db_path)
    return p.with_name(p.stem + "_ray")


def _partition_file(stage: Path, job: dict, experiment_ids: Sequence[int]) -> Path:
    """A partition's file: named by the job's parameters and its experiments, so a file
    made by another job (other layers, weights, chunking) is never taken for this one."""
    key = json.dumps({"job": job, "experiments": [int(e) for e in experiment_ids]},
                     sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    return stage / f"part-{int(experiment_ids[0])}-{digest}.parquet"


def _write_partition(path: Path, names: list[str], rows: list[dict]) -> None:
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    rows = sorted(rows, key=lambda r: r["experiment_id"])
    cols: dict[str, Any] = {
        "experiment_id": pa.array([r["experiment_id"] for r in rows], pa.int64()),
        "ok": pa.array([r["ok"] for r in rows], pa.bool_()),
        "errors": pa.array([r["errors"] for r in rows], pa.string()),
    }
    for k, name in enumerate(names):
        x = np.stack([r["vecs"][k] for r in rows]).astype(np.float32, copy=False)
        cols[name] = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(pa.table(cols), tmp)
    os.replace(tmp, path)  # whole or absent


def _read_partition(path: Path, names: list[str]) -> tuple[list[int], list[bool], list[str],
                                                           dict[str, np.ndarray]]:
    import pyarrow.parquet as pq  # noqa: PLC0415

    t = pq.read_table(path)
    x = {n: store.list_array_to_matrix(t.column(n)) for n in names}
    return (t.column("experiment_id").to_pylist(), t.column("ok").to_pylist(),
            t.column("errors").to_pylist(), x)


# --------------------------------------------------------------------------- the job


def run_cnn(con: Any, db_path: Path, opts: dict, result: Any) -> None:
    """Compute the missing vectors of the CNN sets on Ray; ingest them in one transaction.

    ``opts`` are :func:`ishwh.features.featurize_report`'s, with ``opts["ray"]`` a
    :class:`RayOptions`; ``opts["progress"]`` a :class:`Progress` or ``None``.
    """
    from ishwh.features import pipeline  # noqa: PLC0415

    ray_opts: RayOptions = opts["ray"]
    progress = or_silent(opts["progress"])
    root = ray_opts.images or str(warehouse.images_dir(db_path))
    if "://" not in root:  # workers do not share the driver's working directory
        root = str(Path(root).resolve())
    stage = staging_dir(db_path)
    with ExitStack() as stack:
        session: list[Any] = []

        def connect_and_probe(scope_ids: list[int]) -> None:
            # Before any feature set is created: a cluster that cannot be reached or cannot
            # read the images fails here, and nothing is written.
            session.append(stack.enter_context(ray_session(ray_opts.address)))
            first = pipeline._sections(con, Path("."), scope_ids[:1])
            if first:
                _preflight(session[0], root, first[0].path)

        plan = pipeline.cnn_plan(con, opts, result, before_write=connect_and_probe)
        if plan is None:
            return
        ext, todo, chunks = plan.ext, plan.todo, plan.chunks
        keys = [(lay, p) for lay in ext.layers_ for p in ext.pools]
        names = [plan.names[k] for k in keys]
        # Relative image paths: each worker resolves them under the image source.
        sections = pipeline._sections(con, Path("."), [e for c in sorted(todo) for e in chunks[c]])
        by_exp: dict[int, list] = {}
        for s in sections:
            by_exp.setdefault(s.experiment_id, []).append(s)
        job = {"sets": names, "params": [plan.params[n] for n in names]}
        files = {c: _partition_file(stage, job, chunks[c]) for c in todo}
        missing = [c for c in sorted(todo) if not files[c].exists()]
        result.partitions = {"total": len(todo), "computed": len(missing),
                             "reused": len(todo) - len(missing)}
        if missing:
            result.timings["setup"] = time.perf_counter() - plan.started
            t1 = time.perf_counter()
            stage.mkdir(parents=True, exist_ok=True)
            n_sections = sum(len(by_exp.get(e, [])) for c in missing for e in chunks[c])
            progress.start("featurize cnn (ray)", n_sections, "sections")
            try:
                first, first_c = _compute(session[0], missing, chunks, by_exp, root, ext,
                                          len(keys), files, opts, ray_opts, progress)
            finally:
                progress.done()
            result.timings["compute"] = time.perf_counter() - t1
            # Until the first partition: the actors' start (import torch, load the network)
            # and the pipeline filling; the rest is the steady state.
            result.timings["first_partition"] = first - t1
            result.partitions["first_sections"] = sum(len(by_exp.get(e, []))
                                                      for e in chunks[first_c])
    _ingest(con, plan, todo, files, names, by_exp, result, progress)
    pipeline.cnn_finish(con, plan, result)
    for c in todo:
        files[c].unlink(missing_ok=True)
    if stage.is_dir() and not any(stage.iterdir()):
        shutil.rmtree(stage, ignore_errors=True)


def _preflight(ray: Any, root: str, relpath: str) -> None:
    """One Ray task reads one section: a cluster that cannot see the images fails here, in
    one line, before anything is written."""
    why = ray.get(ray.remote(num_cpus=0.01)(_probe_read).remote(root, relpath))
    if why is not None:
        raise InvalidInput(f"the Ray workers cannot read the images: {why}",
                           hint="the image source must be readable from every worker: a "
                                "shared folder, or a URL (file://, s3://, gs://) given as "
                                "the image source", param="images")


def _compute(ray: Any, missing: list[int], chunks: list[list[int]], by_exp: dict,
             root: str, ext: Any, n_keys: int, files: dict, opts: dict, ray_opts: RayOptions,
             progress: Progress) -> tuple[float, int]:
    """Run the Ray Data pipeline over the missing partitions; write each as it completes.
    Returns when (``perf_counter``) the first partition was written, and which it was."""
    items = []
    for c in missing:
        secs = [s for e in chunks[c] for s in by_exp.get(e, [])]
        items.append({"partition": c, "paths": [s.path for s in secs],
                      "widths": [s.width for s in secs], "heights": [s.height for s in secs],
                      "experiments": json.dumps(chunks[c]),
                      "section_experiments": json.dumps([s.experiment_id for s in secs]),
                      "section_ids": json.dumps([s.section_id for s in secs])})
    gpus = ray_opts.gpus_per_worker
    if gpus is None:
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    device = "cuda" if gpus > 0 else "cpu"
    cnn_params = dict(backbone=ext.backbone, layers=list(ext.layers_), pools=list(ext.pools),
                      image_size=ext.image_size, spatial=ext.spatial, weights=ext.weights,
                      device=device,
                      batch_size=opts["batch_size"] or (128 if device == "cuda" else 4))
    threads = max(1, math.ceil(ray_opts.cpus_per_worker))
    with _quiet(ray):
        # One row (and block) per partition: a decode task per partition, then the actors.
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        ds = ds.map_batches(decode_partition, batch_size=1, batch_format="numpy",
                            num_cpus=ray_opts.decode_cpus,
                            fn_kwargs={"root": root, "size": ext.image_size})
        ds = ds.map_batches(Extractor, batch_size=1, batch_format="numpy",
                            compute=ray.data.ActorPoolStrategy(size=ray_opts.workers),
                            num_cpus=ray_opts.cpus_per_worker, num_gpus=gpus,
                            fn_constructor_args=(cnn_params, threads))
        return _collect(ds, chunks, by_exp, files, n_keys, opts, progress)


def _collect(ds: Any, chunks: list[list[int]], by_exp: dict, files: dict, n_keys: int,
             opts: dict, progress: Progress) -> tuple[float, int]:
    """Stream the experiment rows back; write each partition as soon as it is complete."""
    pending: dict[int, list[dict]] = {}
    first: tuple[float, int] | None = None
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        for i in range(len(batch["partition"])):
            c = int(batch["partition"][i])
            pending.setdefault(c, []).append({
                "experiment_id": int(batch["experiment_id"][i]), "ok": bool(batch["ok"][i]),
                "errors": str(batch["errors"][i]),
                "vecs": [np.asarray(batch[f"v{k}"][i]) for k in range(n_keys)]})
            if len(pending[c]) == len(chunks[c]):
                rows = pending.pop(c)
                if opts["on_error"] == "fail":
                    _fail_on_error(rows, by_exp)
                _write_partition(files[c], [f"v{k}" for k in range(n_keys)], rows)
                first = first or (time.perf_counter(), c)
                progress.advance(sum(len(by_exp.get(e, [])) for e in chunks[c]))
    if first is None:  # every partition failed to come back: Ray raised already
        raise InvalidInput("the Ray job returned no partition")
    return first


def _section_problem(by_exp: dict, experiment_id: int, section_id: int, why: str) -> str:
    from ishwh.features.pipeline import _problem  # noqa: PLC0415

    sec = next(s for s in by_exp[experiment_id] if s.section_id == section_id)
    return _problem(sec, why)


def _fail_on_error(rows: list[dict], by_exp: dict) -> None:
    for r in rows:
        for section_id, why in json.loads(r["errors"]):
            raise InvalidInput(f"unreadable image: "
                               f"{_section_problem(by_exp, r['experiment_id'], section_id, why)}",
                               hint="fix or remove the file, or re-run with --on-error skip "
                                    "(nothing was written to the warehouse; finished "
                                    "partitions are kept for the next run)")


def _ingest(con: Any, plan: Any, todo: dict, files: dict, names: list[str], by_exp: dict,
            result: Any, progress: Progress) -> None:
    """Every partition file into the warehouse, in one transaction."""
    cols = [f"v{k}" for k in range(len(names))]
    with warehouse.transaction(con):
        for c in sorted(todo):
            ids, oks, errors, x = _read_partition(files[c], cols)
            for e, ok, errs in zip(ids, oks, errors, strict=True):
                for section_id, why in json.loads(errs):
                    text = _section_problem(by_exp, e, section_id, why)
                    result.problems.append(text)
                    progress.message(f"skipped: {text}")
                if not ok:
                    plan.failed.add(e)
                    result.problems.append(
                        f"experiment {e}: no readable section, no vector written")
            for col, name in zip(cols, names, strict=True):
                write = [i for i, (e, ok) in enumerate(zip(ids, oks, strict=True))
                         if ok and e in todo[c][name]]
                if not write:
                    continue
                store.write_experiment_features(con, plan.fsids[name], [ids[i] for i in write],
                                                x[col][write])
                result.written[name] = result.written.get(name, 0) + len(write)
