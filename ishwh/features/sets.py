"""The warehouse side of every extractor: which experiments are in scope, the rows of
``feature_sets`` (made, refused, finished), which experiments a set already holds, the
sections to read, and the work cut into chunks.

Work is done in *chunks* of experiments: the experiments in scope, sorted by id, cut into
fixed chunks of ``chunk_size``. Each chunk is computed and committed in one transaction, so a
killed run loses at most the chunk in flight, and a re-run skips the chunks already written.
Because the chunks (and the image batches inside them, which never cross a chunk) are the
same on every run with the same arguments, a resumed run gives exactly the vectors of an
uninterrupted one. A feature set gets ``finished_at`` when every experiment of the warehouse
that can have it does; running it again then does nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from ishwh import store, warehouse
from ishwh.device import free_cores, torch_threads
from ishwh.errors import InvalidInput, NotFound
from ishwh.features.options import FeaturizeResult
from ishwh.progress import Progress, or_silent, phase
from ishwh.query import query_text


def default_workers() -> int:
    """Decoding processes: decoding at reduced resolution is cheap next to the network, so a
    quarter of the cores (at least one, at most 8) keeps the network fed."""
    return max(1, min(8, (os.cpu_count() or 2) // 4))


def scope(con: duckdb.DuckDBPyConnection, stages: Sequence[str] | None) -> tuple[list[str], Any]:
    """The stages in scope and the experiments (with sections) of those stages."""
    present = [r[0] for r in con.execute(
        "select distinct e.stage, s.stage_order from experiments e left join stages s "
        "using (stage) order by s.stage_order").fetchall()]
    if stages is None:
        chosen = present
    else:
        chosen = list(dict.fromkeys(stages))
        unknown = [s for s in chosen if s not in present]
        if unknown:
            raise NotFound(f"no experiments of stage {', '.join(unknown)} in the warehouse",
                           hint="stages present: " + (", ".join(present) or "none"))
    if not chosen:
        return [], None
    tbl = con.sql(query_text("featurize_scope"), params={"stages": chosen}).to_arrow_table()
    return chosen, tbl


def eligible(con: duckdb.DuckDBPyConnection) -> set[int]:
    """Every experiment of the warehouse that has sections (and so can have a set)."""
    _, all_scope = scope(con, None)
    return set(int(e) for e in all_scope.column("experiment_id").to_pylist()) \
        if all_scope else set()


def existing_set(con: duckdb.DuckDBPyConnection, name: str) -> tuple[int, dict, Any] | None:
    """``(feature_set_id, params, finished_at)`` of set ``name``; None if there is none."""
    rows = con.execute("select feature_set_id, params, finished_at from feature_sets "
                       "where name = ?", [name]).fetchall()
    if not rows:
        return None
    fsid, params, finished = rows[0]
    return int(fsid), json.loads(params) if params else {}, finished


def ensure_set(con: duckdb.DuckDBPyConnection, name: str, extractor: str, dim: int,
               params: dict, hints: dict[str, str] | None = None) -> int:
    """The id of feature set ``name``, created if new; refuses one made with other params
    (``hints``: a more precise hint when a given parameter differs)."""
    found = existing_set(con, name)
    if found is not None:
        fsid, old, _ = found
        diff = sorted(k for k in params if old.get(k) != params[k])
        if diff:
            hint = next((h for k, h in (hints or {}).items() if k in diff),
                        "re-run with the same options, or choose options that give another name")
            raise InvalidInput(
                f"feature set {name} was made with other parameters: "
                + ", ".join(f"{k} {old.get(k)!r} (now {params[k]!r})" for k in diff),
                hint=hint,
            )
        return fsid
    with warehouse.transaction(con):
        con.execute("insert into feature_sets (name, extractor, dim, params) values (?, ?, ?, ?)",
                    [name, extractor, dim, json.dumps(params, sort_keys=True)]).fetchall()
    return store.feature_set_id(con, name)


def done(con: duckdb.DuckDBPyConnection, fsids: Sequence[int]) -> dict[int, set[int]]:
    """``{feature_set_id: experiment ids present}``."""
    out: dict[int, set[int]] = {f: set() for f in fsids}
    if not fsids:
        return out
    tbl = con.sql(query_text("featurize_done"),
                  params={"feature_set_ids": list(fsids)}).to_arrow_table()
    for f, e in zip(tbl.column("feature_set_id").to_pylist(),
                    tbl.column("experiment_id").to_pylist(), strict=True):
        out[int(f)].add(int(e))
    return out


def finish(con: duckdb.DuckDBPyConnection, fsids: dict[str, int], eligible: set[int],
           failed: set[int]) -> list[str]:
    """Set ``finished_at`` on the sets that now hold every eligible experiment."""
    have = done(con, list(fsids.values()))
    finished = []
    for name, fsid in fsids.items():
        if not (eligible - failed - have[fsid]):
            con.execute("update feature_sets set finished_at = coalesce(finished_at, now()) "
                        "where feature_set_id = ?", [fsid]).fetchall()
            finished.append(name)
    return finished


def chunks(ids: Sequence[int], size: int) -> list[list[int]]:
    """``ids`` cut into consecutive chunks of ``size`` (the unit of commit)."""
    return [list(ids[i:i + size]) for i in range(0, len(ids), size)]


@contextmanager
def progress_phase(progress: Progress | None, description: str, total: int,
                   unit: str = "sections") -> Iterator[Callable[[int], None]]:
    """A phase on ``progress`` (nothing when there is nothing to do); yields ``advance(n)``."""
    if total == 0:
        yield lambda n: None
        return
    with phase(progress, description, total, unit) as advance:
        yield advance


def say(progress: Progress | None, message: str) -> None:
    """One status line on ``progress`` (nothing when it is None)."""
    or_silent(progress).message(message)


@contextmanager
def cpu_threads(device_type: str, workers: int) -> Iterator[None]:
    """On CPU, leave one core per decoding worker: torch's OpenMP threads slow down by orders
    of magnitude when they outnumber the free cores (they spin at every barrier)."""
    import torch  # noqa: PLC0415

    with torch_threads(min(torch.get_num_threads(), free_cores(workers))
                       if device_type == "cpu" else None):
        yield


@dataclass
class Section:
    """One section image to read: its experiment, ids, file and size."""

    experiment_id: int
    section_id: int
    section_number: int
    path: str
    width: int
    height: int
    position: float | None


def sections(con: duckdb.DuckDBPyConnection, images_root: Path,
             experiment_ids: Sequence[int]) -> list[Section]:
    """The sections of these experiments, in (experiment, section) order."""
    if not experiment_ids:
        return []
    tbl = con.sql(query_text("featurize_sections"),
                  params={"experiment_ids": [int(e) for e in experiment_ids]}).to_arrow_table()
    cols = {c: tbl.column(c).to_pylist() for c in tbl.column_names}
    return [
        Section(int(e), int(s), int(n), str(images_root / p), int(w), int(h), pos)
        for e, s, n, p, w, h, pos in zip(
            cols["experiment_id"], cols["section_id"], cols["section_number"],
            cols["image_path"], cols["width"], cols["height"], cols["position"], strict=True)
    ]


def problem(sec: Section, message: str) -> str:
    """The one-line description of an unreadable section."""
    message = message.replace(f"cannot read image {sec.path}: ", "")
    return (f"experiment {sec.experiment_id}, section {sec.section_id} "
            f"(number {sec.section_number}), file {sec.path}: {message}")


def unreadable(sec: Section, message: str, on_error: str, result: FeaturizeResult,
               progress: Progress | None,
               hint: str = "fix or remove the file, or re-run with --on-error skip "
                           "(chunks already written are kept)") -> None:
    """An image could not be read: raise (``on_error="fail"``) or note it and go on."""
    text = problem(sec, message)
    if on_error == "fail":
        raise InvalidInput(f"unreadable image: {text}", hint=hint)
    result.problems.append(text)
    say(progress, f"skipped: {text}")


def no_section_read(ids: Sequence[int], have: Any, skip: set[int], failed: set[int],
                    result: FeaturizeResult) -> None:
    """Experiments of ``ids`` (not in ``skip``) with no readable section: failed, named."""
    for e in ids:
        if e not in have and e not in skip:
            failed.add(e)
            result.problems.append(f"experiment {e}: no readable section, no vector written")
