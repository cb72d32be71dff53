"""Where the shipped SQL and migration files live.

In a built wheel ``sql/`` and ``migrations/`` are inside the ``ishwh`` package; in a source
checkout (editable install, tests) they sit beside ``ishwh/`` at the top of the repository.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

_HERE = Path(__file__).resolve().parent


@cache
def resource_dir(name: str) -> Path:
    """Return the folder ``name`` (``"sql"`` or ``"migrations"``) shipped with ishwh."""
    for candidate in (_HERE / name, _HERE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"ishwh is installed without its {name}/ folder")

