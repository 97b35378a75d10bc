"""Stream stored measurements, verdicts and events to CSV or JSON Lines, with fixed columns.

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
    differential_kind empty for the target's own checks; sni | host | protocol: the harmless
                      half of an A/B test on the same address; raw: a packet capture (IP TTL /
                      IP-ID) taken after the run's measurements
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
    failure_detail    unknown_failure only: the free text of the error (a dependency's message,
                      which may change between versions; join on `failure`, never on this)
    details_json      the full Observation.details as compact JSON (ASCII, escapes for the rest),
                      written by probe.codec: its keys are documented in docs/details.md

Flattened columns are empty for other layers. No cell contains a line break (text is joined onto
one line; the original stays in details_json), so a file splits into rows on newlines alone.
Rows end with "\\n"; quoting is RFC 4180 style (the csv module's; details_json is always quoted),
which pandas, R and csv.DictReader read. The verdict and event exports follow the same rules.

Formula injection (OWASP, "CSV Injection"): a text cell that begins with =, +, -, @, a tab or a
carriage return (also after leading blanks) is written with a leading ' so that a spreadsheet
shows it as text instead of running it (a page title "=HYPERLINK(...)" or "@SUM(...)" is
server-controlled). Numbers are never prefixed; details_json starts with "{"; JSON Lines keep
every value as it was.

JSON Lines (JSONL_FIELDS): one object per line with the same keys, except that `details_json`
becomes `details`, the object itself; numbers stay numbers and empty cells are null.

Verdicts (VERDICT_COLUMNS, in order), one row per (run, platform, target), streamed in time order:

    run_id            the run the verdict belongs to
    probe_id          the probe that ran it
    measured_at       the run's start, UTC ISO-8601 with microseconds and Z (as started_at)
    asn, country      the probe's network at the time (empty if unknown)
    platform, target  what was judged
    status            ok | blocked | down | inconclusive
    technique         how it was blocked (dns.bogon, tcp.timeout, tls.sni_reset, ...); blocked only
    confidence        confirmed | anomaly; blocked only
    rule_id           the rule that decided it (analysis/rules.py; ids are never renamed)
    rules_version     the rules version that wrote the row
    evidence          ids of the measurements the rule read, space-separated (a list in JSONL)
    detail            why, in a sentence

Events (EVENT_COLUMNS, in order), one row per detected event, sorted by onset:

    kind              blocking | intermittent | partial | technique_change
    platform          the platform affected
    asn               the network when the event is confined to one; empty when it spans several
    networks          every network in scope, space-separated AS numbers ("unknown" for verdicts
                      whose network was unknown); a list in JSONL (null for unknown)
    technique         dominant technique at onset; "<previous> -> <new>" for technique_change
    onset             start of the first hourly bucket of the evidence (UTC, Z)
    end               start of the first bucket back to ok; empty while ongoing
    ongoing           true | false
    targets           the targets affected, space-separated (a list in JSONL)
    hosts             distinct probes that agree (integer)
    rate              share of runs blocked during an intermittent event (0..1); empty otherwise
    runs              ok + blocked verdicts in scope during the event (integer)
    detail            the event in a sentence
"""

from __future__ import annotations

import csv
import functools
import json
import re
from collections.abc import Collection, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TextIO

from analysis.model import Event
from probe.codec import encode_details
from probe.model import DnsQuery, HttpTransaction, Measurement, Run, TlsHandshake
from probe.records import Verdict

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
    "differential_kind",
    "started_at",
    "duration_ms",
    "failure",
    "failed_operation",
    "dns_addresses",
    "tls_version",
    "http_status",
    "http_body_length",
    "http_title",
    "failure_detail",
    "details_json",
)

JSONL_FIELDS: tuple[str, ...] = (*MEASUREMENT_COLUMNS[:-1], "details")

