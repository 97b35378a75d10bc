"""Stream stored runs, measurements, verdicts and events to CSV or JSON Lines, with fixed columns.

Rows come straight from the store's iterator and go straight to the output: an export of millions
of measurements holds one chunk in memory. The columns, their types and meanings are the data
dictionary (analysis.dictionary, rendered as docs/data-dictionary.md): a contract with
researchers' scripts, appended to, never renamed or reordered. The *_rows functions here are the
one place a record becomes an export row (JSONL_FIELDS order, typed values, times as text); the
CSV and JSON Lines writers here and the Parquet writer (analysis.parquet) all start from them.

No cell contains a line break (text is joined onto one line; the original stays in details_json),
so a file splits into rows on newlines alone. Rows end with "\\n"; quoting is RFC 4180 style (the
csv module's; details_json is always quoted), which pandas, R and csv.DictReader read.

Formula injection (OWASP, "CSV Injection"): a text cell that begins with =, +, -, @, a tab or a
carriage return (also after leading blanks) is written with a leading ' so that a spreadsheet
shows it as text instead of running it (a page title "=HYPERLINK(...)" or "@SUM(...)" is
server-controlled). Numbers are never prefixed; details_json starts with "{"; JSON Lines keep
every value as it was, with `details` an object, numbers as numbers, lists as lists and empty
cells as null.

Which measurements a failure count should read is the `role` column (probe.model.Role): the A/B
harmless halves, protocol probes (whose random bytes end in eof_error on most networks), packet
captures and redirect lookups are not tests of the target; `roles` keeps only the ones asked for.
"""

from __future__ import annotations

import csv
import functools
import itertools
import json
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TextIO, TypeVar

from analysis.dictionary import EVENTS, FORMULA_START, MEASUREMENTS, RUNS, VERDICTS
from analysis.model import Event
from probe.model import Layer, MeasurementRow, Operation, Role, Run, Target
from probe.records import Status, Verdict, VerdictRow

MEASUREMENT_COLUMNS: tuple[str, ...] = MEASUREMENTS.names
JSONL_FIELDS: tuple[str, ...] = MEASUREMENTS.jsonl_names
VERDICT_COLUMNS: tuple[str, ...] = VERDICTS.names
EVENT_COLUMNS: tuple[str, ...] = EVENTS.names
RUN_COLUMNS: tuple[str, ...] = RUNS.names

# A target's test-list category, by (platform, target): the configured test lists' metadata.
Categories = Mapping[tuple[str, str], str]
_NO_CATEGORIES: Categories = {}

_ZERO = timedelta(0)

# How an unknown network is written in the space-separated `networks` column of the CSV.
UNKNOWN_NETWORK = "unknown"


