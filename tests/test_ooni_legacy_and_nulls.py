"""Two shapes older or sparser OONI documents take. Legacy failure strings (ooni/probe-legacy's,
ooni/spec data-formats/df-007-errors.md "legacy errors") are stored exactly as the document has
them, and the verdict rules read the unambiguous ones as the failure they are. And a test_keys
field that is null (OONI writes null for "none") imports like an absent one: never an error."""

from __future__ import annotations

import copy
import gzip
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from probe.model import LEGACY_FAILURES, Failure, current_failure
from probe.ooni.document import parse_document
from probe.ooni.importer import import_document, import_ooni
from probe.store import Store


def _load(ooni_dir: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ooni_dir / name).read_text())
    return data


def _renamed(value: Any, old: str, new: str) -> Any:
    """The document with every `failure` equal to `old` written as `new`."""
    if isinstance(value, dict):
        return {
            k: new if k == "failure" and v == old else _renamed(v, old, new)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_renamed(v, old, new) for v in value]
    return value


def _rules(data: dict[str, Any]) -> list[tuple[str, str, str]]:
    item = import_document(parse_document(data))
    return [(v.target, str(v.status), v.rule_id) for v in item.bundle.verdicts]


# -- legacy failure strings -----------------------------------------------------------------------


def test_legacy_failure_strings_are_stored_as_the_documents_wrote_them(
    ooni_dir: Path, tmp_path: Path
) -> None:
    db = tmp_path / "o.db"
    with Store.open(db) as store:
        report = import_ooni(store, [ooni_dir])
    assert report.malformed == 0
    with sqlite3.connect(db) as conn:
        stored = {row[0] for row in conn.execute("SELECT DISTINCT failure FROM measurements")}
    # ooni/probe-legacy's strings (the 2017 telegram and legacy web_connectivity documents),
    # next to today's: none rewritten into the other vocabulary.
    assert {
        "connection_refused_error",
        "connect_error",
        "response_never_received",
        "generic_timeout_error",
        "connection_refused",
        "dns_nxdomain_error",
    } <= stored


@pytest.mark.parametrize("legacy", ["tcp_timed_out_error", "deferred_timeout_error"])
def test_a_legacy_timeout_is_judged_as_todays_timeout(ooni_dir: Path, legacy: str) -> None:
    # A Turkmen measurement whose connects to a CDN timed out: the same verdicts, by the same
    # rules, when the probe wrote the timeout in ooni/probe-legacy's words.
    data = _load(ooni_dir, "web_connectivity__TM__K12GviVnQLLRnJoU.json")
    today = _rules(data)
    assert _rules(_renamed(data, "generic_timeout_error", legacy)) == today
    # The negative control: a failure of no known kind is judged otherwise.
    assert _rules(_renamed(data, "generic_timeout_error", "made_up_error")) != today


def test_each_legacy_string_reads_as_one_of_todays_and_others_stay_as_they_are() -> None:
    for legacy, today in LEGACY_FAILURES.items():
        assert current_failure(legacy) == str(today) and legacy not in set(map(str, Failure))
    for kept in (None, "connect_error", "dns_lookup_error", "response_never_received", "x"):
        assert current_failure(kept) == kept
    assert all(current_failure(str(f)) == str(f) for f in Failure)


# -- null keys --------------------------------------------------------------------------------


