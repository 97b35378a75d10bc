"""Importing OONI documents: every shared real document becomes a run with verdicts, the
agreement with OONI's own keys is what the table below says (and each disagreement is a
documented case where our verdict is the right one), imports are idempotent and streamed, and a
bad document is counted with its file and line."""

from __future__ import annotations

import copy
import gzip
import json
import random
import sqlite3
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from probe.ooni import importer
from probe.ooni.agreement import Agreement
from probe.ooni.document import parse_document
from probe.ooni.importer import (
    ANNOTATION_PREFIX,
    ImportedDocument,
    import_document,
    import_ooni,
    run_id_of,
    stored_agreement,
)
from probe.ooni.verdict_keys import OoniOutcome
from probe.records import Status
from probe.store import Store


def _load(ooni_dir: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ooni_dir / name).read_text())
    return data


def _imported(data: dict[str, Any]) -> ImportedDocument:
    return import_document(parse_document(data))


def _row(item: ImportedDocument, key: str) -> tuple[str, str, str]:
    row = next(r for r in item.agreement if r.key == key)
    return row.ooni.value, row.ours.value, row.agreement.value


def _status(item: ImportedDocument, target: str) -> Status:
    return next(v.status for v in item.bundle.verdicts if v.target == target)


def test_every_shared_document_imports_with_verdicts_and_provenance(
    ooni_dir: Path, tmp_path: Path
) -> None:
    with Store.open(tmp_path / "o.db") as store:
        report = import_ooni(store, [ooni_dir])
        assert report.malformed == 0 and report.problems == []
        assert report.unknown == Counter()
        assert report.imported == Counter(
            {
                "web_connectivity": 30,
                "signal": 9,
                "telegram": 7,
                "whatsapp": 6,
                "facebook_messenger": 3,
            }
        )
        runs = list(store.runs())
        assert len(runs) == 55
        verdict_runs = {v.run_id for v in store.verdicts()}
        assert verdict_runs == {r.id for r in runs}
        iran = store.get_run(
            run_id_of(
                parse_document(_load(ooni_dir, "web_connectivity__IR__cCbffjGasS4tFgb2.json"))
            )
        )
        assert iran is not None
        assert (
            iran.probe_id == "ooni:20220815T190043Z_webconnectivity_IR_197207_n1_cCbffjGasS4tFgb2"
        )
        assert (iran.network.asn, iran.network.country, iran.network.resolver_asn) == (
            197207,
            "IR",
            3356,
        )
        assert iran.network.as_name == "Mobile Communication Company of Iran PLC"
        assert iran.software_version == "ooniprobe-android 3.7.0 web_connectivity 0.4.1"
        assert iran.started_at.isoformat() == "2022-08-15T19:01:30+00:00"
        uid = store.get_run(
            run_id_of(
                parse_document(_load(ooni_dir, "web_connectivity__IE__ritWNm1FDBJJCm0S.json"))
            )
        )
        assert uid is not None
        assert uid.config_digest == "ooni:0120200303c6ba9056fe7973cc6b51d15e2ebe18"
        notes = dict(store.annotations(ANNOTATION_PREFIX))
        assert len(notes) == 55
        note = json.loads(notes[f"{ANNOTATION_PREFIX}{uid.id}:0"])
        assert note["measurement_uid"] == "0120200303c6ba9056fe7973cc6b51d15e2ebe18"
        assert note["keys"] == {"blocking": "http-diff", "accessible": False}


def test_importing_twice_adds_nothing(ooni_dir: Path, tmp_path: Path) -> None:
    with Store.open(tmp_path / "o.db") as store:
        import_ooni(store, [ooni_dir])
        counts = (len(list(store.runs())), len(list(store.measurements())))
        again = import_ooni(store, [ooni_dir])
        assert again.imported == Counter()
        assert again.already_imported == 55
        assert (len(list(store.runs())), len(list(store.measurements()))) == counts