class MeasurementSource(Protocol):
    """What an export reads: probe.store.Store satisfies it."""

    def measurement_rows(
        self,
        run_id: str | None = None,
        platform: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[MeasurementRow]: ...

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


class VerdictRowSource(Protocol):
    """Where verdicts come from as VerdictRow tuples: probe.store.Store satisfies it."""

    def verdict_rows(
        self,
        *,
        run_id: str | None = None,
        platform: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[VerdictRow]: ...


class RunSource(Protocol):
    """Where runs and their verdicts' counts come from: probe.store.Store satisfies it."""

    def runs(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        asns: Collection[int] | None = None,
        newest_first: bool = False,
        limit: int | None = None,
    ) -> Iterator[Run]: ...

    def verdict_counts(self, run_ids: Collection[str]) -> dict[str, dict[Status, int]]: ...

    def rules_versions(self, run_ids: Collection[str]) -> dict[str, tuple[str, ...]]: ...


def test_list_categories(targets: Iterable[Target]) -> dict[tuple[str, str], str]:
    """The category_code of every test-list target, by (platform, target name)."""
    return {
        (t.platform, t.name): t.group
        for t in targets
        if t.group is not None and t.source.startswith("testlist:")
    }


# The last time formatted and its text: rows come in time order, and the store hands out one
# datetime object for equal stored times (the verdicts of a run, measurements of one second).
# One tuple, read and replaced whole, so that threads never see a time with another's text.
_LAST_FORMATTED: tuple[datetime | None, str] = (None, "")


def format_timestamp(when: datetime) -> str:
    """UTC ISO-8601 with microseconds and Z, as in the started_at column."""
    global _LAST_FORMATTED
    last = _LAST_FORMATTED
    if last[0] is when:
        return last[1]
    moment = when if when.utcoffset() == _ZERO else when.astimezone(UTC)
    # isoformat is several times faster than strftime, and this runs once per exported row:
    # "2024-11-20T09:30:00.123456+00:00" without its offset.
    text = moment.isoformat(timespec="microseconds")[:26] + "Z"
    _LAST_FORMATTED = (when, text)
    return text


def select_verdicts(
    source: VerdictSource,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    platforms: Sequence[str] | None = None,
    asns: Collection[int] | None = None,
    derived: Iterable[Verdict] = (),
) -> Iterator[Verdict]:
    """Verdicts measured in [since, until), of `platforms` (all when None or empty) on networks
    `asns` (all when None or empty), streamed: platform by platform when several are named,
    each in time order. `derived`: verdicts that stand for the probe's own of the same run,
    platform and target (the cross-network ones of analysis.crossnet, where they exist)."""
    return _selected(source.verdicts, list(derived), since, until, platforms, asns)


def select_verdict_rows(
    source: VerdictRowSource,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    platforms: Sequence[str] | None = None,
    asns: Collection[int] | None = None,
    derived: Iterable[Verdict] = (),
) -> Iterator[VerdictRow]:
    """select_verdicts as VerdictRow tuples (the same verdicts in the same order): what a reader
    of a million verdicts that keeps few of them streams (a report's timeline, the events)."""
    rows = [VerdictRow.of(verdict) for verdict in derived]
    return _selected(source.verdict_rows, rows, since, until, platforms, asns)


def _selected(
    read: Callable[..., Iterator[V]],
    derived: Iterable[V],
    since: datetime | None,
    until: datetime | None,
    platforms: Sequence[str] | None,
    asns: Collection[int] | None,
) -> Iterator[V]:
    names: Sequence[str | None] = list(platforms) if platforms else [None]
    wanted = set(asns) if asns else None

    def of(name: str | None) -> Iterator[V]:
        stream = with_derived(read(platform=name, since=since, until=until), derived)
        if wanted is None:
            return stream
        return (verdict for verdict in stream if verdict.asn in wanted)

    # Each platform's stream is opened when the one before it ends. No generator of its own
    # around a single stream: a million verdicts pay for every layer they pass through.
    if len(names) == 1:
        return of(names[0])
    return itertools.chain.from_iterable(of(name) for name in names)


# A verdict as a record or as a row (both have a verdict's fields by name).
V = TypeVar("V", Verdict, VerdictRow)


def with_derived(verdicts: Iterable[V], derived: Iterable[V]) -> Iterator[V]:
    """`verdicts` with each one that a derived verdict re-judged (same run, platform and target)
    replaced by it: what other networks saw decides what one probe could not (analysis.crossnet);
    the probe's own verdict stays in the store and in the verdicts export."""
    by_key = {(v.run_id, v.platform, v.target): v for v in derived}
    if not by_key:
        return iter(verdicts)
    return (by_key.get((v.run_id, v.platform, v.target), v) for v in verdicts)


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
    categories: Categories = _NO_CATEGORIES,
    roles: Collection[Role] | None = None,
    header: bool = True,
) -> int:
    """Write measurements started in [since, until) as CSV; return the number of rows.

    `asns` keeps the measurements of runs on those networks only. `runs`: the runs the
    measurements may belong to, read once up front (one query instead of one per run: the
    difference between seconds and minutes for a month of hourly runs); a run not among them is
    looked up on its own. `categories`: the test-list category of each (platform, target);
    `roles`: the measurement roles to keep (all when None). `header=False` appends rows to an
    export already begun (the CLI does so per platform).
    """
    # The csv module writes every column but the last: None as an empty cell, numbers as str()
    # does (repr for floats). details_json, always quoted, is appended by hand: the csv module
    # takes twice as long to scan and quote it as the rest of the row together.
    writer = csv.writer(out, lineterminator="")
    if header:
        writer.writerow(MEASUREMENT_COLUMNS)
        out.write("\n")
    count = 0
    # The details_json cell of each details object, by the object's identity: the store hands
    # the same object to every row whose details are the same text (probe.store.database), so
    # each is encoded once. The object is kept beside its cell, so its id is not reused; the
    # cells kept are bounded in number and in characters (an HTTP row's cell may be 100s of KB).
    cells: dict[int, tuple[Any, str]] = {}
    kept = 0

    def details_cell(details: dict[str, Any]) -> str:
        nonlocal kept
        known = cells.get(id(details))
        if known is not None and known[0] is details:
            return known[1]
        cell = '"' + compact_json(details).replace('"', '""') + '"'
        if len(cells) >= _DETAILS_CELLS or kept + len(cell) > _DETAILS_CELL_CHARS:
            cells.clear()
            kept = 0
        cells[id(details)] = (details, cell)
        kept += len(cell)
        return cell

    rows = _measurement_rows(
        store, since, until, platform, run_id, asns, runs, categories, roles, details_cell
    )
    # Each row is formatted into `line` first: a row none of whose cells starts like a formula
    # (_CELL_MAY_RUN finds no cell start that could) is written as it is, and only the others
    # go through inert_cell, cell by cell.
    line: list[str] = []
    catch = csv.writer(_Catcher(line.append), lineterminator="")
    format_row, may_run, write = catch.writerow, _CELL_MAY_RUN.search, out.write
    for values in rows:
        details = values.pop()
        format_row(values)
        text = line.pop()
        if may_run("," + text) is not None:
            format_row([inert_cell(v) for v in values])
            text = line.pop()
        write(text + "," + details + "\n")
        count += 1
    return count


# The details_json cells write_measurements_csv keeps at once, and their characters (see
# details_cell): records repeat only while the store's cache of decoded details holds them
# (probe.store.database._stored_details, 1,024 entries), so more cells would rarely be hit.
_DETAILS_CELLS = 1024
_DETAILS_CELL_CHARS = 1 << 22


class _Catcher:
    """A file for csv.writer that hands each formatted row to `write` (a list's append)."""

    def __init__(self, write: Callable[[str], object]) -> None:
        self.write = write


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
    categories: Categories = _NO_CATEGORIES,
    roles: Collection[Role] | None = None,
    header: bool = True,
) -> int:
    """Write measurements started in [since, until) as JSON Lines; return the number of lines.

    `header` is accepted so that both writers share one signature; JSON Lines has no header.
    """
    del header
    count = 0
    rows = measurement_rows(
        store,
        since=since,
        until=until,
        platform=platform,
        run_id=run_id,
        asns=asns,
        runs=runs,
        categories=categories,
        roles=roles,
    )
    for values in rows:
        _write_json_line(out, dict(zip(JSONL_FIELDS, values, strict=True)))
        count += 1
    return count