NULLABLE = [
    ("queries",),
    ("tcp_connect",),
    ("tls_handshakes",),
    ("requests",),
    ("network_events",),
    ("control",),
    ("control_failure",),
    ("accessible",),
    ("blocking",),
    ("x_doh",),
    ("queries", 0, "answers"),
    ("queries", 0, "failure"),
    ("queries", 0, "engine"),
    ("queries", 0, "resolver_address"),
    ("queries", 0, "t"),
    ("tcp_connect", 0, "status"),
    ("tcp_connect", 0, "status", "failure"),
    ("tcp_connect", 0, "status", "success"),
    ("tcp_connect", 0, "ip"),
    ("tls_handshakes", 0, "failure"),
    ("tls_handshakes", 0, "peer_certificates"),
    ("tls_handshakes", 0, "server_name"),
    ("tls_handshakes", 0, "address"),
    ("requests", 0, "failure"),
    ("requests", 0, "request"),
    ("requests", 0, "response"),
    ("requests", 0, "response", "body"),
    ("requests", 0, "response", "headers"),
    ("requests", 0, "response", "headers_list"),
    ("requests", 0, "response", "code"),
    ("requests", 0, "request", "headers"),
    ("requests", 0, "request", "body"),
    ("control", "dns"),
    ("control", "dns", "addrs"),
    ("control", "dns", "failure"),
    ("control", "tcp_connect"),
    ("control", "tls_handshake"),
    ("control", "http_request"),
    ("control", "http_request", "headers"),
    ("control", "http_request", "status_code"),
    ("control", "http_request", "failure"),
]


def _nulled(
    data: dict[str, Any], path: tuple[str | int, ...], *, remove: bool = False
) -> dict[str, Any] | None:
    """A copy with test_keys at `path` set to null (or, `remove`, left out); None when the
    document has no such key."""
    out = copy.deepcopy(data)
    node: Any = out["test_keys"]
    for step in path[:-1]:
        if isinstance(step, int):
            if not isinstance(node, list) or len(node) <= step:
                return None
        elif not isinstance(node, dict) or not isinstance(node.get(step), dict | list):
            return None
        node = node[step]
    if not isinstance(node, dict) or path[-1] not in node:
        return None
    if remove:
        del node[path[-1]]
    else:
        node[path[-1]] = None
    return out


Variant = tuple[str, tuple[str | int, ...], dict[str, Any], dict[str, Any]]


def _variants(ooni_dir: Path) -> Iterator[Variant]:
    """(document, path, the document with that key null, the document without it)."""
    for source in sorted(ooni_dir.glob("*.json")):
        data = json.loads(source.read_text())
        paths = list(NULLABLE)
        # Each control endpoint's entry (the helper has no result for that endpoint).
        control = data["test_keys"].get("control")
        for part in ("tcp_connect", "tls_handshake"):
            if isinstance(control, dict) and isinstance(control.get(part), dict):
                paths += [("control", part, key) for key in list(control[part])[:2]]
        for path in paths:
            nulled = _nulled(data, path)
            removed = _nulled(data, path, remove=True)
            if nulled is not None and removed is not None:
                yield source.name, path, nulled, removed


def test_a_null_test_key_imports_as_if_it_were_absent(ooni_dir: Path) -> None:
    tried: set[tuple[str | int, ...]] = set()
    for name, path, nulled, removed in _variants(ooni_dir):
        item = import_document(parse_document(nulled))
        assert item.bundle.run.id, (name, path)
        verdicts = [(v.target, v.status, v.rule_id, v.detail) for v in item.bundle.verdicts]
        absent = import_document(parse_document(removed)).bundle.verdicts
        assert verdicts == [(v.target, v.status, v.rule_id, v.detail) for v in absent], path
        tried.add(path)
    # Every listed null occurs in at least one shared document (else the test proves nothing),
    # and so does a null control entry.
    assert set(NULLABLE) <= tried, set(NULLABLE) - tried
    assert any(p[:2] == ("control", "tcp_connect") and len(p) == 3 for p in tried)
    assert any(p[:2] == ("control", "tls_handshake") and len(p) == 3 for p in tried)


def test_a_jsonl_gz_of_null_keys_imports_every_document(ooni_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "nulls.jsonl.gz"
    count = 0
    with gzip.open(path, "wt", encoding="utf-8") as out:
        seen: set[tuple[str | int, ...]] = set()
        for index, (_, key, data, _) in enumerate(_variants(ooni_dir)):
            if key in seen:
                continue  # one document per null key: the test above reads every one
            seen.add(key)
            data["measurement_uid"] = f"null-variant-{index}"
            out.write(json.dumps(data) + "\n")
            count += 1
    with Store.open(tmp_path / "o.db") as store:
        report = import_ooni(store, [path])
    assert report.problems == [] and report.malformed == 0
    assert sum(report.imported.values()) == report.documents == count
