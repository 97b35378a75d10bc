"""`export --format ooni`: our measurements as OONI data-format documents, checked field by field
against OONI's published structures (df-000 envelope, df-001/002/005/006 entries, the ts-xxx
verdict keys), readable by our own OONI reader, and importable back to the same verdicts."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from analysis.analyse import analyse
from probe.catalog import builtin_targets
from probe.model import Measurement, Run
from probe.ooni.document import parse_document
from probe.ooni.export import EXTENSION_KEY, run_documents
from probe.ooni.importer import import_ooni
from probe.records import Verdict
from probe.store import Store
from tests import builders as b

# -- OONI's structures, from ooni/spec data-formats and nettests ----------------------------------

_STR, _NUM, _BOOL = str, (int, float), bool
_ENVELOPE = {  # df-000 base keys as ooni/probe-cli's model.Measurement writes them
    "annotations": dict,
    "data_format_version": str,
    "measurement_start_time": str,
    "probe_asn": str,
    "probe_cc": str,
    "probe_ip": str,
    "probe_network_name": str,
    "report_id": str,
    "resolver_asn": str,
    "resolver_ip": str,
    "resolver_network_name": str,
    "software_name": str,
    "software_version": str,
    "test_keys": dict,
    "test_name": str,
    "test_runtime": (int, float),
    "test_start_time": str,
    "test_version": str,
}
_ENGINES = {
    "unknown",
    "system",
    "getaddrinfo",
    "golang_net_resolver",
    "go",
    "udp",
    "tcp",
    "dot",
    "doh",
}
# Our export writes null where our verdicts cannot decide (no control): OONI's probes write null
# in the same keys when a check did not run (facebook_*_reachable in the shared documents).
_TS_KEYS: dict[str, dict[str, tuple[type, ...]]] = {
    "telegram": {
        "telegram_tcp_blocking": (bool, type(None)),
        "telegram_http_blocking": (bool, type(None)),
        "telegram_web_status": (str, type(None)),
    },
    "whatsapp": {
        "whatsapp_endpoints_status": (str, type(None)),
        "registration_server_status": (str, type(None)),
        "whatsapp_web_status": (str, type(None)),
    },
    "signal": {"signal_backend_status": (str, type(None))},
    "facebook_messenger": {
        "facebook_tcp_blocking": (bool, type(None)),
        "facebook_dns_blocking": (bool, type(None)),
    },
    "web_connectivity": {"blocking": (bool, str, type(None)), "accessible": (bool, type(None))},
}


def _check(obj: dict[str, Any], spec: dict[str, Any], where: str) -> None:
    for key, kind in spec.items():
        assert key in obj, f"{where}.{key} missing"
        assert isinstance(obj[key], kind), f"{where}.{key}: {type(obj[key]).__name__}"


def validate_ooni_document(doc: dict[str, Any]) -> None:
    """Fail with the path of the first field that breaks OONI's published structure."""
    _check(doc, _ENVELOPE, "$")
    assert doc["data_format_version"] == "0.2.0"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", doc["measurement_start_time"])
    assert re.fullmatch(r"AS\d+", doc["probe_asn"]) and re.fullmatch(r"AS\d+", doc["resolver_asn"])
    assert re.fullmatch(r"[A-Z]{2}", doc["probe_cc"])
    assert doc["input"] is None or isinstance(doc["input"], str)
    tk = doc["test_keys"]
    for i, q in enumerate(tk["queries"]):  # df-002
        where = f"$.test_keys.queries[{i}]"
        _check(
            q,
            {
                "engine": str,
                "hostname": str,
                "query_type": str,
                "resolver_address": str,
                "t0": _NUM,
                "t": _NUM,
            },
            where,
        )
        assert q["engine"] in _ENGINES and q["query_type"] in ("A", "AAAA", "ANY")
        assert q["failure"] is None or isinstance(q["failure"], str)
        for j, a in enumerate(q["answers"] or []):
            field = {"A": "ipv4", "AAAA": "ipv6", "CNAME": "hostname"}[a["answer_type"]]
            assert isinstance(a[field], str), f"{where}.answers[{j}]"
            assert a["ttl"] is None or isinstance(a["ttl"], int)
    for i, c in enumerate(tk["tcp_connect"]):  # df-005
        where = f"$.test_keys.tcp_connect[{i}]"
        _check(c, {"ip": str, "port": int, "status": dict, "t": _NUM}, where)
        assert isinstance(c["status"]["success"], bool)
        assert c["status"]["failure"] is None or isinstance(c["status"]["failure"], str)
        assert c["status"]["success"] == (c["status"]["failure"] is None)
    for i, h in enumerate(tk["tls_handshakes"]):  # df-006
        where = f"$.test_keys.tls_handshakes[{i}]"
        _check(
            h,
            {
                "address": str,
                "cipher_suite": str,
                "negotiated_protocol": str,
                "no_tls_verify": bool,
                "peer_certificates": list,
                "server_name": str,
                "t": _NUM,
                "tls_version": str,
            },
            where,
        )
        assert re.fullmatch(r"(\[[0-9a-f:]+\]|[\d.]+):\d+", h["address"]), h["address"]
        assert all(c["format"] == "base64" for c in h["peer_certificates"])
    for i, r in enumerate(tk["requests"]):  # df-001
        where = f"$.test_keys.requests[{i}]"
        _check(r, {"request": dict, "response": dict, "t": _NUM}, where)
        _check(
            r["request"],
            {
                "headers_list": list,
                "headers": dict,
                "method": str,
                "url": str,
                "body": str,
                "tor": dict,
            },
            f"{where}.request",
        )
        _check(
            r["response"],
            {"code": int, "body": str, "body_is_truncated": bool},
            f"{where}.response",
        )
        for pair in r["response"]["headers_list"] or []:
            assert len(pair) == 2 and all(isinstance(x, str) for x in pair)
    for key, kinds in _TS_KEYS[doc["test_name"]].items() if doc["test_name"] in _TS_KEYS else ():
        assert key in tk, f"$.test_keys.{key} missing"
        assert isinstance(tk[key], kinds), f"$.test_keys.{key}: {tk[key]!r}"
        if isinstance(tk[key], str) and key.endswith("_status"):
            assert tk[key] in ("ok", "blocked")
    if doc["test_name"] == "web_connectivity" and isinstance(tk["blocking"], str):
        assert tk["blocking"] in ("dns", "tcp_ip", "http-failure", "http-diff")