VERDICT_COLUMNS: tuple[str, ...] = (
    "run_id",
    "probe_id",
    "measured_at",
    "asn",
    "country",
    "platform",
    "target",
    "status",
    "technique",
    "confidence",
    "rule_id",
    "rules_version",
    "evidence",
    "detail",
)

EVENT_COLUMNS: tuple[str, ...] = (
    "kind",
    "platform",
    "asn",
    "networks",
    "technique",
    "onset",
    "end",
    "ongoing",
    "targets",
    "hosts",
    "rate",
    "runs",
    "detail",
)

_ZERO = timedelta(0)

# How an unknown network is written in the space-separated `networks` column of the CSV.
UNKNOWN_NETWORK = "unknown"


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


class VerdictSource(Protocol):
    """Where verdicts come from: probe.store.Store satisfies it."""

    def verdicts(
        self,
        *,
        run_id: str | None = None,
        platform: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[Verdict]: ...


def format_timestamp(when: datetime) -> str:
    """UTC ISO-8601 with microseconds and Z, as in the started_at column."""
    if when.utcoffset() != _ZERO:
        when = when.astimezone(UTC)
    # isoformat is several times faster than strftime, and this runs once per exported row:
    # "2024-11-20T09:30:00.123456+00:00" without its offset.
    return when.isoformat(timespec="microseconds")[:26] + "Z"


def select_verdicts(
    source: VerdictSource,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    platforms: Sequence[str] | None = None,
    asns: Collection[int] | None = None,
) -> Iterator[Verdict]:
    """Verdicts measured in [since, until), of `platforms` (all when None or empty) on networks
    `asns` (all when None or empty), streamed: platform by platform when several are named,
    each in time order."""
    names: Sequence[str | None] = list(platforms) if platforms else [None]
    wanted = set(asns) if asns else None
    for name in names:
        stream = source.verdicts(platform=name, since=since, until=until)
        if wanted is None:
            yield from stream
        else:
            yield from (verdict for verdict in stream if verdict.asn in wanted)


def write_measurements_csv(
    store: MeasurementSource,
    out: TextIO,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    platform: str | None = None,
    run_id: str | None = None,
    asns: Collection[int] | None = None,
    runs: Iterable[Run] | None = None,
    header: bool = True,
) -> int:
    """Write measurements started in [since, until) as CSV; return the number of rows.

    `asns` keeps the measurements of runs on those networks only. `runs`: the runs the
    measurements may belong to, read once up front (one query instead of one per run: the
    difference between seconds and minutes for a month of hourly runs); a run not among them is
    looked up on its own. `header=False` appends rows to an export already begun (the CLI does
    so per platform).
    """
    # The csv module writes every column but the last: None as an empty cell, numbers as str()
    # does (repr for floats). details_json, always quoted, is appended by hand: the csv module
    # takes twice as long to scan and quote it as the rest of the row together.
    writer = csv.writer(out, lineterminator="")
    if header:
        writer.writerow(MEASUREMENT_COLUMNS)
        out.write("\n")
    count = 0
    rows = _measurement_values(
        store, since=since, until=until, platform=platform, run_id=run_id, asns=asns, runs=runs
    )
    write = out.write
    for values in rows:
        details = values.pop()
        writer.writerow([inert_cell(v) for v in values])
        write(',"' + _compact_json(details).replace('"', '""') + '"\n')
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
    asns: Collection[int] | None = None,
    runs: Iterable[Run] | None = None,
    header: bool = True,
) -> int:
    """Write measurements started in [since, until) as JSON Lines; return the number of lines.

    `header` is accepted so that both writers share one signature; JSON Lines has no header.
    """
    del header
    count = 0
    rows = _measurement_values(
        store, since=since, until=until, platform=platform, run_id=run_id, asns=asns, runs=runs
    )
    for values in rows:
        _write_json_line(out, dict(zip(JSONL_FIELDS, values, strict=True)))
        count += 1
    return count


