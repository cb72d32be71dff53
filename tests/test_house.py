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
    class Counting(Recorder):
        ended = 0

        def done(self) -> None:
            self.ended += 1

    rec = Counting()
    assert isinstance(rec, Progress)
    with phase(rec, "work", 3, "things") as advance:
        advance(1)
        advance(2)
    assert rec.phases == [("work", 3)] and rec.steps == 3 and rec.ended == 1
    with pytest.raises(RuntimeError), phase(rec, "broken", 2):
        raise RuntimeError("boom")
    assert rec.ended == 2  # the bar is closed even when the work fails
    with pytest.raises(TypeError, match="Progress"):
        or_silent(True)  # the old boolean "draw a bar" has no meaning in the library


def test_cli_names_the_flag_of_a_library_parameter(db_path):
    res = CliRunner().invoke(app, ["fit", "--features", "x", "--stage", "E12",
                                   "--db", str(db_path)])
    assert res.exit_code == 1
    line = res.output.strip().splitlines()[-1]
    assert line.startswith("Error: --stage: unknown stage 'E12'"), line


def test_one_rule_for_derived_section_ids():
    from ishwh.ids import SECTION_ID_FACTOR, SYNTHETIC_SECTION_FACTOR, section_id
    from ishwh.synth.generate import Atlas

    assert section_id(123, 7) == 123 * SECTION_ID_FACTOR + 7 == 1_230_007
    # the synthetic atlas keeps its factor (its bag-of-words samples are seeded by section id)
    assert Atlas.section_id(900_000_005, 12) == 900_000_005 * SYNTHETIC_SECTION_FACTOR + 12
    with pytest.raises(ValueError, match="outside 0..99"):
        section_id(1, 100, SYNTHETIC_SECTION_FACTOR)


def test_one_rule_for_a_missing_st_level(tmp_path):
    from ishwh.allen.readers import read_ontology
    from ishwh.errors import InvalidInput
    from ishwh.ontology import fill_root_levels, structures_from_graph_json
    from ishwh.synth.ontology import from_graph_file

    graph = {"msg": [{"id": 1, "acronym": "root", "children": [
        {"id": 2, "acronym": "A", "parent_structure_id": 1, "st_level": 1, "children": [
            {"id": 3, "acronym": "B", "parent_structure_id": 2}]}]}]}
    rows = structures_from_graph_json(graph)
    unknown = fill_root_levels(rows)
    assert [r["level"] for r in rows] == [0, 1, None]  # the root gets 0, B stays unknown
    assert [r["structure_id"] for r in unknown] == [3]
    # every reader applies the same rule: the Allen reader and the synthetic atlas refuse B
    with pytest.raises(InvalidInput, match="no st_level"):
        read_ontology(graph)
    path = tmp_path / "g.json"
    path.write_text(__import__("json").dumps(graph))
    with pytest.raises(InvalidInput, match="no st_level"):
        from_graph_file(path)
    del graph["msg"][0]["children"][0]["children"]
    assert [r["level"] for r in read_ontology(graph)] == [0, 1]


def test_bow_transformer_and_featurize_draw_codebooks_alike():
    import numpy as np

    from ishwh.features import bow

    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 255, (48, 64), dtype=np.uint8) for _ in range(5)]
    est = bow.BowFeatures(n_words=8, max_descriptors=300, n_init=1, seed=2).fit(imgs)
    # the same draw by hand, through the one sampling rule
    sample = bow.CodebookSample(len(imgs), bow.SIFT_SIZES, 300, seed=2)
    for i in sample.order:
        if sample.add(bow.sample_nonzero(bow.dense_sift(imgs[i]), 2, int(i), sample.cap)):
            break
    for (centers, inertia), c, i in zip(sample.fit(8, 1), est.codebooks_, est.inertia_,
                                        strict=True):
        np.testing.assert_array_equal(centers, c)
        assert inertia == i
