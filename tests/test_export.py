"""CSV and JSON Lines exports from a real SQLite store, read back the way researchers read them."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from types import MappingProxyType

import pytest

from analysis.export import (
    JSONL_FIELDS,
    MEASUREMENT_COLUMNS,
    write_measurements_csv,
    write_measurements_jsonl,
)
from probe.codec import encode_details, measurement_row
from probe.model import (
    DifferentialKind,
    DnsQuery,
    HttpTransaction,
    Layer,
    Measurement,
    MeasurementRow,
    Operation,
    RawCapture,
    Run,
    TcpConnect,
    TlsHandshake,
)
from probe.store import Store
from tests.store_rows import T0, make_measurement, make_run


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(str(tmp_path / "probe.db")) as opened:
        yield opened


def fill(store: Store) -> tuple[Run, list[Measurement]]:
    run = make_run(store.probe_id(), asn=58224, country="IR", as_name="TCI")
    store.start_run(run)
    measurements = [
        make_measurement(
            run.id,
            layer=Layer.DNS,
            endpoint="udp://127.0.0.1:5353",
            target="web",
            details=DnsQuery(
                "web.telegram.org",
                "udp://127.0.0.1:5353",
                "udp",
                rcode="NOERROR",
                addresses=("10.10.34.34", "d0::11"),
            ),
        ),
        make_measurement(
            run.id,
            layer=Layer.TLS,
            started_at=T0 + timedelta(seconds=1),
            failure="connection_reset",
            failed_operation=Operation.TLS_HANDSHAKE,
            details=TlsHandshake("149.154.175.50", 443, "t.me", version="TLSv1.3"),
        ),
        make_measurement(
            run.id,
            platform="whatsapp",
            layer=Layer.HTTP,
            endpoint="http://web.whatsapp.com/",
            started_at=T0 + timedelta(hours=1),
            details=HttpTransaction(
                "http://web.whatsapp.com/",
                status=403,
                body_length=312,
                title='\n  Blocked,  "page"\r\n here\u2028too ',
                body_prefix='<iframe src="http://10.10.34.34?type=Invalid Site">\n</iframe>',
            ),
        ),
    ]
    store.save_measurements(measurements)
    return run, measurements


def export_csv(store: Store, **filters: object) -> tuple[str, int]:
    out = io.StringIO()
    count = write_measurements_csv(store, out, **filters)  # type: ignore[arg-type]
    return out.getvalue(), count


def test_csv_has_exactly_the_documented_columns_in_order(store: Store) -> None:
    fill(store)
    text, count = export_csv(store)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = list(reader)
    assert text.split("\n", 1)[0] == ",".join(MEASUREMENT_COLUMNS)
    assert tuple(reader.fieldnames or ()) == MEASUREMENT_COLUMNS
    assert MEASUREMENT_COLUMNS[-1] == "details_json"
    assert count == len(rows) == 3


def test_csv_rows_carry_the_run_network_and_flattened_details(store: Store) -> None:
    run, saved = fill(store)
    text, _ = export_csv(store)
    dns, tls, http = csv.DictReader(io.StringIO(text, newline=""))

    assert dns["measurement_id"] == saved[0].id
    assert (dns["run_id"], dns["probe_id"]) == (run.id, store.probe_id())
    assert (dns["asn"], dns["country"]) == ("58224", "IR")
    assert (dns["platform"], dns["target"], dns["layer"]) == ("telegram", "web", "dns")
    assert dns["endpoint"] == "udp://127.0.0.1:5353"
    assert dns["started_at"] == "2024-11-20T09:30:00.000000Z"
    assert float(dns["duration_ms"]) == 12.345
    assert (dns["failure"], dns["failed_operation"]) == ("", "")
    assert dns["dns_addresses"] == "10.10.34.34 d0::11"
    assert dns["tls_version"] == dns["http_status"] == dns["http_title"] == ""
    assert json.loads(dns["details_json"]) == encode_details(saved[0].observation.details)
    assert dns["failure_detail"] == ""

    assert (tls["failure"], tls["failed_operation"]) == ("connection_reset", "tls_handshake")
    assert tls["tls_version"] == "TLSv1.3" and tls["dns_addresses"] == ""
    assert tls["started_at"] == "2024-11-20T09:30:01.000000Z"

    assert (http["http_status"], http["http_body_length"]) == ("403", "312")
    assert http["http_title"] == 'Blocked, "page" here too'
    assert json.loads(http["details_json"]) == encode_details(saved[2].observation.details)


def test_line_breaks_inside_values_never_split_a_row(store: Store) -> None:
    run, _ = fill(store)
    store.save_measurements(
        [
            make_measurement(
                run.id,
                target="odd\ntarget",
                started_at=T0 + timedelta(hours=2),
                failure="unknown_failure",
                failure_detail="first line\r\nsecond line",
                failed_operation=Operation.TOP_LEVEL,
                details=TcpConnect("149.154.175.50", 443, address_source="a\nb\u2028c\u0085d ü ß"),
            )
        ]
    )
    text, count = export_csv(store)
    assert len(text.splitlines()) == count + 1 == 5  # a naive line reader sees one line per row
    last = list(csv.DictReader(io.StringIO(text, newline="")))[-1]
    assert last["target"] == "odd target"
    assert last["failure"] == "unknown_failure"
    assert last["failure_detail"] == "first line second line"
    details = json.loads(last["details_json"])
    assert details["address_source"] == "a\nb\u2028c\u0085d ü ß"


def test_export_filters_by_half_open_time_window_and_platform(store: Store) -> None:
    _, saved = fill(store)

    def exported_ids(**filters: object) -> list[str]:
        text, count = export_csv(store, **filters)
        ids = [row["measurement_id"] for row in csv.DictReader(io.StringIO(text, newline=""))]
        assert count == len(ids)
        return ids

    assert exported_ids(platform="whatsapp") == [saved[2].id]
    assert exported_ids(platform="signal") == []
    assert exported_ids(since=T0 + timedelta(seconds=1)) == [saved[1].id, saved[2].id]
    assert exported_ids(until=T0 + timedelta(seconds=1)) == [saved[0].id]
    assert exported_ids(platform="telegram", since=T0 + timedelta(seconds=1)) == [saved[1].id]


def test_rows_without_header_append_to_an_export_already_begun(store: Store) -> None:
    fill(store)
    out = io.StringIO()
    first = write_measurements_csv(store, out, platform="telegram")
    second = write_measurements_csv(store, out, platform="whatsapp", header=False)
    rows = list(csv.DictReader(io.StringIO(out.getvalue(), newline="")))
    assert (first, second) == (2, 1)
    assert [row["platform"] for row in rows] == ["telegram", "telegram", "whatsapp"]


def test_jsonl_has_one_object_per_line_with_details_as_an_object(store: Store) -> None:
    run, saved = fill(store)
    out = io.StringIO()
    count = write_measurements_jsonl(store, out, since=T0 + timedelta(seconds=1))
    lines = out.getvalue().splitlines()
    records = [json.loads(line) for line in lines]

    assert count == len(records) == 2
    assert all(tuple(record) == JSONL_FIELDS for record in records)
    tls, http = records
    assert tls["measurement_id"] == saved[1].id and tls["run_id"] == run.id
    assert tls["asn"] == 58224 and tls["duration_ms"] == 12.345
    assert tls["started_at"] == "2024-11-20T09:30:01.000000Z"
    assert tls["http_status"] is None and tls["tls_version"] == "TLSv1.3"
    assert http["http_status"] == 403
    assert http["details"] == encode_details(saved[2].observation.details)


class RecordingSource:
    """A measurement source that notes how much output existed when each row was handed over."""

    def __init__(self, run: Run, measurements: list[Measurement], out: io.StringIO) -> None:
        self.run, self.items, self.out = run, measurements, out
        self.lines_seen: list[int] = []

    def measurement_rows(
        self,
        run_id: str | None = None,
        platform: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[MeasurementRow]:
        for item in self.items:
            self.lines_seen.append(self.out.getvalue().count("\n"))
            yield measurement_row(item)

    def get_run(self, run_id: str) -> Run | None:
        return self.run if run_id == self.run.id else None


def test_csv_rows_are_written_as_they_stream_not_collected_first() -> None:
    run = make_run("0" * 32)
    items = [make_measurement(run.id, target=f"t{i}") for i in range(5)]
    out = io.StringIO()
    source = RecordingSource(run, items, out)
    assert write_measurements_csv(source, out) == 5
    # When row n is handed over, the header and the n rows before it are already written.
    assert source.lines_seen == [1, 2, 3, 4, 5]


def test_ab_halves_and_packet_captures_are_told_apart_by_a_column(store: Store) -> None:
    run = make_run(store.probe_id())
    store.start_run(run)
    address = "149.154.175.50"
    own = make_measurement(run.id, layer=Layer.TLS, details=TlsHandshake(address, 443, "t.me"))
    harmless = make_measurement(
        run.id,
        layer=Layer.TLS,
        details=TlsHandshake(address, 443, "example.com", differential_kind=DifferentialKind.SNI),
    )
    capture = make_measurement(
        run.id,
        layer=Layer.TCP,
        details=RawCapture(available=True, capture=MappingProxyType({"reset_ttls": [64]})),
    )
    store.save_measurements([own, harmless, capture])
    text, _ = export_csv(store)
    kinds = {
        row["measurement_id"]: row["differential_kind"] for row in csv.DictReader(io.StringIO(text))
    }
    assert kinds == {own.id: "", harmless.id: "sni", capture.id: "raw"}