def verdict_record(verdict: Verdict, categories: Categories = _NO_CATEGORIES) -> dict[str, Any]:
    """One verdict as a VERDICT_COLUMNS dict: typed values, single-line text, evidence a list."""
    return dict(zip(VERDICT_COLUMNS, verdict_values(verdict, categories), strict=True))


def verdict_rows(
    verdicts: Iterable[Verdict], categories: Categories = _NO_CATEGORIES
) -> Iterator[list[Any]]:
    """The VERDICT_COLUMNS values of each verdict, as they stream."""
    for verdict in verdicts:
        yield verdict_values(verdict, categories)


def verdict_values(verdict: Verdict, categories: Categories = _NO_CATEGORIES) -> list[Any]:
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
        categories.get((verdict.platform, verdict.target)) if categories else None,
    ]


def write_verdicts_csv(
    verdicts: Iterable[Verdict], out: TextIO, categories: Categories = _NO_CATEGORIES
) -> int:
    """Write verdicts as CSV (VERDICT_COLUMNS) as they stream; return the number of rows."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(VERDICT_COLUMNS)
    count = 0
    evidence = VERDICT_COLUMNS.index("evidence")
    for values in verdict_rows(verdicts, categories):
        values[evidence] = " ".join(values[evidence])
        # None is an empty cell; no column here holds a float or bool.
        writer.writerow([inert_cell(v) for v in values])
        count += 1
    return count


def write_verdicts_jsonl(
    verdicts: Iterable[Verdict], out: TextIO, categories: Categories = _NO_CATEGORIES
) -> int:
    """Write verdicts as JSON Lines (VERDICT_COLUMNS keys) as they stream; return the count."""
    count = 0
    for values in verdict_rows(verdicts, categories):
        _write_json_line(out, dict(zip(VERDICT_COLUMNS, values, strict=True)))
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


# Runs whose verdict counts and rules versions are read in one query.
_RUN_BATCH = 500


def run_rows(
    source: RunSource,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    asns: Collection[int] | None = None,
) -> Iterator[list[Any]]:
    """The RUN_COLUMNS values of each run started in [since, until) on `asns` (all when None),
    oldest first, with its verdicts' counts and rules versions (read per batch of runs)."""
    stream = source.runs(since=since, until=until, asns=asns)
    while batch := list(itertools.islice(stream, _RUN_BATCH)):
        ids = [run.id for run in batch]
        counts, versions = source.verdict_counts(ids), source.rules_versions(ids)
        for run in batch:
            yield run_values(run, counts.get(run.id, {}), versions.get(run.id, ()))


