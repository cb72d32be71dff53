"""``annotate --engine ray``: a stage's experiments scored by a run's stored models in Ray
tasks.

The driver (beside the warehouse; only it opens the file) reads the run's models and the
stage's vectors as the local engine does, puts the models into the object store once, cuts
the vectors into row blocks and scores each block in a Ray task with the local engine's own
scoring function (scores, Platt probabilities, calls and, with ``consistent``, the ontology
pass: all of them row by row, so a block's result does not depend on the others). It gathers
the blocks in order and annotate writes them in its one transaction, as locally.

Ray retries a task whose worker dies (``max_retries``); a block is a pure function of its
rows and the models, so a retried block gives the same rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from ishwh.progress import Progress, or_silent
from ishwh.ray.cluster import RayOptions, fail_once_if_armed, ray_session

ROWS_PER_TASK = 256  # experiments per task (~12 MB of float32 vectors at 12,288 dims)


def _block(fn: Callable[..., Any], rows: np.ndarray, shared: tuple) -> Any:
    """Ray task: ``fn(rows, *shared)``."""
    fail_once_if_armed()
    return fn(rows, *shared)


def map_rows(fn: Callable[..., Any], X: np.ndarray, shared: tuple, opts: RayOptions,
             progress: Progress | None = None, rows_per_task: int | None = None) -> Any:
    """``fn(X, *shared)`` computed on Ray, in row blocks of ``rows_per_task``.

    ``fn`` must be a module-level function that maps the rows of ``X`` one by one; its result
    is a dataclass of arrays whose first axis is the rows (e.g. :class:`ishwh.annotate.Scored`);
    the blocks (``rows_per_task`` rows, default :data:`ROWS_PER_TASK`) are concatenated in
    order.
    ``shared`` travels to the object store once. Connects as ``opts.address`` says (or keeps
    the caller's connection).
    """
    prog = or_silent(progress)
    rows_per_task = rows_per_task or ROWS_PER_TASK
    n = X.shape[0]
    starts = list(range(0, n, rows_per_task))
    with ray_session(opts.address) as ray:
        task = ray.remote(num_cpus=opts.cpus_per_worker, max_retries=3)(_block)
        shared_ref = ray.put(shared)
        refs = [task.remote(fn, X[i:i + rows_per_task], shared_ref) for i in starts]
        index = {r: k for k, r in enumerate(refs)}
        out: list[Any] = [None] * len(refs)
        prog.start("annotate (ray): scoring", n, unit="experiments")
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            k = index[ready[0]]
            out[k] = ray.get(ready[0])
            prog.advance(min(rows_per_task, n - starts[k]))
        prog.done()
    if not out:
        return fn(X, *shared)
    return type(out[0])(**{f.name: np.concatenate([getattr(o, f.name) for o in out])
                           for f in dataclasses.fields(out[0])})