# The agreement over the 55 real documents, per experiment and key: (agree, disagree, ours
# undecided, OONI undecided, both undecided). Every disagreement is one of the documented
# cases below; "ours undecided" is where OONI had no control either and we will not guess.
EXPECTED_AGREEMENT = {
    ("web_connectivity", "blocking"): (20, 3, 2, 3, 2),
    ("telegram", "telegram_tcp_blocking"): (7, 0, 0, 0, 0),
    ("telegram", "telegram_http_blocking"): (7, 0, 0, 0, 0),
    ("telegram", "telegram_web_status"): (4, 1, 2, 0, 0),
    ("whatsapp", "whatsapp_endpoints_status"): (6, 0, 0, 0, 0),
    ("whatsapp", "registration_server_status"): (5, 0, 1, 0, 0),
    ("whatsapp", "whatsapp_web_status"): (4, 1, 1, 0, 0),
    ("signal", "signal_backend_status"): (5, 0, 4, 0, 0),
    ("facebook_messenger", "facebook_dns_blocking"): (2, 1, 0, 0, 0),
    ("facebook_messenger", "facebook_tcp_blocking"): (3, 0, 0, 0, 0),
}
_ORDER = (
    Agreement.AGREE,
    Agreement.DISAGREE,
    Agreement.OURS_UNDECIDED,
    Agreement.OONI_UNDECIDED,
    Agreement.BOTH_UNDECIDED,
)


def test_the_agreement_table_over_every_shared_document(ooni_dir: Path, tmp_path: Path) -> None:
    with Store.open(tmp_path / "o.db") as store:
        report = import_ooni(store, [ooni_dir])
    table = {
        (experiment, key): tuple(counts.get(a, 0) for a in _ORDER)
        for experiment, key, counts in report.agreement.rows()
    }
    for key, expected in EXPECTED_AGREEMENT.items():
        assert table[key] == expected, key
    # Facebook's per-endpoint keys: only RU's legacy ASN check disagrees (see its case).
    dns_keys = [k for k in table if k[1].endswith("_dns_consistent")]
    assert len(dns_keys) == 7
    assert all(table[k][1] == 1 and table[k][0] == 2 for k in dns_keys)
    disagreements = [
        (k, n)
        for k, counts in table.items()
        for n in [counts[1]]
        if n and k[1].endswith("_reachable")
    ]
    assert disagreements == []


def test_stored_agreement_lists_the_same_rows_from_the_database(
    ooni_dir: Path, tmp_path: Path
) -> None:
    with Store.open(tmp_path / "o.db") as store:
        report = import_ooni(store, [ooni_dir])
        stored = list(stored_agreement(store))
    counted = Counter((s.row.experiment, s.row.key, s.row.agreement) for s in stored)
    assert counted == report.agreement.counts
    disagree = {
        (s.row.experiment, s.row.key) for s in stored if s.row.agreement is Agreement.DISAGREE
    }
    assert ("whatsapp", "whatsapp_web_status") in disagree
    assert all(s.run.probe_id.startswith("ooni:") for s in stored)


# -- the documented disagreements: OONI's false positives (and one false negative) ---------------


def test_signal_pinned_ca_failure_is_not_called_blocked(ooni_dir: Path) -> None:
    """signal 0.2.0 pinned the CA Signal's servers used before they moved to another one; the
    handshake then fails with ssl_unknown_authority on every network (ooni/probe#2627), which OONI
    reports as signal_backend_status "blocked". No control saw otherwise: we do not call it."""
    item = _imported(_load(ooni_dir, "signal__AM__2Tjx8RckKKKGB5Fv.json"))
    assert _row(item, "signal_backend_status") == ("blocked", "unknown", "ours_undecided")
    failed = [m for m in item.bundle.measurements if m.layer == "tls" and m.failure]
    assert len(failed) == 5 and all(m.failure == "ssl_unknown_authority" for m in failed)
    assert all(v.status is not Status.BLOCKED for v in item.bundle.verdicts)


