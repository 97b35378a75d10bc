"""The rule table's meaning as canonical text, and the golden snapshot it is checked against.

A rule's meaning is its id, its place in the table (first match wins), its outcome, the evidence
it cites and its condition. The condition is described by its source, read from the syntax tree
of analysis/rules.py (so formatting does not matter), followed by the module-level helpers and
constants it uses, recursively. How Facts are built is not part of it: that is the facts
builders' business, tested by the verdict tests. Comments and detail templates are wording.

The snapshot (tests/golden/rules.json) keeps one table per RULES_VERSION. To record the table of
a new RULES_VERSION:  python3 -m tests.rules_snapshot
"""

from __future__ import annotations

import ast
import inspect
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FunctionType

from analysis import rules

SNAPSHOT = Path(__file__).parent / "golden" / "rules.json"


class RuleTableShapeError(AssertionError):
    """analysis/rules.py no longer spells RULES as a literal tuple of Rule(...) calls."""


def _rule_calls(tree: ast.Module) -> list[ast.Call]:
    for node in tree.body:
        target: ast.expr | None = node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        if isinstance(target, ast.Name) and target.id == "RULES":
            value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
            if isinstance(value, ast.Tuple) and all(
                isinstance(e, ast.Call) and isinstance(e.func, ast.Name) and e.func.id == "Rule"
                for e in value.elts
            ):
                return [e for e in value.elts if isinstance(e, ast.Call)]
    raise RuleTableShapeError(
        "analysis/rules.py: RULES is not a literal tuple of Rule(...) calls; teach "
        "tests/rules_snapshot.py the new shape"
    )


def _argument(call: ast.Call, index: int, name: str) -> ast.expr:
    for keyword in call.keywords:
        if keyword.arg == name:
            return keyword.value
    if index < len(call.args):
        return call.args[index]
    raise RuleTableShapeError(f"a Rule(...) call in analysis/rules.py has no {name!r}")


def _used_globals(node: ast.AST, definitions: dict[str, ast.AST]) -> Iterator[str]:
    """Module-level names the node refers to, then (depth first) those their definitions use."""
    seen: set[str] = set()
    pending = [node]
    while pending:
        current = pending.pop()
        for child in ast.walk(current):
            if isinstance(child, ast.Name) and child.id not in seen and hasattr(rules, child.id):
                seen.add(child.id)
                yield child.id
                if child.id in definitions:
                    pending.append(definitions[child.id])


def _describe_global(name: str, definitions: dict[str, ast.AST]) -> str:
    value = getattr(rules, name)
    if isinstance(value, FunctionType) and name in definitions:
        return ast.unparse(definitions[name])
    if isinstance(value, frozenset | set):
        return f"{name} = {sorted(map(str, value))}"
    if isinstance(value, str | int | float | bool):
        return f"{name} = {value!r}"
    return f"{name}: {type(value).__name__}"  # a class or module: its name is its meaning here


def describe_rules() -> list[dict[str, object]]:
    """The rule table, in order, as JSON-ready canonical descriptions."""
    tree = ast.parse(inspect.getsource(rules))
    definitions: dict[str, ast.AST] = {
        node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)
    }
    calls = _rule_calls(tree)
    if len(calls) != len(rules.RULES):
        raise RuleTableShapeError("RULES in the source and at run time differ in length")
    table: list[dict[str, object]] = []
    for call, rule in zip(calls, rules.RULES, strict=True):
        rule_id = _argument(call, 0, "rule_id")
        if not isinstance(rule_id, ast.Constant) or rule_id.value != rule.rule_id:
            raise RuleTableShapeError(
                f"RULES in the source and at run time differ at {rule.rule_id!r}"
            )
        condition = _argument(call, 1, "condition")
        used = [n for n in _used_globals(condition, definitions) if n not in {"Rule", "Facts"}]
        table.append(
            {
                "rule_id": rule.rule_id,
                "status": str(rule.outcome.status),
                "technique": rule.outcome.technique,
                "confidence": None
                if rule.outcome.confidence is None
                else str(rule.outcome.confidence),
                "evidence": [str(e) for e in rule.evidence],
                "condition": ast.unparse(condition),
                "uses": [_describe_global(n, definitions) for n in sorted(used)],
            }
        )
    return table


def load_snapshot() -> dict[str, list[dict[str, object]]]:
    if not SNAPSHOT.exists():
        return {}
    loaded: dict[str, list[dict[str, object]]] = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    return loaded


def record(*, overwrite: bool = False) -> str:
    """Store the current table under RULES_VERSION; refuses to replace a recorded version's
    table unless `overwrite` (a change of wording or code that decides the same)."""
    snapshot = load_snapshot()
    version = rules.RULES_VERSION
    current = describe_rules()
    if version in snapshot and snapshot[version] != current and not overwrite:
        return (
            f"RULES_VERSION {version} already has a different table: bump RULES_VERSION in "
            "analysis/rules.py, or pass --same-meaning if no rule decides anything differently"
        )
    snapshot[version] = current
    SNAPSHOT.write_text(json.dumps(snapshot, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return f"recorded the rule table of RULES_VERSION {version} in {SNAPSHOT}"


if __name__ == "__main__":
    message = record(overwrite="--same-meaning" in sys.argv[1:])
    print(message)
    sys.exit(0 if message.startswith("recorded") else 1)
