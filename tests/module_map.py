"""The module map: one line per module of probe/ and analysis/, its one concept, taken from the
first sentence of the module's docstring. `python3 -m tests.module_map > docs/modules.md`
regenerates docs/modules.md; tests/test_module_map.py fails when it is stale or a module has no
docstring."""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("probe", "analysis")
REGENERATE = "python3 -m tests.module_map > docs/modules.md"
# The end of a docstring's first sentence: a full stop (! ?) before the next sentence's capital
# or code, so "e.g. 3.5 s" does not end it.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z`])")


def modules(root: Path = REPO) -> Iterator[Path]:
    """Every module of the packages (relative to `root`), folder by folder."""
    for package in PACKAGES:
        found = (p.relative_to(root) for p in (root / package).rglob("*.py"))
        yield from sorted(found, key=lambda p: (p.parent.as_posix(), p.name))


def docstring(path: Path) -> str | None:
    return ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"), str(path)))


def concept(text: str) -> str:
    """A docstring's first sentence, on one line."""
    paragraph = " ".join(text.strip().split("\n\n", 1)[0].split())
    return _SENTENCE_END.split(paragraph, maxsplit=1)[0]


def undocumented(root: Path = REPO) -> list[str]:
    return [str(p) for p in modules(root) if not docstring(root / p)]


def module_map(root: Path = REPO) -> str:
    paths = list(modules(root))
    lines = [
        "# Module map",
        "",
        f"<!-- Generated from the module docstrings by `{REGENERATE}`; a test fails when it is "
        "stale. -->",
        "",
        f"{len(paths)} modules of {', '.join(f'{p}/' for p in PACKAGES)}: each line is the first "
        "sentence of the module's docstring.",
    ]
    package = None
    for path in paths:
        top = "/".join(path.parts[:-1])
        if top != package:
            package = top
            lines += ["", f"## {top}/", ""]
        text = docstring(root / path)
        shown = concept(text) if text else "(no docstring)"
        lines.append(f"- `{path.as_posix()}`: {shown}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(module_map())
