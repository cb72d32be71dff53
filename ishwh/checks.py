"""Data tests: the SELECTs of ``sql/checks/`` return the rows that break a rule.

Zero rows = pass. They run in the test suite and with ``ishwh status --check`` (exit code 1
and the names of the failing checks when any returns rows).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ishwh.query import bind, named_queries
from ishwh.warehouse import connect


@dataclass
class CheckResult:
    """One check: its name, what it tests, how many rows broke it and the first of them."""

    name: str
    description: str
    n_rows: int
    examples: list[dict[str, Any]]

    @property
    def passed(self) -> bool:
        return self.n_rows == 0


def check_names() -> list[str]:
    """The data checks shipped in ``sql/checks/``."""
    return [q.name for q in named_queries().values() if q.kind == "check"]


def run_checks(db_path: str | os.PathLike, examples: int = 5) -> list[CheckResult]:
    """Run every data check on a warehouse (read-only) and return their results."""
    out = []
    with connect(db_path, read_only=True) as con:
        for q in named_queries().values():
            if q.kind != "check":
                continue
            params = bind(q, {})  # the vocabulary: query.CHECK_DEFAULTS
            rows = con.sql(q.sql, params=params or None).to_arrow_table()
            out.append(CheckResult(q.name, q.description, rows.num_rows,
                                   rows.slice(0, examples).to_pylist()))
    return out