def run_values(run: Run, counts: Mapping[Status, int], rules_versions: Sequence[str]) -> list[Any]:
    """The RUN_COLUMNS values of a run, in order: the one place a run becomes an export row."""
    network = run.network
    return [
        run.id,
        run.probe_id,
        format_timestamp(run.started_at),
        None if run.finished_at is None else format_timestamp(run.finished_at),
        network.asn,
        _one_line(network.as_name),
        _one_line(network.country),
        network.resolver_asn,
        _one_line(network.resolver_as_name),
        _one_line(network.resolver_country),
        _one_line(network.source),
        network.vpn_suspected,
        run.connectivity.value,
        run.interrupted,
        _one_line(run.software_version),
        " ".join(rules_versions) if rules_versions else None,
        _one_line(run.config_digest),
        counts.get(Status.BLOCKED, 0),
        counts.get(Status.OK, 0),
        counts.get(Status.DOWN, 0),
        counts.get(Status.INCONCLUSIVE, 0),
    ]


def write_runs_csv(rows: Iterable[list[Any]], out: TextIO) -> int:
    """Write run_rows as CSV (RUN_COLUMNS); return the number of rows."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(RUN_COLUMNS)
    count = 0
    for values in rows:
        writer.writerow([inert_cell(_csv_cell(v)) for v in values])
        count += 1
    return count


def write_runs_jsonl(rows: Iterable[list[Any]], out: TextIO) -> int:
    """Write run_rows as JSON Lines (RUN_COLUMNS keys); return the number of lines."""
    count = 0
    for values in rows:
        _write_json_line(out, dict(zip(RUN_COLUMNS, values, strict=True)))
        count += 1
    return count


# What a measurement needs of its run: the probe and its network.
_RunNetwork = tuple[str | None, int | None, str | None]  # probe_id, asn, country
_NO_RUN: _RunNetwork = (None, None, None)


def _run_network(run: Run) -> _RunNetwork:
    return (run.probe_id, run.network.asn, _one_line(run.network.country))


def _values(row: MeasurementRow, run: _RunNetwork, category: str | None, details: Any) -> list[Any]:
    """The JSONL_FIELDS values of a measurement row, in order, `details` last (the row's
    details object, or what a writer made of it).

    The one place a measurement becomes an export row: every writer starts from it. One flat
    function on purpose: it runs once per exported measurement.
    """
    encoded = row.details
    layer = row.layer
    kind = encoded.get("differential_kind")
    dns_addresses: str | None = None
    tls_version: str | None = None
    http_status: int | None = None
    http_body_length: int | None = None
    http_title: str | None = None
    # Which record the details are follows from the layer and differential_kind (probe.codec);
    # each record's keys are in its encoding whatever their values.
    if layer is _DNS:
        if kind is None:  # DnsQuery ("raw": a RawCapture)
            # One line: addresses come from a parser, but a merged store's rows may hold any text.
            dns_addresses = _one_line(" ".join(encoded["addresses"]))  # type: ignore[arg-type]
    elif layer is _TLS:
        tls_version = _one_line(encoded["version"])
    elif layer is _HTTP:
        http_status = encoded["status"]  # type: ignore[assignment]
        http_body_length = encoded["body_length"]  # type: ignore[assignment]
        title = encoded["title"]
        http_title = None if title is None else " ".join(title.split())  # type: ignore[union-attr]
    detail = row.failure_detail
    failure = row.failure
    operation = row.failed_operation
    return [
        row.id,
        row.run_id,
        run[0],
        run[1],
        run[2],
        _one_line_cached(row.platform),
        _one_line_cached(row.target),
        _one_line_cached(row.endpoint),
        _LAYER_TEXT[layer],
        kind,
        format_timestamp(row.started_at),
        row.duration_ms,
        None if failure is None else _one_line_cached(failure),
        None if operation is None else _OPERATION_TEXT[operation],
        dns_addresses,
        tls_version,
        http_status,
        http_body_length,
        http_title,
        None if detail is None else _one_line(detail),
        _ROLE_TEXT[row.role],
        category,
        details,
    ]


_DNS, _TLS, _HTTP = Layer.DNS, Layer.TLS, Layer.HTTP
# Each enum's values by member: a dict lookup is several times cheaper than .value (an enum
# property), and _values reads three per exported row.
_LAYER_TEXT = {layer: layer.value for layer in Layer}
_OPERATION_TEXT = {operation: operation.value for operation in Operation}
_ROLE_TEXT = {role: role.value for role in Role}


def measurement_rows(
    store: MeasurementSource,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    platform: str | None = None,
    run_id: str | None = None,
    asns: Collection[int] | None = None,
    runs: Iterable[Run] | None = None,
    categories: Categories = _NO_CATEGORIES,
    roles: Collection[Role] | None = None,
) -> Iterator[list[Any]]:
    """The JSONL_FIELDS values of each measurement (details last, as a dict: the codec's JSON
    object of its record, shared by rows of the same details, never to be changed), as they
    stream; the arguments are write_measurements_csv's."""
    return _measurement_rows(store, since, until, platform, run_id, asns, runs, categories, roles)