def verdict_record(verdict: Verdict) -> dict[str, Any]:
    """One verdict as a VERDICT_COLUMNS dict: typed values, single-line text, evidence a list."""
    return dict(zip(VERDICT_COLUMNS, _verdict_values(verdict), strict=True))


def _verdict_values(verdict: Verdict) -> list[Any]:
    """The VERDICT_COLUMNS values of a verdict, in order: the one place a verdict becomes an
    export row (once per exported verdict: kept flat)."""
    technique, confidence = verdict.technique, verdict.confidence
    return [
        verdict.run_id,
        verdict.probe_id,
        format_timestamp(verdict.measured_at),
        verdict.asn,
        None if verdict.country is None else _one_line_cached(verdict.country),
        _one_line_cached(verdict.platform),
        _one_line_cached(verdict.target),
        verdict.status.value,
        None if technique is None else _one_line_cached(technique),
        None if confidence is None else confidence.value,
        verdict.rule_id,
        verdict.rules_version,
        list(verdict.evidence),
        _one_line(verdict.detail),
    ]


def write_verdicts_csv(verdicts: Iterable[Verdict], out: TextIO) -> int:
    """Write verdicts as CSV (VERDICT_COLUMNS) as they stream; return the number of rows."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(VERDICT_COLUMNS)
    count = 0
    evidence = VERDICT_COLUMNS.index("evidence")
    for verdict in verdicts:
        values = _verdict_values(verdict)
        values[evidence] = " ".join(values[evidence])
        # None is an empty cell; no column here holds a float or bool.
        writer.writerow([inert_cell(v) for v in values])
        count += 1
    return count


def write_verdicts_jsonl(verdicts: Iterable[Verdict], out: TextIO) -> int:
    """Write verdicts as JSON Lines (VERDICT_COLUMNS keys) as they stream; return the count."""
    count = 0
    for verdict in verdicts:
        _write_json_line(out, verdict_record(verdict))
        count += 1
    return count


def event_record(event: Event) -> dict[str, Any]:
    """One event as an EVENT_COLUMNS dict: networks and targets as lists, times as UTC text."""
    return {
        "kind": str(event.kind),
        "platform": _one_line(event.platform),
        "asn": event.asn,
        "networks": list(event.networks),
        "technique": _one_line(event.technique),
        "onset": format_timestamp(event.onset),
        "end": None if event.end is None else format_timestamp(event.end),
        "ongoing": event.end is None,
        "targets": [_one_line(target) for target in event.targets],
        "hosts": event.hosts,
        "rate": event.rate,
        "runs": event.runs,
        "detail": _one_line(event.detail),
    }


def write_events_csv(events: Iterable[Event], out: TextIO) -> int:
    """Write events as CSV (EVENT_COLUMNS); return the number of rows."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EVENT_COLUMNS)
    count = 0
    for event in events:
        record = event_record(event)
        record["networks"] = " ".join(
            UNKNOWN_NETWORK if asn is None else str(asn) for asn in record["networks"]
        )
        record["targets"] = " ".join(record["targets"])
        writer.writerow([inert_cell(_csv_cell(record[name])) for name in EVENT_COLUMNS])
        count += 1
    return count


def write_events_jsonl(events: Iterable[Event], out: TextIO) -> int:
    """Write events as JSON Lines (EVENT_COLUMNS keys); return the number of lines."""
    count = 0
    for event in events:
        _write_json_line(out, event_record(event))
        count += 1
    return count


# What a measurement needs of its run: the probe and its network.
_RunNetwork = tuple[str | None, int | None, str | None]  # probe_id, asn, country
_NO_RUN: _RunNetwork = (None, None, None)


def _run_network(run: Run) -> _RunNetwork:
    return (run.probe_id, run.network.asn, _one_line(run.network.country))


