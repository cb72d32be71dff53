"""The rich implementation of :class:`ishwh.progress.Progress`: bars and notes on stderr."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as _RichProgress
from rich.text import Text


class _Rate(ProgressColumn):
    def render(self, task):  # noqa: D102
        speed = task.finished_speed or task.speed
        unit = task.fields.get("unit", "")
        return Text(f"{speed:.1f} {unit}/s" if speed else f"- {unit}/s")


class RichProgress:
    """Draws one bar per phase on stderr (piped stdout stays clean); ``quiet`` draws nothing
    but still prints messages."""

    def __init__(self, quiet: bool = False, console: Console | None = None,
                 transient: bool = False):
        self.quiet = quiet
        self.transient = transient
        self.console = console or Console(stderr=True, highlight=False, soft_wrap=True)
        self._bar: _RichProgress | None = None
        self._task = None

    def start(self, description: str, total: int, unit: str = "items") -> None:
        self.done()
        if self.quiet:
            return
        self._bar = _RichProgress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[unit]}"), _Rate(), TimeElapsedColumn(),
            TimeRemainingColumn(), console=self.console, transient=self.transient)
        self._bar.start()
        self._task = self._bar.add_task(description, total=total or None, unit=unit)

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, n)

    def describe(self, description: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=description)

    def done(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def message(self, text: str) -> None:
        if self._bar is not None:
            self._bar.console.print(text, markup=False)
        else:
            self.console.print(text, markup=False)

    def __enter__(self) -> RichProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.done()


def bar(enabled: bool = True) -> RichProgress | None:
    """The progress a command passes to the library: bars on stderr, or None (nothing)."""
    return RichProgress() if enabled else None