def test_facebook_legacy_asn_check_is_not_dns_blocking(ooni_dir: Path) -> None:
    """facebook_messenger 0.5.0 calls an answer consistent only when its ASN lookup says
    AS32934; here it had no ASN (null) for 157.240.194.x, Facebook's own addresses, and called
    every endpoint DNS-inconsistent. The answers are neither bogons nor blockpage addresses."""
    data = _load(ooni_dir, "facebook_messenger__RU__fqDY31xiRoWEdKd4.json")
    item = _imported(data)
    assert _row(item, "facebook_dns_blocking") == ("blocked", "ok", "disagree")
    assert _row(item, "facebook_b_api_dns_consistent") == ("blocked", "ok", "disagree")
    addresses = {
        a
        for m in item.bundle.measurements
        if m.layer == "dns"
        for a in getattr(m.observation.details, "addresses", ())
    }
    assert addresses and all(a.startswith("157.240.") for a in addresses)


def test_whatsapp_web_status_code_that_changed_is_not_blocking(ooni_dir: Path) -> None:
    """whatsapp 0.9.0 expected web.whatsapp.com to answer 200; it answered 400 over HTTPS (ts-018:
    WhatsApp answers 400 to a User-Agent that does not match the ClientHello), which OONI wrote as
    http_unexpected_status_code, "blocked". The server answered: nothing was blocked."""
    item = _imported(_load(ooni_dir, "whatsapp__IE__qXiNfqqAGfleHPLR.json"))
    assert _row(item, "whatsapp_web_status") == ("blocked", "ok", "disagree")
    assert _status(item, "https://web.whatsapp.com/") is Status.OK
    statuses = {
        getattr(m.observation.details, "status", None)
        for m in item.bundle.measurements
        if m.layer == "http" and m.target == "https://web.whatsapp.com/"
    }
    assert statuses == {400}


def test_ipv6_failing_on_a_network_without_ipv6_is_not_tcp_blocking(ooni_dir: Path) -> None:
    """The probe's network has no IPv6: every IPv6 connect fails with host_unreachable while
    IPv4 works. web_connectivity 0.4 counted such failures against the site ("tcp_ip"); 0.5 and
    our rules do not. The document as 0.4 would have written it disagrees with us; 0.5 agrees."""
    data = _load(ooni_dir, "web_connectivity__IT__2vIxoSVkx173MfvV.json")
    item = _imported(data)
    v6 = [
        m
        for m in item.bundle.measurements
        if m.layer == "tcp" and m.observation.endpoint.startswith("[")
    ]
    assert v6 and all(m.failure == "host_unreachable" for m in v6)
    assert _row(item, "blocking") == ("ok", "ok", "agree")
    legacy = copy.deepcopy(data)
    legacy["test_keys"].update(blocking="tcp_ip", accessible=False)
    assert _row(_imported(legacy), "blocking") == ("blocked", "ok", "disagree")


def test_a_name_answering_127_0_0_1_at_the_control_too_is_not_dns_blocking(
    ooni_dir: Path,
) -> None:
    """A name whose owner points it at 127.0.0.1: the probe's resolver and the test helper both
    answer 127.0.0.1, nothing listens. web_connectivity 0.4 calls any bogon answer DNS
    inconsistent ("dns"); the control answered the same, so it is down by design, not blocked."""
    data = _load(ooni_dir, "web_connectivity__RU__I0rABGogC4OLATJx.json")
    tk = data["test_keys"]
    host = "www.pokerroom.com"
    for query in tk["queries"]:
        query["answers"] = [{"answer_type": "A", "ipv4": "127.0.0.1", "ttl": None}]
        query["failure"] = None
    tk["tcp_connect"] = [
        {
            "ip": "127.0.0.1",
            "port": 80,
            "status": {"success": False, "failure": "connection_refused", "blocked": True},
        }
    ]
    tk["requests"] = [
        {
            "failure": "connection_refused",
            "request": {"url": f"http://{host}/", "method": "GET", "headers": {}, "body": ""},
            "response": None,
        }
    ]
    tk["control"] = {
        "dns": {"failure": None, "addrs": ["127.0.0.1"]},
        "tcp_connect": {"127.0.0.1:80": {"status": False, "failure": "connection_refused_error"}},
        "http_request": {
            "failure": "connection_refused_error",
            "status_code": -1,
            "body_length": -1,
            "headers": {},
            "title": "",
        },
    }
    tk.update(blocking="dns", accessible=False, dns_consistency="inconsistent")
    item = _imported(data)
    ooni, ours, agreement = _row(item, "blocking")
    assert (ooni, agreement) == ("blocked", "disagree")
    assert ours == OoniOutcome.DOWN.value
    verdict = item.bundle.verdicts[0]
    assert verdict.status is Status.DOWN and not (verdict.technique or "").startswith("dns")


