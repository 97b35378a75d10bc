"""The measurements export takes a row's details straight from the stored text when that text
already is the record's encoding (probe.codec.canonical_details), and through the record when
it is not. Both ways must give the same file byte for byte: for varied and hostile details
(formula starts, quotes, control characters, line and paragraph separators, unicode, failure
text) written by today's codec, and for stored texts an older or hand-editing writer left in
another shape (absent keys, ints where floats go, extra keys, another key order)."""

from __future__ import annotations

import csv
import io
import json
import random
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import probe.store.database
from analysis.export import measurement_rows, write_measurements_csv, write_measurements_jsonl
from probe.codec import (
    canonical_details,
    decode_details,
    encode_details,
    encoded_details_column,
    encoded_role,
)
from probe.model import (
    Certificate,
    Details,
    DifferentialKind,
    DnsAnswer,
    DnsPerType,
    DnsQuery,
    DnsResponse,
    HttpTimings,
    HttpTransaction,
    Layer,
    Measurement,
    ProtocolProbe,
    RawCapture,
    Redirect,
    Role,
    Run,
    TcpConnect,
    TlsHandshake,
)
from probe.store import Store, StoreError
from tests.builders import observation
from tests.export_store import ThroughRecords, reference_csv
from tests.store_rows import T0, make_run

HOSTILE = [
    '=HYPERLINK("http://x","y")',
    "+1",
    "-2",
    "@SUM(A1)",
    "\t=cmd",
    " =lead",
    '"quoted", and, commas',
    "back\\slash",
    "line\nbreak\r\nand\x0bvt\x1cfs",
    "nul\x00and\x07bell\x7fdel",
    "sep\u2028line\u2029para\x85nel",
    "é ü ß — ✓ 漢字 🎉",
    "\ud7ff\ue000\uffff",
    "",
]


def _text(rng: random.Random) -> str:
    return rng.choice(HOSTILE) + rng.choice(["", str(rng.randrange(10**6))])


def _details(rng: random.Random, i: int) -> tuple[Layer, Details]:
    """A record of every kind, with the timings real checks record and hostile text."""
    kind = i % 7
    ms = round(rng.uniform(0.1, 5000), rng.randrange(4))
    if kind == 0:
        return Layer.TCP, TcpConnect(f"10.0.{i % 250}.1", 443, address_source=_text(rng))
    if kind == 1:
        name = _text(rng) or "a.example"
        return Layer.DNS, DnsQuery(
            name,
            "udp://185.51.200.2:53",
            "udp",
            rcode="NOERROR",
            addresses=("10.10.34.34", _text(rng)),
            answers=(DnsAnswer("A", "10.10.34.34", rng.randrange(3600), name),),
            responses=(DnsResponse(ms, "NOERROR", ("10.10.34.34",), False, 1),),
            per_type=DnsPerType(a=None, aaaa=_text(rng)),
            second_answer=rng.random() < 0.5,
            redirect_from=_text(rng) if rng.random() < 0.3 else None,
        )
    if kind == 2:
        return Layer.TLS, TlsHandshake(
            "157.240.1.35",
            443,
            _text(rng),
            version=rng.choice(["TLSv1.3", None, _text(rng)]),
            cipher="TLS_AES_128_GCM_SHA256",
            alpn_offered=("h2", "http/1.1"),
            certificates=(Certificate(f"{i:064x}", _text(rng), "CN=R3", sans=(_text(rng),)),),
            verified=True,
            connect_ms=ms,
            handshake_ms=ms / 3,
            differential_kind=DifferentialKind.SNI if rng.random() < 0.3 else None,
        )
    if kind == 3:
        return Layer.HTTP, HttpTransaction(
            f"https://site{i}.example/",
            status=rng.choice([200, 403, None]),
            headers=(("Server", _text(rng)), (_text(rng), "v")),
            body_length=rng.randrange(10**6),
            title=rng.choice([None, _text(rng), "  spaced\ttitle  "]),
            body_prefix=_text(rng),
            redirects=(Redirect("http://a.example/", 301, _text(rng)),),
            timings=HttpTimings(ms, ms * 2, None),
            throughput_kbps=ms * 7,
            differential_kind=DifferentialKind.HOST if rng.random() < 0.3 else None,
        )
    if kind == 4:
        return Layer.TCP, ProtocolProbe("10.0.0.1", 443, payload_bytes=i, response_bytes=i % 5)
    if kind == 5:
        return Layer.DNS, RawCapture(
            available=True,
            evidence="dns_packets",
            note=_text(rng),
            capture={"responses": [{"ttl": i % 64, "answers": [_text(rng)]}], "x": _text(rng)},
        )
    return Layer.TLS, TlsHandshake("149.154.175.50", 443, "t.me")  # repeats: one shared text


