"""The store's bulk readers (verdicts, verdict rows, measurements) read SQLite below SQLAlchemy,
through the driver's own cursor, and every other database through SQLAlchemy. The same data must
read the same either way: the report (terminal text and HTML page), the events and the
measurements CSV (bytes) made over a store with varied data (several networks, an unknown one,
every status, evidence that is not a plain list of ids, hostile text that the CSV must make
inert: formulas, control characters, line breaks) are identical on SQLite read both ways and on
PostgreSQL."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console

from analysis.dictionary import FORMULA_START
from analysis.events import detect_events
from analysis.export import select_verdict_rows, select_verdicts, write_measurements_csv
from analysis.report.build import build_report
from analysis.report.page import render_html
from analysis.timeline import build_timeline
from probe.cli.render import report_tables
from probe.model import (
    DnsQuery,
    HttpTransaction,
    Layer,
    Measurement,
    NetworkInfo,
    Operation,
    Run,
    TcpConnect,
    TlsHandshake,
)
from probe.records import Confidence, Status, Verdict, VerdictRow
from probe.store import Store
from tests.builders import observation
from tests.servers.postgres import PostgresServer
from tests.stored_verdicts import small_spec, store_verdicts
from tests.synthetic import generate

NOW = datetime(2024, 3, 5, tzinfo=UTC)

# Text a spreadsheet would run or a line-based reader would split on, in every text cell.
HOSTILE = (
    '=HYPERLINK("http://x","y")',
    "+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(A1)",
    "\t=1",
    "\r\n=1",
    "  =x",
    "a\x01b\x1fc\x7fd",  # no NUL: PostgreSQL text cannot hold one
    "line\u2028break\u0085",
    "caf\u00e9 \u0645\u0633\u062a",
    'say "=x", then',
)


def _measurement(verdict: Verdict, index: int) -> Measurement:
    """The measurement a synthetic verdict rests on, one of each layer in turn."""
    when = verdict.measured_at + timedelta(seconds=index % 7)
    failure = None if verdict.status is Status.OK else "generic_timeout_error"
    operation = None if failure is None else Operation.CONNECT
    kind = index % 4
    details: DnsQuery | TlsHandshake | HttpTransaction | TcpConnect
    if kind == 0:
        layer, where = Layer.DNS, "udp://185.51.200.2:53"
        details = DnsQuery(
            verdict.target, where, "udp", rcode="NOERROR", addresses=("10.10.34.34",)
        )
    elif kind == 1:
        layer, where = Layer.TLS, "157.240.1.35:443"
        details = TlsHandshake("157.240.1.35", 443, verdict.target, version="TLSv1.3")
    elif kind == 2:
        layer, where = Layer.HTTP, f"https://{verdict.target}/"
        details = HttpTransaction(where, status=403, body_length=312, title="Blocked")
    else:
        layer, where = Layer.TCP, "149.154.175.50:443"
        details = TcpConnect("149.154.175.50", 443)
    return Measurement(
        verdict.run_id,
        verdict.platform,
        verdict.target,
        observation(layer, where, details, failure, operation, started_at=when),
        id=verdict.evidence[0] if verdict.evidence else f"m-{index}",
    )


def _hostile_run(store: Store, when: datetime) -> None:
    """A run on an unknown network whose targets, endpoints, failures and page titles hold
    hostile text, with verdicts resting on them (one with evidence ids that need JSON)."""
    run = Run(
        id="f" * 32,
        probe_id="probe-hostile",
        started_at=when,
        software_version="0.1.0",
        config_digest="sha256:hostile",
        network=NetworkInfo(asn=None, as_name=None, country=None),
    )
    store.start_run(run)
    measurements = []
    verdicts = []
    for i, text in enumerate(HOSTILE):
        target = f"{text}-{i}"
        mid = f'm"{i}\\' if i % 3 == 0 else f"m-hostile-{i}"
        measurements.append(
            Measurement(
                run.id,
                "web",
                target,
                observation(
                    Layer.HTTP,
                    text,
                    HttpTransaction(text, status=200, title=text, body_prefix=text),
                    f"unknown_failure: {text}" if i % 2 else None,
                    Operation.HTTP_ROUND_TRIP if i % 2 else None,
                    failure_detail=text if i % 4 == 1 else None,
                    started_at=when + timedelta(seconds=i),
                ),
                id=mid,
            )
        )
        verdicts.append(
            Verdict(
                run.id,
                run.probe_id,
                when,
                None,
                None,
                "web",
                target,
                (Status.BLOCKED, Status.OK, Status.DOWN, Status.INCONCLUSIVE)[i % 4],
                "http.blockpage" if i % 4 == 0 else None,
                Confidence.CONFIRMED if i % 4 == 0 else None,
                "hostile.rule",
                "2025.10",
                (mid,),
                text,
            )
        )
    store.save_measurements(measurements)
    store.save_verdicts(run.id, verdicts)


def _fill(store: Store) -> None:
    verdicts = list(generate(small_spec(), seed=5).verdicts)
    store_verdicts(store, verdicts)
    store.save_measurements([_measurement(v, i) for i, v in enumerate(verdicts)])
    _hostile_run(store, verdicts[-1].measured_at - timedelta(hours=5))


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("driver") / "probe.db"
    with Store.open(path) as store:
        _fill(store)
    return path


def _through_sqlalchemy(store: Store) -> Store:
    store._driver_reads = False  # as on PostgreSQL
    return store


def _report_text(store: Store) -> tuple[str, str]:
    built = build_report(store, now=NOW)
    console = Console(file=io.StringIO(), width=200, color_system=None, force_terminal=False)
    for renderable in report_tables(built):
        console.print(renderable)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    return text, render_html(built)


def _csv(store: Store) -> str:
    out = io.StringIO()
    write_measurements_csv(store, out, runs=list(store.runs()))
    return out.getvalue()


def _outputs(store: Store) -> dict[str, object]:
    text, page = _report_text(store)
    return {
        "report": text,
        "html": page,
        "csv": _csv(store),
        "events": detect_events(store.verdict_rows()),
        "verdicts": list(store.verdicts()),
        "measurements": list(store.measurements()),
    }


def test_sqlite_read_below_sqlalchemy_gives_the_report_and_csv_of_sqlalchemy(
    sqlite_store: Path,
) -> None:
    with Store.open_readonly(sqlite_store) as store:
        assert store._driver_reads
        fast = _outputs(store)
    with Store.open_readonly(sqlite_store) as store:
        slow = _outputs(_through_sqlalchemy(store))
    assert fast["report"] and "=HYPERLINK" in str(fast["csv"])
    for name in fast:
        assert fast[name] == slow[name], name


@pytest.mark.postgres
def test_postgresql_reads_the_same_report_and_csv_as_sqlite(
    sqlite_store: Path, postgres_server: PostgresServer
) -> None:
    url = postgres_server.create_database()
    with Store.open(url) as store:
        _fill(store)
        assert not store._driver_reads
        server = _outputs(store)
    with Store.open_readonly(sqlite_store) as store:
        local = _outputs(store)
    for name in local:
        assert server[name] == local[name], name


def test_hostile_cells_start_inert_in_the_csv_read_below_sqlalchemy(sqlite_store: Path) -> None:
    with Store.open_readonly(sqlite_store) as store:
        text = _csv(store)
    # One record per line: no line break of any kind (str.splitlines' set) inside a cell.
    assert text.splitlines() == text.split("\n")[:-1]
    rows = list(csv.reader(io.StringIO(text)))
    hostile = [row for row in rows if "probe-hostile" in row]
    assert len(hostile) == len(HOSTILE)
    cells = [cell for row in hostile for cell in row]
    # A cell holding a quote or a comma is quoted by the csv module ("'=HYPERLINK(""..."
    # in the file): the reader gives the cell back, its leading ' the spreadsheet guard.
    assert '\'=HYPERLINK("http://x","y")' in cells
    assert "'@SUM(A1)" in cells and "'+cmd|' /C calc'!A0" in cells and "' =1" in cells
    assert not any(cell.lstrip()[:1] in FORMULA_START for cell in cells if cell.strip())


def test_verdict_rows_are_the_verdicts_as_tuples_on_either_path(sqlite_store: Path) -> None:
    since, until = NOW - timedelta(days=4), NOW - timedelta(days=2)
    with Store.open_readonly(sqlite_store) as store:
        for reads in (True, False):
            store._driver_reads = reads
            verdicts = list(select_verdicts(store, since=since, until=until, asns=[44244]))
            rows = list(select_verdict_rows(store, since=since, until=until, asns=[44244]))
            assert verdicts and [VerdictRow.of(v) for v in verdicts] == rows
            assert [row.verdict() for row in rows] == verdicts
            plain = list(store.verdict_rows())
            assert any(not row.evidence[0].startswith("m-") for row in plain)  # JSON-escaped ids


def test_a_timeline_of_rows_is_the_timeline_of_the_verdicts(sqlite_store: Path) -> None:
    with Store.open_readonly(sqlite_store) as store:
        verdicts = list(store.verdicts())
        rows = list(store.verdict_rows())
    derived = replace(verdicts[3], status=Status.OK, rule_id="crossnet.ok")
    by_records = build_timeline([derived if v == verdicts[3] else v for v in verdicts])
    by_rows = build_timeline([VerdictRow.of(derived) if i == 3 else r for i, r in enumerate(rows)])
    assert by_records.series.keys() == by_rows.series.keys()
    for key, series in by_records.series.items():
        other = by_rows.series[key]
        assert list(series.points(include_empty=True)) == list(other.points(include_empty=True))
        assert series.newest == other.newest and series.newest is not None
    assert by_records.rules_versions == by_rows.rules_versions == {"synthetic-1", "2025.10"}
    assert by_records.probe_series.keys() == by_rows.probe_series.keys()