def _measurement_rows(
    store: MeasurementSource,
    since: datetime | None,
    until: datetime | None,
    platform: str | None,
    run_id: str | None,
    asns: Collection[int] | None,
    runs: Iterable[Run] | None,
    categories: Categories,
    roles: Collection[Role] | None,
    details_of: Callable[[dict[str, Any]], Any] | None = None,
) -> Iterator[list[Any]]:
    """measurement_rows, each row's details (last) as `details_of` makes them from the details
    object (the object itself when None)."""
    # Measurements carry no network of their own: the run's is theirs. Runs are few next to
    # measurements (one per probe execution), and only three of their fields are kept.
    known: dict[str, _RunNetwork] = {}
    for run in runs or ():
        known[run.id] = _run_network(run)
    wanted = set(asns) if asns else None
    keep = None if roles is None else frozenset(roles)
    for row in store.measurement_rows(run_id=run_id, platform=platform, since=since, until=until):
        network = known.get(row.run_id)
        if network is None:
            found = store.get_run(row.run_id)
            network = known[row.run_id] = _NO_RUN if found is None else _run_network(found)
        if wanted is not None and network[1] not in wanted:
            continue
        if keep is not None and row.role not in keep:
            continue
        category = categories.get((row.platform, row.target)) if categories else None
        details = row.details if details_of is None else details_of(row.details)
        yield _values(row, network, category, details)


def _write_json_line(out: TextIO, record: dict[str, Any]) -> None:
    # ensure_ascii: U+2028 and friends would otherwise split lines for str.splitlines readers.
    out.write(compact_json(record))
    out.write("\n")


# Compact ASCII JSON; one encoder made once (json.dumps with options builds one per call).
_COMPACT = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"))
# JSONEncoder.encode builds its C encoder again on every call (json.encoder.iterencode): a
# second per exported row. The same C encoder, made once, with the same arguments but for the
# circular-reference markers: what is encoded here is a tree (decoded JSON, the codec's dicts).
_MAKE_C_ENCODER = getattr(json.encoder, "c_make_encoder", None)  # None: no C accelerator
_C_ENCODER = (
    None
    if _MAKE_C_ENCODER is None
    else _MAKE_C_ENCODER(
        None,
        _COMPACT.default,
        json.encoder.encode_basestring_ascii,
        None,
        _COMPACT.key_separator,
        _COMPACT.item_separator,
        _COMPACT.sort_keys,
        _COMPACT.skipkeys,
        _COMPACT.allow_nan,
    )
)


def compact_json(value: Any) -> str:
    """`value` as compact ASCII JSON, as json.dumps(value, separators=(",", ":")) writes it."""
    if _C_ENCODER is None:
        return _COMPACT.encode(value)
    return "".join(_C_ENCODER(value, 0))


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


_FORMULA_START = frozenset(FORMULA_START)  # the data dictionary's rule


# Where a CSV row (with a comma put before it) may hold a cell that inert_cell would change: a
# comma, then a formula start or a blank (re's \s for str patterns is str.isspace), or the quote
# the csv module puts around some cells. Commas inside cells match too: such a row just takes
# the cell-by-cell path. (A literal first character lets re scan for it: several times faster
# than an alternative with ^.)
_CELL_MAY_RUN = re.compile(",[" + re.escape(FORMULA_START) + r'\s"]')


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
