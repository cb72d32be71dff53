"""The one error family of ishwh.

Library code raises these; the CLI turns them into a single ``Error: ...`` line on stderr
(exit code 1) in exactly one place (``cli/app.py``). Each error may carry a hint that says
how to fix the problem.
"""

from __future__ import annotations


class IshwhError(Exception):
    """Base class: a problem the user can act on.

    Parameters
    ----------
    message:
        What went wrong, in the user's terms (one line).
    hint:
        Optional: how to fix it ("run `ishwh init --db X`").
    param:
        Optional: the library parameter the problem is about (``"stage"``). The message
        speaks library terms; the command line prefixes the matching flag (``--stage: ...``).
    """

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None, *, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.param = param

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} (hint: {self.hint})"
        return self.message


class WarehouseNotFound(IshwhError):
    """The DuckDB file does not exist."""


class WarehouseInUse(IshwhError):
    """Another process holds the DuckDB write lock."""


class SchemaError(IshwhError):
    """The warehouse schema needs migrating, is newer than the code, or was edited."""


class ManifestError(IshwhError):
    """A manifest folder has problems; ``problems`` lists every one (file, line, reason)."""

    def __init__(self, problems: list[str], hint: str | None = None):
        self.problems = list(problems)
        head = f"{len(self.problems)} problem(s) in the manifest, nothing was ingested"
        shown = "; ".join(self.problems[:20])
        more = f"; ... and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
        super().__init__(f"{head}: {shown}{more}", hint)


class InvalidInput(IshwhError):
    """A bad argument or input value (names the parameter)."""


class NotFound(IshwhError):
    """A named thing (feature set, run, stage, table) does not exist."""


class ReadOnlyViolation(IshwhError):
    """A statement that would write was given to a read-only command."""


class NetworkError(IshwhError):
    """The Allen API could not be reached or kept failing."""
