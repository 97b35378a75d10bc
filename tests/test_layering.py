"""The house is one-way: the store never loads analysis, and probe and analysis form no cycle.

Data flows checks -> store -> analysis; the records analysis persists live in probe/records.py,
below both. These tests read the real import graph (a fresh interpreter; the modules' own
top-level imports), so a new upward import fails them.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("probe", "analysis")


def _loaded_after_import(module: str) -> list[str]:
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    loaded: list[str] = json.loads(done.stdout)
    return loaded


def test_importing_the_store_loads_no_analysis_module() -> None:
    # The package loads Store on first use (probe/store/__init__.py): import what it loads.
    loaded = _loaded_after_import("probe.store.database")
    assert "sqlalchemy" in loaded  # the import really happened
    assert [m for m in loaded if m == "analysis" or m.startswith("analysis.")] == []


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _top_level_imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The project modules `path` imports at module level (not inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in tree.body:
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        for target in targets:
            # `from probe.store import Store` names a module only when it is one.
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _import_graph() -> dict[str, set[str]]:
    files = {
        _module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")
    }
    known = set(files)
    return {name: _top_level_imports(path, name, known) for name, path in files.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_the_cycle_finder_sees_a_cycle_through_both_packages() -> None:
    graph = {"probe.store": {"analysis.model"}, "analysis.model": {"probe.store"}, "probe": set()}
    assert _cycles(graph) == [["analysis.model", "probe.store"]]


def test_probe_and_analysis_have_no_import_cycle_between_them() -> None:
    graph = _import_graph()
    assert "probe.store.database" in graph and "analysis.summaries" in graph
    crossing = [
        component
        for component in _cycles(graph)
        if {member.partition(".")[0] for member in component} == set(PACKAGES)
    ]
    assert crossing == []


def test_no_module_below_the_command_line_imports_analysis() -> None:
    """Only the wiring layers (the CLI, the run session, and the OONI import, which is a run
    session for OONI's documents: it decides verdicts over them with OONI's control) may
    import analysis."""
    graph = _import_graph()
    wiring = (
        "probe.cli",
        "probe.session",
        "probe.__main__",
        "probe.ooni.importer",
        "probe.ooni.control",
        "probe.ooni.disagreements",
    )
    upward = sorted(
        (name, target)
        for name, targets in graph.items()
        if name.startswith("probe") and not name.startswith(wiring)
        for target in targets
        if target.startswith("analysis")
    )
    assert upward == []


def test_commands_share_wiring_through_cli_common_not_each_other() -> None:
    """A command module imports the shared CLI modules, never another command's module."""
    graph = _import_graph()
    shared = {"probe.cli", "probe.cli.app", "probe.cli.base", "probe.cli.common"}
    shared |= {"probe.cli.render", "probe.cli.terminal"}
    commands = {name for name in graph if name.startswith("probe.cli.")} - shared
    assert {"probe.cli.run", "probe.cli.report", "probe.cli.export"} <= commands
    crossing = sorted((name, target) for name in commands for target in graph[name] & commands)
    assert crossing == []


def test_flows_import_neither_the_runner_nor_the_store_nor_analysis() -> None:
    """A flow takes its dependencies from the RunPlan: the runner drives the flows, never the
    other way round, and flows know nothing of where measurements go."""
    graph = _import_graph()
    flows = {name: targets for name, targets in graph.items() if name.startswith("probe.flows")}
    assert {"probe.flows.base", "probe.flows.https"} <= set(flows)
    above = ("probe.runner", "probe.session", "probe.store", "probe.cli", "analysis")
    upward = sorted(
        (name, target)
        for name, targets in flows.items()
        for target in targets
        if target.startswith(above)
    )
    assert upward == []


def test_no_test_module_imports_another_test_module() -> None:
    """Shared test code lives in the toolkit (tests/builders.py, tests/servers/, tests/lab/, ...),
    never in a test module: importing one runs its module-level fixtures and tests' setup in
    another module's session, and couples two test files' edits."""
    offenders: list[str] = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            for name in names:
                if name.rpartition(".")[2].startswith("test_"):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
    assert offenders == []