# -- a run of every shape --------------------------------------------------------------------------

DC = "149.154.175.50"


def _run_and_measurements() -> tuple[Run, list[Measurement]]:
    run = b.make_run()
    web = "https://web.telegram.org/"
    measurements = [
        *b.control_site(),
        # Telegram: one DC times out on both ports, web.telegram.org loads.
        b.tcp("telegram", DC, DC, 80, "generic_timeout_error"),
        b.tcp("telegram", DC, DC, 443, "generic_timeout_error"),
        *b.https_site("telegram", web, "web.telegram.org", "149.154.167.99"),
        # WhatsApp: an endpoint reset on both ports.
        b.dns("whatsapp", "e1.whatsapp.net", "e1.whatsapp.net", ["157.240.1.53"]),
        b.tcp("whatsapp", "e1.whatsapp.net", "157.240.1.53", 443, "connection_reset"),
        b.tcp("whatsapp", "e1.whatsapp.net", "157.240.1.53", 5222, "connection_reset"),
        # Signal: chat.signal.org reached.
        *b.https_site("signal", "https://chat.signal.org/", "chat.signal.org", "13.248.212.111"),
        # Facebook: a Messenger endpoint answered with a bogon.
        b.dns("facebook", "b-api.facebook.com", "b-api.facebook.com", ["10.10.34.36"]),
        b.doh("facebook", "b-api.facebook.com", "b-api.facebook.com", ["157.240.1.35"]),
        # A test-list URL with Iran's blockpage.
        b.dns("testlist", "http://news.example/", "news.example", ["10.10.34.34"]),
        b.tcp("testlist", "http://news.example/", "10.10.34.34", 80),
        b.http(
            "testlist",
            "http://news.example/",
            "http://news.example/",
            "10.10.34.34",
            body='<html><iframe src="http://10.10.34.34/?type=Invalid"></iframe></html>',
            title=None,
        ),
        # A DNS-only target (Facebook's STUN name) that does not resolve.
        b.dns("facebook", "stun.fbsbx.com", "stun.fbsbx.com", [], "dns_nxdomain_error"),
        # An unknown failure keeps its text (df-007 "unknown_failure: ...").
        b.tcp(
            "twitter",
            "abs.twimg.com",
            "151.101.0.158",
            443,
            "unknown_failure",
        ),
    ]
    return run, measurements