def _save_varied(store: Store, count: int, seed: int) -> list[Measurement]:
    rng = random.Random(seed)
    runs: list[Run] = []
    for asn in (58224, 3320):
        run = make_run(store.probe_id(), asn=asn, country="IR" if asn == 58224 else _text(rng))
        store.start_run(run)
        runs.append(run)
    saved = []
    for i in range(count):
        layer, details = _details(rng, i)
        failure, detail = rng.choice(
            [
                (None, None),
                ("connection_reset", None),
                ("unknown_failure", _text(rng)),
                (f"unknown_failure: {_text(rng)}", None),  # as stored before failure_detail
            ]
        )
        saved.append(
            Measurement(
                runs[i % 2].id,
                rng.choice(["telegram", _text(rng) or "x"]),
                _text(rng) or "t",
                observation(
                    layer,
                    _text(rng) or "e",
                    details,
                    failure,
                    failure_detail=detail,
                    started_at=T0 + timedelta(seconds=i // 3),
                    duration_ms=round(rng.uniform(0, 9000), rng.randrange(5)),
                ),
                id=f"m{i:05d}",
            )
        )
    store.save_measurements(saved)
    return saved


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    # The store's caches are the process's: each test starts from empty ones.
    probe.store.database._ENCODED_CACHE.clear()
    monkeypatch.setattr(probe.store.database, "_encoded_cache_chars", 0)
    with Store.open(tmp_path / "probe.db") as opened:
        yield opened


def _csv(source: Any) -> str:
    out = io.StringIO()
    write_measurements_csv(source, out)
    return out.getvalue()


def _jsonl(source: Any) -> str:
    out = io.StringIO()
    write_measurements_jsonl(source, out)
    return out.getvalue()


def _rewrite_details(store: Store, texts: dict[str, str]) -> None:
    """Put other stored texts in the details column, as another writer would have left them."""
    assert store.path is not None
    with sqlite3.connect(store.path) as conn:
        conn.executemany(
            "UPDATE measurements SET details = ? WHERE id = ?",
            [(text, id_) for id_, text in texts.items()],
        )


@pytest.mark.parametrize("entries", [1024, 3])
def test_csv_from_stored_text_is_byte_identical_to_csv_through_records_for_hostile_details(
    store: Store, monkeypatch: pytest.MonkeyPatch, entries: int
) -> None:
    monkeypatch.setattr(probe.store.database, "_DETAILS_CACHE_ENTRIES", entries)
    saved = _save_varied(store, 700, seed=16)
    fast = _csv(store)
    slow = _csv(ThroughRecords(store))
    assert fast == slow
    assert fast == reference_csv(list(measurement_rows(ThroughRecords(store))))
    # One line per measurement (no cell holds a line break), every role among them.
    assert fast.count("\n") == 1 + len(saved)
    assert [row[0] for row in csv.reader(io.StringIO(fast))][1:] == [m.id for m in saved]
    assert len({m.observation.role for m in saved}) == len(Role)
    assert ",'=HYPERLINK" in fast or ",\"'=HYPERLINK" in fast
    i = fast.find("\u2028")
    assert i < 0, fast[i - 300 : i + 30]
    assert len(probe.store.database._ENCODED_CACHE) <= entries


def test_jsonl_from_stored_text_equals_jsonl_through_records(store: Store) -> None:
    _save_varied(store, 300, seed=7)
    assert _jsonl(store) == _jsonl(ThroughRecords(store))


def test_every_record_todays_codec_stores_is_taken_straight_from_its_text(store: Store) -> None:
    saved = _save_varied(store, 140, seed=3)
    assert store.path is not None
    with sqlite3.connect(store.path) as conn:
        stored = dict(conn.execute("SELECT id, details FROM measurements"))
    for measurement in saved:
        o = measurement.observation
        data = json.loads(stored[measurement.id])
        data.pop("failure_detail", None)
        straight = canonical_details(o.layer, data)
        # Every record but the free-form RawCapture: the export's fast way is its usual way.
        assert straight is not isinstance(o.details, RawCapture), o.details


OTHER_WRITERS = {
    # an older writer left out a key whose default is not null: the record writes attempt 1
    "tcp-no-attempt": (Layer.TCP, {"address": "10.0.0.1", "port": 443}),
    "tcp-attempt-null": (Layer.TCP, {"address": "10.0.0.1", "port": 443, "attempt": None}),
    "tcp-extra-key": (Layer.TCP, {"address": "10.0.0.1", "port": 443, "attempt": 1, "x": 1}),
    "tcp-reordered": (Layer.TCP, {"port": 443, "address": "10.0.0.1", "attempt": 1}),
    # an int where a float goes: the record writes 48.0
    "tls-int-ms": (
        Layer.TLS,
        {**encode_details(TlsHandshake("1.2.3.4", 443, "a", handshake_ms=1.5)), "handshake_ms": 48},
    ),
    "tls-short": (Layer.TLS, {"address": "1.2.3.4", "port": 443, "sni": "=a"}),
    "http-null-omitted": (
        Layer.HTTP,
        {**encode_details(HttpTransaction("https://a/", title="=x")), "address_source": None},
    ),
    "dns-nested-short": (
        Layer.DNS,
        {
            **encode_details(DnsQuery("a", "udp://9.9.9.9:53", "udp")),
            "answers": [{"type": "A", "value": "1.2.3.4", "ttl": 5, "name": "a", "extra": None}],
        },
    ),
    "dns-failure-detail-first": (
        Layer.DNS,
        {"failure_detail": "=boom", **encode_details(DnsQuery("a", "udp://9.9.9.9:53", "udp"))},
    ),
    "raw-with-failure-detail": (
        Layer.DNS,
        {
            **encode_details(RawCapture(evidence="dns_packets", capture={"a": [1]})),
            "failure_detail": "kept in the capture",
        },
    ),
}


def test_stored_texts_of_other_writers_are_exported_as_their_records(store: Store) -> None:
    run = make_run(store.probe_id(), asn=58224)
    store.start_run(run)
    saved = [
        Measurement(
            run.id,
            "telegram",
            name,
            observation(layer, "e", decode_details(layer, data), started_at=T0),
            id=name,
        )
        for name, (layer, data) in OTHER_WRITERS.items()
    ]
    store.save_measurements(saved)
    _rewrite_details(store, {name: json.dumps(data) for name, (_, data) in OTHER_WRITERS.items()})
    for layer, data in OTHER_WRITERS.values():
        assert not canonical_details(layer, data)  # none may be taken as it is
    everything = list(measurement_rows(store, roles=None))
    assert len(everything) == len(OTHER_WRITERS)
    assert _csv(store) == _csv(ThroughRecords(store))
    assert _jsonl(store) == _jsonl(ThroughRecords(store))
    tcp = next(row for row in everything if row[0] == "tcp-no-attempt")
    assert tcp[-1] == {"address": "10.0.0.1", "port": 443, "attempt": 1}


@pytest.mark.parametrize(
    "text",
    [
        '{"address": "10.0.0.1", "port": "443", "attempt": 1}',  # a port that is text
        '{"address": "10.0.0.1", "port": 443, "attempt": true}',
        '{"address": "10.0.0.1", "port": 443, "attempt": 1, "failure_detail": 5}',
        '{"address": "10.0.0.1"}',
        "[1, 2]",
        "{not json",
    ],
)
def test_a_details_text_that_is_no_record_is_an_error_naming_the_measurement(
    store: Store, text: str
) -> None:
    run = make_run(store.probe_id())
    store.start_run(run)
    m = Measurement(run.id, "telegram", "dc1", observation(Layer.TCP, "e", TcpConnect("a", 1)))
    store.save_measurements([m])
    _rewrite_details(store, {m.id: text})
    with pytest.raises(StoreError, match=f"measurement {m.id} of run {run.id} does not parse"):
        _csv(store)
    with pytest.raises(StoreError, match=f"measurement {m.id} of run {run.id} does not parse"):
        list(store.measurements())


def _mutations(data: Any, rng: random.Random) -> Iterator[Any]:
    """`data` with one value somewhere replaced by another JSON value, a key dropped or added."""
    if isinstance(data, dict):
        for key in list(data):
            others: tuple[Any, ...] = (None, 1, 1.0, 1.5, True, "x", [], {}, float("inf"), 10**30)
            for other in others:
                yield {**data, key: other}
            yield {k: v for k, v in data.items() if k != key}
            for inner in _mutations(data[key], rng):
                yield {**data, key: inner}
        yield {**data, "added": 1}
        items = list(data.items())
        rng.shuffle(items)
        yield dict(items)
    elif isinstance(data, list):
        for i, item in enumerate(data):
            for inner in _mutations(item, rng):
                yield [*data[:i], inner, *data[i + 1 :]]
        yield [*data, data[0]] if data else ["x"]


def test_a_details_object_is_taken_as_it_is_only_when_it_is_its_records_encoding() -> None:
    rng = random.Random(5)
    checked = taken = 0
    for i in range(14):
        layer, details = _details(rng, i)
        for data in _mutations(encode_details(details), rng):
            checked += 1
            try:
                record = decode_details(layer, data)
            except ValueError:
                assert not canonical_details(layer, data), data
                continue
            encoded = encode_details(record)
            if canonical_details(layer, data):
                taken += 1
                # The same object, keys in the same order: the same JSON text.
                assert list(encoded.items()) == list(data.items()), data
                assert encoded_details_column(layer, data) == (data, None)
            assert encoded_details_column(layer, data)[0] == encoded
    assert checked > 1000 and taken > 50


def test_the_role_of_an_encoding_is_its_records_role() -> None:
    rng = random.Random(9)
    for i in range(70):
        layer, details = _details(rng, i)
        o = observation(layer, "e", details)
        assert encoded_role(encode_details(details)) is o.role
