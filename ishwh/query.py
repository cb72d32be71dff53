"""Read-only SQL over a warehouse: ad-hoc queries and the named queries of ``sql/queries/``.

The one home of named queries: listing them with their descriptions and parameters (read
from each file's header comment), loading their SQL, and binding ``--param KEY=VALUE``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from ishwh.errors import InvalidInput, NotFound, ReadOnlyViolation
from ishwh.resources import resource_dir
from ishwh.vocab import GRADES, PATTERNS
from ishwh.warehouse import connect

_READ_ONLY_TYPES = {"SELECT", "EXPLAIN", "PRAGMA"}


_HEADER_RE = re.compile(r"^--\s*([a-z0-9_]+)\s*:\s*(.*)$")
_PARAM_RE = re.compile(r"^--\s*param\s+([a-z_][a-z0-9_]*)\s*:\s*(.*)$")
_OPTIONAL = "(optional"
#: Parameters a data check (sql/checks/) gets by default: the vocabulary it compares against.
CHECK_DEFAULTS: dict[str, Any] = {"patterns": list(PATTERNS), "grades": list(GRADES)}


@dataclass(frozen=True)
class NamedQuery:
    """A view of ``sql/`` or a query of ``sql/queries/``, read from its header comment.

    The header convention: the first line is ``-- <name>: <one-line description>``; each
    parameter (a DuckDB named parameter ``$name`` in the SQL) is declared on its own line as
    ``-- param <name>: <meaning>``; a meaning that says ``(optional...`` makes the parameter
    default to NULL (the query then does not filter on it).
    """

    name: str
    description: str
    params: dict[str, str]
    path: Path
    kind: str  # "view" (sql/), "query" (sql/queries/) or "check" (sql/checks/)

    @property
    def is_view(self) -> bool:
        return self.kind == "view"

    @property
    def sql(self) -> str:
        """The SQL to run: the query file, or ``select * from <view>``."""
        if self.is_view:
            return f"select * from {self.name}"
        return self.path.read_text(encoding="utf-8")

    def optional(self, param: str) -> bool:
        return _OPTIONAL in self.params.get(param, "")


def _read_named(path: Path, kind: str) -> NamedQuery:
    lines = path.read_text(encoding="utf-8").splitlines()
    first = _HEADER_RE.match(lines[0]) if lines else None
    description = first.group(2).strip() if first and first.group(1) == path.stem else ""
    params = {}
    for line in lines:
        if not line.startswith("--"):
            break
        m = _PARAM_RE.match(line)
        if m:
            params[m.group(1)] = m.group(2).strip()
    return NamedQuery(path.stem, description, params, path, kind)


def named_queries() -> dict[str, NamedQuery]:
    """The named queries by name: the views of ``sql/*.sql``, the queries of
    ``sql/queries/*.sql`` and the data checks of ``sql/checks/*.sql``."""
    root = resource_dir("sql")
    out = {p.stem: _read_named(p, "view") for p in sorted(root.glob("*.sql"))}
    for folder, kind in (("queries", "query"), ("checks", "check")):
        out.update({p.stem: _read_named(p, kind) for p in sorted((root / folder).glob("*.sql"))})
    return dict(sorted(out.items()))


def named_query(name: str) -> NamedQuery:
    """The named query ``name``; :class:`NotFound` lists the ones there are."""
    queries = named_queries()
    if name not in queries:
        raise NotFound(f"no named query {name!r}", hint="one of: " + ", ".join(queries))
    return queries[name]


def query_text(name: str) -> str:
    """The SQL of the named query ``sql/queries/<name>.sql`` or check ``sql/checks/<name>.sql``
    (the one loader of query files)."""
    q = named_query(name)
    if q.is_view:
        raise NotFound(f"{name!r} is a view, not a query file of sql/queries/")
    return q.sql


def parse_params(pairs: list[str] | None) -> dict[str, Any]:
    """``["runs=[1,2]", "stage=E13.5"]`` -> ``{"runs": [1, 2], "stage": "E13.5"}``.

    A value is read as JSON (numbers, ``[1, 2]`` lists, ``null``, ``"text"``); anything that
    is not JSON is kept as text.
    """
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidInput(f"parameter {pair!r} is not KEY=VALUE", param="param")
        if key in out:
            raise InvalidInput(f"parameter {key!r} is given twice", param="param")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def bind(query: NamedQuery, given: dict[str, Any]) -> dict[str, Any]:
    """The parameter values to run ``query`` with: the given ones, NULL for optional ones not
    given; an unknown or a missing required parameter is refused in one line."""
    if query.kind == "check":
        given = {**{k: v for k, v in CHECK_DEFAULTS.items() if k in query.params}, **given}
    unknown = sorted(set(given) - set(query.params))
    if unknown:
        declared = ", ".join(query.params) or "none"
        raise InvalidInput(f"query {query.name} has no parameter {unknown[0]!r}",
                           hint=f"its parameters: {declared}", param="param")
    missing = [p for p in query.params if p not in given and not query.optional(p)]
    if missing:
        raise InvalidInput(f"query {query.name} needs parameter {missing[0]!r} "
                           f"({query.params[missing[0]]})",
                           hint=f"add --param {missing[0]}=VALUE", param="param")
    return {p: given.get(p) for p in query.params}


def resolve_query(query: str | None, name: str | None) -> str:
    """The SQL to run: the text given, or the named query (a view is ``select * from it``)."""
    if (query is None) == (name is None):
        raise InvalidInput("give either a SQL query or a named query, not both or neither")
    if query is not None:
        return query
    return named_query(name).sql


def run(db_path: str | os.PathLike, sql: str | None = None, name: str | None = None,
        params: dict[str, Any] | None = None) -> pa.Table:
    """Run ad-hoc read-only ``sql``, or the named query ``name`` with ``params`` (bound by
    :func:`bind`: unknown or missing parameters are refused before the warehouse is read)."""
    if sql is not None and params:
        raise InvalidInput("parameters go with a named query", param="param")
    text = resolve_query(sql, name)
    bound = bind(named_query(name), params or {}) if name is not None else None
    return run_query(db_path, text, bound)


def tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Tables and views of the warehouse (user-facing; the version table is included)."""
    rows = con.execute(
        "select table_name from information_schema.tables where table_schema = 'main' "
        "order by table_name"
    ).fetchall()
    return [r[0] for r in rows]


def check_read_only(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Refuse any statement that is not a query (INSERT, DROP, COPY ... TO, ATTACH, ...)."""
    try:
        statements = con.extract_statements(sql)
    except duckdb.ParserException as exc:
        raise InvalidInput(f"SQL syntax error: {str(exc).splitlines()[0]}") from exc
    if not statements:
        raise InvalidInput("the SQL text holds no statement")
    for st in statements:
        kind = st.type.name
        if kind not in _READ_ONLY_TYPES:
            raise ReadOnlyViolation(
                f"`ishwh sql` is read-only: {kind} statements are refused",
                hint="use the ishwh commands to change a warehouse",
            )


def run_query(db_path: str | os.PathLike, sql: str,
              params: dict[str, Any] | None = None) -> pa.Table:
    """Run read-only SQL on a warehouse and return the result of the last statement
    (``params``: the values of its DuckDB named parameters ``$name``)."""
    with connect(db_path, read_only=True) as con:
        check_read_only(con, sql)
        try:
            statements = con.extract_statements(sql)
            for st in statements[:-1]:
                con.execute(st).fetchall()  # consume: DuckDB refuses new work on an open result
            return con.sql(statements[-1].query, params=params or None).to_arrow_table()
        except duckdb.CatalogException as exc:
            raise NotFound(
                _message(exc).removeprefix("Catalog Error: "),
                hint="tables and views: " + ", ".join(tables(con)),
            ) from exc
        except duckdb.Error as exc:
            raise InvalidInput(f"query failed: {_message(exc)}") from exc


def _message(exc: Exception) -> str:
    """DuckDB's message on one line, with its "Did you mean ..." but without the SQL echo."""
    lines = []
    for line in str(exc).splitlines():
        if line.startswith("LINE "):
            break
        if line.strip():
            lines.append(line.strip())
    return " ".join(lines)


def _interval_text(v) -> str | None:
    """DuckDB-like text for an Arrow month-day-nano interval: '1 month 3 days 00:00:01.5'."""
    if v is None:
        return None
    parts = []
    if v.months:
        parts.append(f"{v.months} month{'s' if abs(v.months) != 1 else ''}")
    if v.days:
        parts.append(f"{v.days} day{'s' if abs(v.days) != 1 else ''}")
    if v.nanoseconds or not parts:
        secs = v.nanoseconds / 1e9
        h, rem = divmod(abs(secs), 3600)
        m, sec = divmod(rem, 60)
        clock = f"{'-' if secs < 0 else ''}{int(h):02d}:{int(m):02d}:{sec:06.3f}"
        parts.append(clock.rstrip("0").rstrip("."))
    return " ".join(parts)


def _text_safe(table: pa.Table, *, nested: bool) -> pa.Table:
    """Make a result writable by polars: intervals become text; with ``nested`` (CSV),
    list / struct / map columns become JSON text too."""
    import json

    cols = []
    for col in table.columns:
        t = col.type
        if pa.types.is_interval(t):
            col = pa.array([_interval_text(v) for v in col.to_pylist()], pa.string())
        elif nested and (pa.types.is_list(t) or pa.types.is_large_list(t)
                         or pa.types.is_fixed_size_list(t) or pa.types.is_struct(t)
                         or pa.types.is_map(t)):
            col = pa.array([None if v is None else json.dumps(v, default=str)
                            for v in col.to_pylist()], pa.string())
        cols.append(col)
    return pa.table(cols, names=table.column_names)


def write_table(table: pa.Table, fmt: str, out: str | os.PathLike | None) -> str | None:
    """Write a result as csv / json / parquet to ``out`` (or return the text if no file)."""
    import polars as pl

    if fmt not in ("csv", "json", "parquet"):
        raise InvalidInput(f"format must be csv, json or parquet, not {fmt!r}", param="format")
    frame = pl.from_arrow(_text_safe(table, nested=fmt == "csv"))
    if fmt == "parquet":
        if out is None:
            raise InvalidInput("the parquet format needs an output file", param="format")
        frame.write_parquet(out)
        return None
    text = frame.write_csv() if fmt == "csv" else frame.write_json()
    if out is not None:
        Path(out).write_text(text, encoding="utf-8")
        return None
    return text