def test_an_indonesian_landing_page_ooni_missed_is_blocking(ooni_dir: Path) -> None:
    """web_connectivity 0.4.3 called archive.org in Indonesia unblocked, but the request was
    redirected to lamanlabuh.aduankonten.id, the government's landing page (fastpath fixture of
    2025-05-27): the page differs from the control's, and we say so."""
    item = _imported(_load(ooni_dir, "web_connectivity__ID__Ukv1uRt9GZcoX2jT.json"))
    assert _row(item, "blocking") == ("ok", "blocked", "disagree")
    verdict = item.bundle.verdicts[0]
    assert verdict.status is Status.BLOCKED
    urls = {getattr(m.observation.details, "url", "") for m in item.bundle.measurements}
    assert "http://lamanlabuh.aduankonten.id/" in urls


def test_a_probe_crash_ooni_reported_as_http_failure_is_not_blocking(ooni_dir: Path) -> None:
    """web_connectivity 0.3.0 in NL wrote blocking "http-failure" from its own crash
    ("unknown_failure 'ascii' codec can't decode byte ...") with no request recorded; the
    connect to fa.wikipedia.org's address worked. A probe's bug is not censorship."""
    data = _load(ooni_dir, "web_connectivity__NL__bByhuFiqtRyhhfSS.json")
    assert data["test_keys"]["http_experiment_failure"].startswith("unknown_failure 'ascii'")
    item = _imported(data)
    assert _row(item, "blocking") == ("blocked", "ok", "disagree")


def test_telegram_web_reached_over_https_is_not_blocked(ooni_dir: Path) -> None:
    """telegram 0.2.0 in RU: web.telegram.org's HTTPS page loaded and one of its connects timed
    out; OONI's telegram_web_status is "blocked" when any of its requests fails."""
    item = _imported(_load(ooni_dir, "telegram__RU__qnYloXASGMUg2G9O.json"))
    assert _row(item, "telegram_web_status") == ("blocked", "ok", "disagree")
    https = [
        m
        for m in item.bundle.measurements
        if m.target == "https://web.telegram.org/" and m.layer == "http"
    ]
    assert any(m.failure is None for m in https)


def test_a_resolver_answering_for_a_name_the_control_cannot_resolve_is_down(
    ooni_dir: Path,
) -> None:
    """web_connectivity 0.0.1 in CN: the control (the test helper) got dns_name_error for
    www.efindlove.com; OONI wrote "dns". A name that does not resolve anywhere is down."""
    item = _imported(_load(ooni_dir, "web_connectivity__CN__N1zKxPjDEpG22R0W.json"))
    assert _row(item, "blocking") == ("blocked", "down", "disagree")


# -- streaming, malformed and hostile input --------------------------------------------------------


def _jsonl_gz(ooni_dir: Path, path: Path, copies: int) -> list[dict[str, Any]]:
    documents = [json.loads(p.read_text()) for p in sorted(ooni_dir.glob("*.json"))]
    written = []
    with gzip.open(path, "wt", encoding="utf-8") as out:
        for n in range(copies):
            for i, data in enumerate(documents):
                data = dict(data, measurement_uid=f"copy{n}-{i}")
                written.append(data)
                out.write(json.dumps(data) + "\n")
    return written


