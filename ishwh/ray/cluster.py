"""Connecting to a Ray cluster (or starting a private local one), the engine's options,
and keeping Ray quiet (the library never prints).

Also the one fault-injection point of the engine (:func:`fail_once_if_armed`), so that tests
can kill a worker process in the middle of a job and check that Ray's retries give the same
result.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ishwh.errors import InvalidInput

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
    workers: extractor actors (each holds its extractor: a network, codebooks...).
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
def _without_level_notice() -> Iterator[None]:
    """Drop the one line Ray's core worker writes on the process's stderr (fd 2) when it
    starts with RAY_BACKEND_LOG_LEVEL set ("Set ray log level from environment variable ...");
    anything else it writes there is passed on."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            kept = [line for line in tmp.read().decode(errors="replace").splitlines(True)
                    if "Set ray log level from environment variable" not in line]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


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
        with _without_level_notice():
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
def quiet(ray: Any) -> Iterator[None]:
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


# --------------------------------------------------------------------------- fault injection

FAULT_ENV = "ISHWH_RAY_FAULT_DIR"


def fail_once_if_armed() -> None:
    """Exit this worker process when ``$ISHWH_RAY_FAULT_DIR/armed`` exists (taken atomically:
    exactly one worker dies per arming), as a worker killed by the OS or a lost node would.

    Tests arm it to check that Ray restarts the worker, retries its task and the job's
    result is unchanged; the variable is unset in normal use and this costs one lookup.
    """
    where = os.environ.get(FAULT_ENV)
    if not where:
        return
    try:
        os.rename(os.path.join(where, "armed"), os.path.join(where, "fired"))
    except OSError:
        return
    os._exit(1)