def _verdicts(run: Run, measurements: Sequence[Measurement]) -> list[Verdict]:
    names = {(m.platform, m.target) for m in measurements}
    targets = [t for t in builtin_targets() if (t.platform, t.name) in names]
    return analyse(run, measurements, targets=targets or None).verdicts


def _documents() -> list[dict[str, Any]]:
    run, measurements = _run_and_measurements()
    verdicts = _verdicts(run, measurements)
    return list(run_documents(run, measurements, verdicts, builtin_targets()))


def test_each_target_kind_becomes_the_closest_ooni_experiment() -> None:
    documents = _documents()
    shapes = sorted((d["test_name"], d["input"]) for d in documents)
    assert shapes == sorted(
        [
            ("web_connectivity", "https://www.google.com/"),
            ("telegram", None),
            ("whatsapp", None),
            ("signal", None),
            ("facebook_messenger", None),
            ("web_connectivity", "http://news.example/"),
            ("urlgetter", "tcpconnect://abs.twimg.com:443"),
        ]
    )
    assert len({d["report_id"] for d in documents}) == 1


def test_every_exported_document_has_oonis_published_structure() -> None:
    for doc in _documents():
        validate_ooni_document(json.loads(json.dumps(doc)))
        parse_document(doc, accept_any=True)  # and our own OONI reader takes it


def test_verdict_keys_are_written_with_oonis_semantics() -> None:
    by_name = {(d["test_name"], d["input"]): d["test_keys"] for d in _documents()}
    telegram = by_name[("telegram", None)]
    # The DC that timed out has no control to tell (inconclusive), and no DC worked: unknown.
    assert telegram["telegram_tcp_blocking"] is None
    assert telegram["telegram_web_status"] == "ok"
    assert by_name[("facebook_messenger", None)]["facebook_dns_blocking"] is True
    blockpage = by_name[("web_connectivity", "http://news.example/")]
    assert blockpage["blocking"] in ("dns", "http-diff") and blockpage["accessible"] is False


def test_df_lists_carry_our_observations_in_oonis_field_names() -> None:
    by_name = {(d["test_name"], d["input"]): d["test_keys"] for d in _documents()}
    telegram = by_name[("telegram", None)]
    assert [(c["ip"], c["port"], c["status"]["failure"]) for c in telegram["tcp_connect"]][:2] == [
        (DC, 80, "generic_timeout_error"),
        (DC, 443, "generic_timeout_error"),
    ]
    (handshake,) = telegram["tls_handshakes"]
    assert (handshake["server_name"], handshake["address"], handshake["tls_version"]) == (
        "web.telegram.org",
        "149.154.167.99:443",
        "TLSv1.3",
    )
    queries = by_name[("facebook_messenger", None)]["queries"]
    assert {(q["engine"], q["query_type"]) for q in queries} >= {("getaddrinfo", "A"), ("doh", "A")}
    twitter = by_name[("urlgetter", "tcpconnect://abs.twimg.com:443")]
    assert twitter["tcp_connect"][0]["status"]["failure"] == "unknown_failure"
    (request,) = by_name[("web_connectivity", "http://news.example/")]["requests"]
    assert request["response"]["code"] == 200 and "10.10.34.34" in request["response"]["body"]


def test_export_then_import_gives_the_same_verdicts(tmp_path: Path) -> None:
    run, measurements = _run_and_measurements()
    verdicts = _verdicts(run, measurements)
    path = tmp_path / "export.jsonl"
    with path.open("w") as out:
        for doc in run_documents(run, measurements, verdicts, builtin_targets()):
            out.write(json.dumps(doc) + "\n")
    with Store.open(tmp_path / "back.db") as store:
        report = import_ooni(store, [path])
        assert report.malformed == 0
        back = list(store.verdicts(run_id=run.id))
        assert len(list(store.measurements(run_id=run.id))) == len(measurements)
    key = [(v.platform, v.target, v.status, v.technique, v.rule_id) for v in verdicts]
    assert [(v.platform, v.target, v.status, v.technique, v.rule_id) for v in back] == key
    # Our own keys, written with OONI's semantics, say what the imported verdicts say.
    outcomes = {a.value for (_, _, a) in report.agreement.counts}
    assert outcomes <= {"agree", "both_undecided"} and "agree" in outcomes


def test_the_extension_is_marked_as_outside_the_spec() -> None:
    for doc in _documents():
        assert EXTENSION_KEY.startswith("x_") and EXTENSION_KEY in doc["test_keys"]
        assert doc["probe_ip"] == "127.0.0.1"