def test_a_jsonl_gz_of_the_shared_documents_imports_in_batches(
    ooni_dir: Path, tmp_path: Path
) -> None:
    path = tmp_path / "2024-01-01.jsonl.gz"
    written = _jsonl_gz(ooni_dir, path, copies=2)
    seen: list[int] = []
    with Store.open(tmp_path / "o.db") as store:
        report = import_ooni(
            store, [path], batch_documents=16, progress=lambda r: seen.append(r.documents)
        )
        assert sum(report.imported.values()) == len(written) == 110
        assert len(list(store.runs())) == 110
    assert len(seen) == 7 and seen[-1] == 110
    assert report.bytes_read > 0


def _stored_rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the import's tables in the order stored (the database's own probe id and
    schema version left out: they are the database's, not the import's)."""
    with sqlite3.connect(path) as conn:
        return {
            table: conn.execute(f"SELECT * FROM {table} {where} ORDER BY rowid").fetchall()
            for table, where in (
                ("runs", ""),
                ("measurements", ""),
                ("verdicts", ""),
                ("platform_summaries", ""),
                ("meta", "WHERE key NOT IN ('probe_id', 'schema_version')"),
            )
        }


def test_worker_processes_store_what_one_process_stores(
    ooni_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "2024-01-01.jsonl.gz"
    written = _jsonl_gz(ooni_dir, path, copies=3)
    with gzip.open(path, "rt", encoding="utf-8") as source:
        lines = source.read().splitlines()
    # A bad line, an unknown experiment and a document twice, among the real ones.
    lines[70:70] = ["{truncated", json.dumps({"test_name": "ndt", "test_keys": {}}), lines[3]]
    with gzip.open(path, "wt", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
    pools: list[int] = []

    class CountedPool(ProcessPoolExecutor):
        def __init__(self, workers: int, **options: Any) -> None:
            pools.append(workers)
            super().__init__(workers, **options)

    monkeypatch.setattr(importer, "ProcessPoolExecutor", CountedPool)
    reports = []
    for workers, name in ((0, "one.db"), (2, "two.db")):
        with Store.open(tmp_path / name) as store:
            reports.append(import_ooni(store, [path], workers=workers, batch_documents=50))
    assert pools == [2]
    one, two = reports
    assert sum(two.imported.values()) == len(written) == 165
    assert (two.documents, two.already_imported, two.unknown) == (168, 1, Counter({"ndt": 1}))
    assert (
        two.problems
        == one.problems
        == [
            importer.ImportProblem(
                f"{path}:71",
                "not JSON (Expecting property name enclosed in double quotes: line 1 column 2 "
                "(char 1))",
            )
        ]
    )
    assert (two.imported, two.bytes_read, two.agreement.counts) == (
        one.imported,
        one.bytes_read,
        one.agreement.counts,
    )
    assert _stored_rows(tmp_path / "two.db") == _stored_rows(tmp_path / "one.db")
    with Store.open(tmp_path / "two.db") as store:
        again = import_ooni(store, [path], workers=2)
    assert again.imported == Counter() and again.already_imported == 166


def test_malformed_and_unknown_documents_are_counted_with_file_and_line(
    ooni_dir: Path, tmp_path: Path
) -> None:
    good = _load(ooni_dir, "telegram__US__HKJ2sF9m0lP7JMsW.json")
    broken = copy.deepcopy(good)
    broken["test_keys"]["tcp_connect"][0]["port"] = "eighty"
    lines = [
        json.dumps(good),
        "{truncated",
        json.dumps({"test_name": "ndt", "test_keys": {}}),
        json.dumps(broken),
        json.dumps({"test_name": "dnscheck"}),
        json.dumps({"test_name": ["web_connectivity"]}),
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with Store.open(tmp_path / "o.db") as store:
        report = import_ooni(store, [path])
    assert report.imported == Counter({"telegram": 1})
    assert report.unknown == Counter({"ndt": 1, "dnscheck": 1})
    assert report.malformed == 3
    assert [(p.location, p.message.split(":")[0]) for p in report.problems] == [
        (f"{path}:2", "not JSON (Expecting property name enclosed in double quotes"),
        (f"{path}:4", "test_keys.tcp_connect[0].port"),
        (f"{path}:6", "document.test_name"),
    ]


def test_hostile_text_is_stored_as_data_and_errors_are_one_line(
    ooni_dir: Path, tmp_path: Path
) -> None:
    data = _load(ooni_dir, "web_connectivity__IR__cCbffjGasS4tFgb2.json")
    data["probe_network_name"] = "Evil\x1b[2J\nNet\u202e"
    data["test_keys"]["requests"][0]["failure"] = "weird\x00failure\x1b]0;owned\x07"
    hostile = copy.deepcopy(data)
    hostile["report_id"] = "x" * 100_000
    path = tmp_path / "h.jsonl"
    path.write_text(json.dumps(data) + "\n" + json.dumps(hostile) + "\n")
    with Store.open(tmp_path / "o.db") as store:
        report = import_ooni(store, [path])
        (run,) = store.runs()
        failures = {m.failure for m in store.measurements() if m.layer == "http"}
    assert run.network.as_name == "Evil\x1b[2J\nNet\u202e"
    assert "weird\x00failure\x1b]0;owned\x07" in failures
    assert report.malformed == 1
    (problem,) = report.problems
    assert problem.message == "document.report_id: longer than 256 characters"


@pytest.mark.parametrize("name", ["web_connectivity__IT__2vIxoSVkx173MfvV.json"])
def test_a_large_lte_document_keeps_bodies_bounded(ooni_dir: Path, name: str) -> None:
    item = _imported(_load(ooni_dir, name))
    prefixes = [
        len(getattr(m.observation.details, "body_prefix", ""))
        for m in item.bundle.measurements
        if m.layer == "http"
    ]
    assert prefixes and max(prefixes) <= 2048


_HOSTILE_VALUES: list[Any] = [
    None,
    0,
    -1,
    12,
    1e308,
    True,
    "",
    "x" * 9000,
    "\x00\x1b[2J",
    [],
    {},
    [[1, 2]],
    {"format": "base64", "data": "!!"},
    "AS-1",
    "::1",
]


def _leaves(obj: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path] if path else []
    if isinstance(obj, dict):
        for key, value in obj.items():
            found.extend(_leaves(value, (*path, key)))
    elif isinstance(obj, list):
        for i, value in enumerate(obj[:5]):
            found.extend(_leaves(value, (*path, i)))
    return found


def test_a_thousand_mutated_documents_never_break_the_import(
    ooni_dir: Path, tmp_path: Path
) -> None:
    chance = random.Random(15)
    originals = [json.loads(p.read_text()) for p in sorted(ooni_dir.glob("*.json"))]
    originals = [d for d in originals if len(json.dumps(d)) < 80_000]
    path = tmp_path / "mutants.jsonl"
    with path.open("w") as out:
        for n in range(1000):
            doc = copy.deepcopy(chance.choice(originals))
            doc["measurement_uid"] = f"mutant-{n}"
            for _ in range(3):
                where = chance.choice(_leaves(doc))
                parent = doc
                for step in where[:-1]:
                    parent = parent[step]
                parent[where[-1]] = copy.deepcopy(chance.choice(_HOSTILE_VALUES))
            out.write(json.dumps(doc) + "\n")
    with Store.open(tmp_path / "o.db") as store:
        report = import_ooni(store, [path])
    handled = sum(report.imported.values()) + report.malformed + sum(report.unknown.values())
    assert report.documents == 1000
    assert handled + report.already_imported == 1000
    assert report.malformed > 50 and sum(report.imported.values()) > 50
    assert all("\n" not in p.message for p in report.problems)