def _values(measurement: Measurement, run: _RunNetwork) -> list[Any]:
    """The JSONL_FIELDS values of a measurement, in order (details last, as a dict).

    The one place a measurement becomes an export row: both writers start from it. One flat
    function on purpose: it runs once per exported measurement.
    """
    observation = measurement.observation
    details = observation.details
    layer = observation.layer
    operation = observation.failed_operation
    kind = observation.differential_kind
    dns_addresses: str | None = None
    tls_version: str | None = None
    http_status: int | None = None
    http_body_length: int | None = None
    http_title: str | None = None
    if isinstance(details, DnsQuery):
        dns_addresses = " ".join(details.addresses)
    elif isinstance(details, TlsHandshake):
        tls_version = _one_line(details.version)
    elif isinstance(details, HttpTransaction):
        http_status = details.status
        http_body_length = details.body_length
        http_title = None if details.title is None else " ".join(details.title.split())
    detail = observation.failure_detail
    return [
        measurement.id,
        measurement.run_id,
        run[0],
        run[1],
        run[2],
        _one_line_cached(measurement.platform),
        _one_line_cached(measurement.target),
        _one_line_cached(observation.endpoint),
        layer.value,
        None if kind is None else kind.value,
        format_timestamp(observation.started_at),
        observation.duration_ms,
        None if observation.failure is None else _one_line_cached(observation.failure),
        None if operation is None else operation.value,
        dns_addresses,
        tls_version,
        http_status,
        http_body_length,
        http_title,
        None if detail is None else _one_line(detail),
        encode_details(details),
    ]


def _measurement_values(
    store: MeasurementSource,
    *,
    since: datetime | None,
    until: datetime | None,
    platform: str | None,
    run_id: str | None,
    asns: Collection[int] | None,
    runs: Iterable[Run] | None,
) -> Iterator[list[Any]]:
    # Measurements carry no network of their own: the run's is theirs. Runs are few next to
    # measurements (one per probe execution), and only three of their fields are kept.
    known: dict[str, _RunNetwork] = {}
    for run in runs or ():
        known[run.id] = _run_network(run)
    wanted = set(asns) if asns else None
    for measurement in store.measurements(
        run_id=run_id, platform=platform, since=since, until=until
    ):
        network = known.get(measurement.run_id)
        if network is None:
            found = store.get_run(measurement.run_id)
            network = known[measurement.run_id] = _NO_RUN if found is None else _run_network(found)
        if wanted is not None and network[1] not in wanted:
            continue
        yield _values(measurement, network)


def _write_json_line(out: TextIO, record: dict[str, Any]) -> None:
    # ensure_ascii: U+2028 and friends would otherwise split lines for str.splitlines readers.
    out.write(_compact_json(record))
    out.write("\n")


# Compact ASCII JSON; one encoder made once (json.dumps with options builds one per call).
_compact_json = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode

# What str.splitlines splits on: a cheap test first, since almost no value holds one.
_LINE_BREAK = re.compile("[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")


def _one_line(value: Any) -> str | None:
    """Text with every line break (as str.splitlines sees them) replaced by a space."""
    if value is None:
        return None
    text = str(value)
    if _LINE_BREAK.search(text) is None:
        return text
    return " ".join(text.splitlines())


@functools.lru_cache(maxsize=1 << 16)
def _one_line_cached(text: str) -> str:
    """_one_line for values that repeat on every row (platform, target, endpoint, failure)."""
    return " ".join(text.splitlines()) if _LINE_BREAK.search(text) else text


# What a spreadsheet reads as the start of a formula (OWASP, "CSV Injection").
_FORMULA_START = frozenset("=+-@\t\r")


def inert_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet cannot run: text that starts like a formula gets a leading '."""
    # Also behind leading blanks: a CR in a cell becomes a space here, and some spreadsheets
    # skip blanks before a formula.
    if isinstance(value, str) and (
        value[:1] in _FORMULA_START
        or (value[:1].isspace() and value.lstrip()[:1] in _FORMULA_START)
    ):
        return "'" + value
    return value


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)
