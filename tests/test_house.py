"""House rules that can be checked on the source tree: the library does not draw on the
terminal, the CLI holds no SQL, and library errors reach the command line with the flag."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.app import app
from ishwh.progress import Progress, Recorder, or_silent, phase

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def test_library_imports_neither_rich_nor_typer():
    offenders = {
        str(p.relative_to(ROOT)): sorted(_imports(p) & {"rich", "typer", "click"})
        for p in sorted((ROOT / "ishwh").rglob("*.py"))
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"library modules importing terminal UI packages: {offenders}"


def test_library_does_not_print():
    printing = []
    for p in sorted((ROOT / "ishwh").rglob("*.py")):
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                printing.append(f"{p.relative_to(ROOT)}:{node.lineno}")
    assert not printing, f"print() in the library: {printing}"


def test_cli_holds_no_sql():
    words = ("select ", "insert into", "create table", "create or replace view")
    found = [f"{p.name}: {w!r}" for p in sorted((ROOT / "cli").glob("*.py"))
             for w in words if w in p.read_text(encoding="utf-8").lower()]
    assert not found, found


def test_phase_reports_to_a_progress_and_ends_on_error():
    rec = Recorder()
    assert isinstance(rec, Progress)
    with phase(rec, "work", 3, "things") as advance:
        advance(1)
        advance(2)
    assert rec.phases == [("work", 3)] and rec.steps == 3
    with pytest.raises(TypeError, match="Progress"):
        or_silent(True)  # the old boolean "draw a bar" has no meaning in the library


def test_cli_names_the_flag_of_a_library_parameter(db_path):
    res = CliRunner().invoke(app, ["fit", "--features", "x", "--stage", "E12",
                                   "--db", str(db_path)])
    assert res.exit_code == 1
    line = res.output.strip().splitlines()[-1]
    assert line.startswith("Error: --stage: unknown stage 'E12'"), line
