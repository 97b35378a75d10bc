"""Stream stored measurements to CSV or JSON Lines, one row per measurement, fixed columns.

Rows come straight from the store's iterator and go straight to the output: an export of millions
of measurements holds one chunk in memory. The columns are a contract with researchers' scripts:
append new ones before `details_json`, never rename or reorder.

Data dictionary (MEASUREMENT_COLUMNS, in order):

    measurement_id    uuid4 hex, unique across probes and databases
    run_id            uuid4 hex of the run that made the measurement
    probe_id          uuid4 hex of the probe (random; never derived from the host)
    asn               the probe network's AS number, from the run (empty if unknown)
    country           the probe network's ISO 3166 country code, from the run (empty if unknown)
    platform          catalog platform, e.g. telegram, whatsapp
    target            the target's name within the platform
    endpoint          what was tested: resolver spec (dns), address:port (tcp, tls), URL (http)
    layer             dns | tcp | tls | http
    started_at        UTC, ISO-8601 with microseconds and a Z suffix: 2024-11-20T09:30:00.123456Z
                      (fixed width, so the text sorts chronologically)
    duration_ms       float, monotonic clock
    failure           OONI df-007 failure string; empty on success
    failed_operation  resolve | connect | tls_handshake | http_round_trip | dns_round_trip | read
                      | write | top_level; empty on success
    dns_addresses     dns: the answers (A then AAAA), space-separated
    tls_version       tls: negotiated version, e.g. TLSv1.3
    http_status       http: final status code
    http_body_length  http: body bytes read (capped; see details.body_truncated)
    http_title        http: the page <title>, whitespace collapsed to single spaces
    details_json      the full Observation.details as compact JSON (ASCII, escapes for the rest)

Flattened columns are empty for other layers. No cell contains a line break (text is joined onto
one line; the original stays in details_json), so a file splits into rows on newlines alone.
Rows end with "\\n"; quoting is the csv module's (RFC 4180 style), which pandas, R and
csv.DictReader read.

JSON Lines (JSONL_FIELDS): one object per line with the same keys, except that `details_json`
becomes `details`, the object itself; numbers stay numbers and empty cells are null.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Protocol, TextIO

from probe.model import Layer, Measurement, Run

MEASUREMENT_COLUMNS: tuple[str, ...] = (
    "measurement_id",
    "run_id",
    "probe_id",
    "asn",
    "country",
    "platform",
    "target",
    "endpoint",
    "layer",
    "started_at",
    "duration_ms",
    "failure",
    "failed_operation",
    "dns_addresses",
    "tls_version",
    "http_status",
    "http_body_length",
    "http_title",
    "details_json",
)

JSONL_FIELDS: tuple[str, ...] = (*MEASUREMENT_COLUMNS[:-1], "details")


class MeasurementSource(Protocol):
    """What an export reads: probe.store.Store satisfies it."""

    def measurements(
        self,
        run_id: str | None = None,
        platform: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[Measurement]: ...

    def get_run(self, run_id: str) -> Run | None: ...


def format_timestamp(when: datetime) -> str:
    """UTC ISO-8601 with microseconds and Z, as in the started_at column."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_measurements_csv(
    store: MeasurementSource,
    out: TextIO,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    platform: str | None = None,
    run_id: str | None = None,
    header: bool = True,
) -> int:
    """Write measurements started in [since, until) as CSV; return the number of rows.

    `header=False` appends rows to an export already begun (the CLI does so per platform).
    """
    writer = csv.writer(out, lineterminator="\n")
    if header:
        writer.writerow(MEASUREMENT_COLUMNS)
    count = 0
    for record in _records(store, since=since, until=until, platform=platform, run_id=run_id):
        details = record.pop("details")
        row = [_csv_cell(record[name]) for name in MEASUREMENT_COLUMNS[:-1]]
        row.append(json.dumps(details, separators=(",", ":"), ensure_ascii=True))
        writer.writerow(row)
        count += 1
    return count


def write_measurements_jsonl(
    store: MeasurementSource,
    out: TextIO,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    platform: str | None = None,
    run_id: str | None = None,
    header: bool = True,
) -> int:
    """Write measurements started in [since, until) as JSON Lines; return the number of lines.

    `header` is accepted so that both writers share one signature; JSON Lines has no header.
    """
    del header
    count = 0
    for record in _records(store, since=since, until=until, platform=platform, run_id=run_id):
        # ensure_ascii: U+2028 and friends would otherwise split lines for str.splitlines readers.
        out.write(json.dumps(record, ensure_ascii=True, separators=(",", ":")))
        out.write("\n")
        count += 1
    return count


def measurement_record(measurement: Measurement, run: Run | None) -> dict[str, Any]:
    """One measurement as a JSONL_FIELDS dict: typed values, single-line text, details nested."""
    observation = measurement.observation
    details = observation.details
    network = run.network if run is not None else None
    layer = observation.layer
    record: dict[str, Any] = {
        "measurement_id": measurement.id,
        "run_id": measurement.run_id,
        "probe_id": run.probe_id if run is not None else None,
        "asn": network.asn if network is not None else None,
        "country": _one_line(network.country) if network is not None else None,
        "platform": _one_line(measurement.platform),
        "target": _one_line(measurement.target),
        "endpoint": _one_line(observation.endpoint),
        "layer": str(layer),
        "started_at": format_timestamp(observation.started_at),
        "duration_ms": observation.duration_ms,
        "failure": _one_line(observation.failure),
        "failed_operation": (
            None if observation.failed_operation is None else str(observation.failed_operation)
        ),
        "dns_addresses": None,
        "tls_version": None,
        "http_status": None,
        "http_body_length": None,
        "http_title": None,
        "details": details,
    }
    if layer is Layer.DNS:
        addresses = details.get("addresses")
        if isinstance(addresses, list):
            record["dns_addresses"] = " ".join(str(address) for address in addresses)
    elif layer is Layer.TLS:
        record["tls_version"] = _one_line(details.get("version"))
    elif layer is Layer.HTTP:
        record["http_status"] = details.get("status")
        record["http_body_length"] = details.get("body_length")
        title = details.get("title")
        record["http_title"] = None if title is None else " ".join(str(title).split())
    return record


def _records(
    store: MeasurementSource,
    *,
    since: datetime | None,
    until: datetime | None,
    platform: str | None,
    run_id: str | None,
) -> Iterator[dict[str, Any]]:
    # Runs are few next to measurements (one per probe execution): cache each one looked up.
    runs: dict[str, Run | None] = {}
    for measurement in store.measurements(
        run_id=run_id, platform=platform, since=since, until=until
    ):
        if measurement.run_id not in runs:
            runs[measurement.run_id] = store.get_run(measurement.run_id)
        yield measurement_record(measurement, runs[measurement.run_id])


def _one_line(value: Any) -> str | None:
    """Text with every line break (as str.splitlines sees them) replaced by a space."""
    if value is None:
        return None
    return " ".join(str(value).splitlines())


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)
