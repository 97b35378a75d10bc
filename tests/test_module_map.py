"""docs/modules.md is the module map generated from the module docstrings: it fails here when it
is stale, and every module of probe/ and analysis/ must say its one concept in a docstring."""

from __future__ import annotations

from pathlib import Path

from tests.module_map import REGENERATE, REPO, concept, module_map, undocumented

MODULES_MD = REPO / "docs" / "modules.md"


def test_every_module_says_its_concept_in_a_docstring() -> None:
    assert undocumented() == [], "modules without a docstring (say the module's one concept)"


def test_the_module_map_is_generated_from_the_docstrings() -> None:
    assert MODULES_MD.read_text(encoding="utf-8") == module_map(), (
        f"docs/modules.md is stale: {REGENERATE}"
    )


def test_a_module_without_a_docstring_is_named(tmp_path: Path) -> None:
    (tmp_path / "probe").mkdir()
    (tmp_path / "analysis").mkdir()
    (tmp_path / "probe" / "said.py").write_text('"""Says what it is. More."""\n')
    (tmp_path / "probe" / "silent.py").write_text("x = 1\n")
    assert undocumented(tmp_path) == ["probe/silent.py"]
    assert "- `probe/silent.py`: (no docstring)" in module_map(tmp_path)
    assert "- `probe/said.py`: Says what it is." in module_map(tmp_path)


def test_a_concept_is_the_first_sentence_on_one_line() -> None:
    text = "The DNS check: resolve a host\nthrough one resolver. Then more.\n\nAnother paragraph."
    assert concept(text) == "The DNS check: resolve a host through one resolver."
    assert concept("`probe runs`: the past runs (e.g. 3.5 s each)") == (
        "`probe runs`: the past runs (e.g. 3.5 s each)"
    )
