"""Progress and one-line messages without a terminal (after fsspec's ``Callback``).

Long library operations take a ``progress`` argument implementing :class:`Progress`; the
library never creates a console. The command line passes the rich implementation in
``cli/progress.py``; a notebook passes its own, or nothing (:data:`SILENT`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol, runtime_checkable


@runtime_checkable
class Progress(Protocol):
    """What a long operation reports: phases with a size, steps done, and messages."""

    def start(self, description: str, total: int, unit: str = "items") -> None:
        """A new phase of ``total`` steps (0 = unknown) begins."""

    def advance(self, n: int = 1) -> None:
        """``n`` more steps of the current phase are done."""

    def describe(self, description: str) -> None:
        """Rename the current phase (e.g. which run is being fitted)."""

    def done(self) -> None:
        """The current phase is over."""

    def message(self, text: str) -> None:
        """A one-line note for the user (a warning, what was skipped, a summary)."""


class Silent:
    """A :class:`Progress` that reports nothing; the default everywhere."""

    def start(self, description: str, total: int, unit: str = "items") -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def describe(self, description: str) -> None:
        pass

    def done(self) -> None:
        pass

    def message(self, text: str) -> None:
        pass


class Recorder(Silent):
    """A :class:`Progress` that keeps what it was told (messages and steps), e.g. for tests
    and notebooks that want to read the notes afterwards."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.phases: list[tuple[str, int]] = []
        self.steps = 0

    def start(self, description: str, total: int, unit: str = "items") -> None:
        self.phases.append((description, total))

    def advance(self, n: int = 1) -> None:
        self.steps += n

    def message(self, text: str) -> None:
        self.messages.append(text)


SILENT = Silent()


def or_silent(progress: Progress | bool | None) -> Progress:
    """``progress``, or :data:`SILENT` when none was given (``None``; ``False`` is accepted
    too, the spelling of the boolean flag this argument replaced)."""
    if progress is None or progress is False:
        return SILENT
    if not isinstance(progress, Progress):
        raise TypeError("progress must implement ishwh.progress.Progress (or be None), "
                        f"not {type(progress).__name__}")
    return progress


@contextmanager
def phase(progress: Progress | bool | None, description: str, total: int,
          unit: str = "items") -> Iterator[Callable[[int], None]]:
    """One phase of ``total`` steps on ``progress``; yields ``advance(n=1)``, ends the phase
    on the way out (also on an error)."""
    p = or_silent(progress)
    p.start(description, total, unit)
    try:
        yield p.advance
    finally:
        p.done()
