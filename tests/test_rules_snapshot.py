"""The golden rule table: a rule's meaning cannot change without a RULES_VERSION bump, because
every stored verdict names the RULES_VERSION that decided it."""

from __future__ import annotations

import json

import pytest

from analysis import rules
from analysis.rules import RULES, RULES_VERSION, Rule
from tests.rules_snapshot import describe_rules, load_snapshot

HOW = (
    "If a rule decides differently now, bump RULES_VERSION in analysis/rules.py and record the new "
    "table with `python3 -m tests.rules_snapshot`; if the change is wording or code that decides "
    "the same, re-record with `python3 -m tests.rules_snapshot --same-meaning` and say why in the "
    "commit."
)


def _changes(old: list[dict[str, object]], new: list[dict[str, object]]) -> list[str]:
    before = {str(r["rule_id"]): r for r in old}
    after = {str(r["rule_id"]): r for r in new}
    changed = [f"{i} changed" for i in after if i in before and after[i] != before[i]]
    changed += [f"{i} added" for i in after if i not in before]
    changed += [f"{i} removed" for i in before if i not in after]
    if not changed and [r["rule_id"] for r in old] != [r["rule_id"] for r in new]:
        changed.append("the order of the rules changed (first match wins)")
    return changed


def test_the_rule_table_matches_the_snapshot_of_its_rules_version() -> None:
    snapshot = load_snapshot()
    assert RULES_VERSION in snapshot, (
        f"RULES_VERSION {RULES_VERSION} has no recorded rule table: "
        "run `python3 -m tests.rules_snapshot` and commit tests/golden/rules.json"
    )
    changes = _changes(snapshot[RULES_VERSION], describe_rules())
    assert not changes, (
        f"the rule table changed under RULES_VERSION {RULES_VERSION} ({'; '.join(changes)}). {HOW}"
    )


@pytest.mark.parametrize(
    "edit",
    ["outcome", "condition", "order", "helper constant"],
)
def test_a_changed_rule_is_caught(monkeypatch: pytest.MonkeyPatch, edit: str) -> None:
    recorded = describe_rules()
    table = list(RULES)
    by_id = {rule.rule_id: i for i, rule in enumerate(table)}
    if edit == "outcome":
        i = by_id["tcp.reset"]
        table[i] = Rule(
            "tcp.reset", table[i].condition, rules.INCONCLUSIVE, table[i].comment, table[i].detail
        )
        monkeypatch.setattr(rules, "RULES", tuple(table))
        expected = "tcp.reset changed"
    elif edit == "order":
        i, j = by_id["tcp.reset"], by_id["tcp.timeout"]
        table[i], table[j] = table[j], table[i]
        monkeypatch.setattr(rules, "RULES", tuple(table))
        # The source still lists them in the old order: the description must not be fooled.
        expected = "differ"
    elif edit == "condition":
        source = rules.__loader__.get_source(rules.__name__)  # type: ignore[union-attr]
        assert source is not None
        edited = source.replace(
            "lambda f: f.tcp_failure == TIMEOUT", "lambda f: f.tcp_failure != TIMEOUT"
        )
        assert edited != source
        monkeypatch.setattr("inspect.getsource", lambda _module: edited)
        expected = "tcp.timeout changed"
    else:
        monkeypatch.setattr(rules, "TCP_RESET", frozenset({"connection_reset"}))
        expected = "tcp.reset changed"
    try:
        changes = _changes(recorded, describe_rules())
    except AssertionError as exc:  # the source and the runtime table disagree
        changes = [str(exc)]
    assert any(expected in change for change in changes), changes


def test_the_snapshot_is_plain_json_with_one_entry_per_rule() -> None:
    text = (describe_rules.__globals__["SNAPSHOT"]).read_text(encoding="utf-8")
    assert [r["rule_id"] for r in json.loads(text)[RULES_VERSION]] == [r.rule_id for r in RULES]
