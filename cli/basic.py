"""`ishwh init`, `ishwh status` and `ishwh sql`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ishwh import query as q
from ishwh import status as st
from ishwh import warehouse
from ishwh.errors import IshwhError

from .common import DbOption, JsonOption, console, db_default, err_console, print_json


def init(db: DbOption = None) -> None:
    """Create a warehouse, or upgrade an existing one to this ishwh's schema."""
    db = db or db_default()
    done = warehouse.init(db)
    if done:
        names = ", ".join(m.name for m in done)
        err_console.print(
            f"[green]warehouse {db}[/]: applied {len(done)} migration(s): {names}", soft_wrap=True
        )
    else:
        err_console.print(f"warehouse {db} is up to date", soft_wrap=True)


def status(
    db: DbOption = None,
    as_json: JsonOption = False,
    check: Annotated[
        bool, typer.Option("--check", help="Run the data checks of sql/checks/ instead; exit "
                                           "code 1 and the names of the failing ones if any "
                                           "finds rows.")
    ] = False,
) -> None:
    """Row counts, stages, feature sets and runs of a warehouse (read-only)."""
    if check:
        _check(db or db_default(), as_json)
        return
    info = st.summary(db or db_default())
    if as_json:
        print_json(info)
        return
    console.print(f"[bold]{info['db']}[/] (schema v{info['schema_version']})")
    counts = Table("table", "rows", title="contents")
    for name, n in info["counts"].items():
        counts.add_row(name, f"{n:,}")
    console.print(counts)
    if info["stages"]:
        t = Table("stage", "experiments", "sections", "annotated", title="stages")
        for r in info["stages"]:
            counts_ = (f"{r[k]:,}" for k in ("n_experiments", "n_sections", "n_annotated"))
            t.add_row(r["stage"], *counts_)
        console.print(t)
    if info["feature_sets"]:
        t = Table("feature set", "extractor", "dim", "experiments", "finished", "runs",
                  title="features")
        for r in info["feature_sets"]:
            t.add_row(r["name"], r["extractor"], f"{r['dim']:,}", f"{r['n_experiments']:,}",
                      "yes" if r["is_finished"] else "no", f"{r['n_runs']:,}")
        console.print(t)
    if info["runs"]:
        t = Table("run", "feature set", "stage", "tasks", "labels", "status", "predictions",
                  title="runs")
        for r in info["runs"]:
            t.add_row(str(r["run_id"]), r["feature_set"], r["stage"], r["tasks"],
                      r["label_mode"], r["status"], f"{r['n_predictions']:,}")
        console.print(t)


def _check(db: Path, as_json: bool) -> None:
    from ishwh.checks import run_checks

    results = run_checks(db)
    failed = [r.name for r in results if not r.passed]
    if as_json:
        print_json([{"name": r.name, "description": r.description, "n_rows": r.n_rows,
                     "examples": r.examples} for r in results])
    else:
        t = Table("check", "rows", "what it tests", title="data checks")
        for r in results:
            t.add_row(r.name, f"{r.n_rows:,}", r.description)
        console.print(t)
    if failed:
        raise IshwhError(f"{len(failed)} data check(s) failed: {', '.join(failed)}",
                         hint="see the rows with `ishwh sql --query NAME`")


def sql(
    query: Annotated[str | None, typer.Argument(help="SQL to run (read-only).")] = None,
    name: Annotated[
        str | None, typer.Option("--query", "-q", help="Run a named query or view from sql/.")
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="table, csv, json or parquet.")
    ] = "table",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file.")] = None,
    params: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="A parameter of the named query, KEY=VALUE (value: "
                                           "JSON such as 5 or [1,2], else text); repeatable."),
    ] = None,
    list_: Annotated[
        bool, typer.Option("--list", help="List the named queries and views with their "
                                          "parameters, then exit.")
    ] = False,
    db: DbOption = None,
) -> None:
    """Run a read-only SQL query (or a named one) on the warehouse."""
    if list_:
        for nq in q.named_queries().values():
            typer.echo(f"{nq.name} ({nq.kind}): {nq.description}")
            for k, v in nq.params.items():
                typer.echo(f"    --param {k}=...  {v}")
        return
    if fmt not in ("table", "csv", "json", "parquet"):
        raise typer.BadParameter("must be table, csv, json or parquet", param_hint="--format")
    if fmt == "table" and out is not None:
        raise typer.BadParameter("--out needs --format csv, json or parquet", param_hint="--out")
    if fmt == "parquet" and out is None:
        raise typer.BadParameter("--format parquet needs --out FILE", param_hint="--format")
    result = q.run(db or db_default(), query, name, q.parse_params(params))
    if fmt == "table":
        t = Table(*result.column_names)
        for row in result.to_pylist():
            t.add_row(*("" if v is None else str(v) for v in row.values()))
        console.print(t)
        err_console.print(f"{result.num_rows} row(s)", soft_wrap=True)
        return
    text = q.write_table(result, fmt, out)
    if text is not None:
        typer.echo(text, nl=not text.endswith("\n"))
    else:
        err_console.print(f"wrote {result.num_rows} row(s) to {out}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command()(init)
    app.command()(status)
    app.command()(sql)
