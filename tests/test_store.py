"""The store on a real SQLite file and (marked postgres) a real PostgreSQL server: round trips,
streaming, filters, latest status and the errors a user sees for a database that cannot be used."""

from __future__ import annotations

import dataclasses
import gc
import json
import re
import sqlite3
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from probe.model import (
    Connectivity,
    DnsQuery,
    DnsResponse,
    HttpTransaction,
    Layer,
    Measurement,
    Operation,
    Run,
    TcpConnect,
)
from probe.store import NotAProbeDatabaseError, Store, StoreError
from tests.servers.postgres import PostgresServer
from tests.store_rows import T0, TEHRAN, make_measurement, make_run


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "probe.db")
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database()


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with Store.open(store_url) as opened:
        yield opened


def test_run_and_measurements_survive_reopening_with_every_field(store_url: str) -> None:
    with Store.open(store_url) as store:
        run = make_run(
            store.probe_id(),
            asn=4294967295,  # the largest 32-bit ASN: must not overflow a signed integer column
            as_name="Iran Telecommunication Company PJS",
            country="IR",
            resolver_asn=58224,
            resolver_as_name="TCI",
            resolver_country="IR",
            vpn_suspected=False,
            source="control-helper",
        )
        store.start_run(run)
        saved = [
            make_measurement(
                run.id,
                layer=Layer.DNS,
                endpoint="udp://127.0.0.1:5353",
                failure="dns_nxdomain_error",
                failed_operation=Operation.DNS_ROUND_TRIP,
                details=DnsQuery(
                    "t.me",
                    "udp://127.0.0.1:5353",
                    "udp",
                    rcode="NXDOMAIN",
                    responses=(DnsResponse(1.5, "NXDOMAIN", (), False, 1),),
                ),
            ),
            make_measurement(
                run.id,
                layer=Layer.HTTP,
                endpoint="https://web.telegram.org/",
                started_at=T0 + timedelta(seconds=1),
                failure="unknown_failure",
                failure_detail="ClientPayloadError: Response payload is not completed",
                details=HttpTransaction(
                    "https://web.telegram.org/",
                    status=403,
                    title="صفحه مسدود است\nblocked",
                    headers=(("Server", "nginx"), ("X-A", "1")),
                    body_truncated=True,
                ),
            ),
        ]
        store.save_measurements(saved)
        finished = T0 + timedelta(minutes=2)
        store.finish_run(run.id, finished, Connectivity.OK, interrupted=True)

    with Store.open(store_url) as store:
        (loaded_run,) = store.runs()
        loaded = list(store.measurements())

    assert loaded_run == Run(
        id=run.id,
        probe_id=run.probe_id,
        started_at=T0,
        software_version="0.1.0",
        config_digest="sha256:abc",
        network=run.network,
        finished_at=finished,
        connectivity=Connectivity.OK,
        interrupted=True,
    )
    assert loaded == saved
    for when in (
        loaded_run.started_at,
        loaded_run.finished_at,
        *(m.observation.started_at for m in loaded),
    ):
        assert when is not None and when.tzinfo is UTC
    assert loaded[0].observation.failed_operation is Operation.DNS_ROUND_TRIP
    assert isinstance(loaded[1].observation.details, HttpTransaction)
    assert loaded[1].observation.details.title == "صفحه مسدود است\nblocked"
    assert loaded[1].observation.failure_detail == saved[1].observation.failure_detail


def test_timestamps_from_another_zone_come_back_as_the_same_instant_in_utc(store: Store) -> None:
    local = datetime(2024, 11, 20, 13, 0, 0, tzinfo=TEHRAN)
    run = make_run(store.probe_id(), started_at=local)
    store.start_run(run)
    store.save_measurements([make_measurement(run.id, started_at=local)])

    (measurement,) = store.measurements()
    (loaded_run,) = store.runs()
    for when in (measurement.observation.started_at, loaded_run.started_at):
        assert when == local
        assert when.tzinfo is UTC
        assert when.hour == 9 and when.minute == 30


def test_wall_clock_times_are_stored_to_the_second(store: Store) -> None:
    precise = T0 + timedelta(microseconds=654_321)
    run = make_run(store.probe_id(), started_at=precise)
    store.start_run(run)
    store.save_measurements([make_measurement(run.id, started_at=precise)])
    store.finish_run(run.id, precise + timedelta(seconds=1), Connectivity.OK, interrupted=False)
    (measurement,) = store.measurements()
    (loaded,) = store.runs()
    assert measurement.observation.started_at == loaded.started_at == T0
    assert loaded.finished_at == T0 + timedelta(seconds=1)
    assert measurement.observation.duration_ms == make_measurement(run.id).observation.duration_ms


def test_old_rows_with_sub_second_times_still_read_and_order(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with Store.open(path) as store:
        run = make_run(store.probe_id())
        store.start_run(run)
        store.save_measurements([make_measurement(run.id, target=f"t{i}") for i in range(2)])
    with sqlite3.connect(path) as conn:  # as a version storing microseconds wrote them
        conn.execute(
            "UPDATE measurements SET started_at = '2024-11-20T09:30:00.900000+00:00' "
            "WHERE target = 't0'"
        )
        conn.execute(
            "UPDATE measurements SET started_at = '2024-11-20T09:30:00.100000+00:00' "
            "WHERE target = 't1'"
        )
    conn.close()
    with Store.open_readonly(path) as store:
        loaded = list(store.measurements())
    assert [m.target for m in loaded] == ["t1", "t0"]
    assert [m.observation.started_at.microsecond for m in loaded] == [100_000, 900_000]


def test_measurements_of_one_second_read_back_in_the_order_they_were_made(store: Store) -> None:
    run = make_run(store.probe_id())
    store.start_run(run)
    made = [make_measurement(run.id, target=f"t{i:02d}") for i in range(40)]
    store.save_measurements(list(reversed(made)))
    assert [m.target for m in store.measurements()] == [m.target for m in made]


def test_naive_timestamp_is_refused_before_anything_is_written(store: Store) -> None:
    run = make_run(store.probe_id())
    store.start_run(run)
    naive = make_measurement(run.id, started_at=datetime(2024, 11, 20, 9, 30))
    with pytest.raises(ValueError, match="naive datetime"):
        store.save_measurements([make_measurement(run.id), naive])
    assert list(store.measurements()) == []


def test_probe_id_is_random_and_stable_across_opens(tmp_path: Path) -> None:
    with Store.open(str(tmp_path / "a.db")) as store:
        first = store.probe_id()
    with Store.open(str(tmp_path / "a.db")) as store:
        again = store.probe_id()
    with Store.open(str(tmp_path / "b.db")) as store:
        other = store.probe_id()
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert again == first
    assert other != first


def test_finishing_an_unknown_run_is_a_store_error(store: Store) -> None:
    with pytest.raises(StoreError, match="has no run nosuchrun"):
        store.finish_run("nosuchrun", T0, Connectivity.NONE, interrupted=False)


def test_measurement_of_an_unknown_run_fails_the_whole_batch(store: Store) -> None:
    run = make_run(store.probe_id())
    store.start_run(run)
    good = make_measurement(run.id)
    orphan = make_measurement("no-such-run")
    with pytest.raises(StoreError) as raised:
        store.save_measurements([good, orphan])
    assert "FOREIGN KEY" in str(raised.value) or "foreign key" in str(raised.value)
    assert list(store.measurements()) == []  # one transaction: the good row was not kept either


def test_measurements_filter_by_run_platform_and_half_open_time_window(store: Store) -> None:
    first, second = make_run(store.probe_id()), make_run(store.probe_id(), T0 + timedelta(hours=1))
    store.start_run(first)
    store.start_run(second)
    rows = [
        make_measurement(first.id, platform="telegram", started_at=T0),
        make_measurement(first.id, platform="whatsapp", started_at=T0 + timedelta(minutes=1)),
        make_measurement(second.id, platform="telegram", started_at=T0 + timedelta(hours=1)),
        make_measurement(second.id, platform="whatsapp", started_at=T0 + timedelta(hours=2)),
    ]
    store.save_measurements(list(reversed(rows)))

    def ids(found: Iterator[Measurement]) -> list[str]:
        return [m.id for m in found]

    assert ids(store.measurements()) == [m.id for m in rows]  # time order, not insert order
    assert ids(store.measurements(run_id=second.id)) == [rows[2].id, rows[3].id]
    assert ids(store.measurements(platform="telegram")) == [rows[0].id, rows[2].id]
    window = store.measurements(since=T0 + timedelta(minutes=1), until=T0 + timedelta(hours=2))
    assert ids(window) == [rows[1].id, rows[2].id]  # since inclusive, until exclusive
    tehran_since = (T0 + timedelta(hours=1)).astimezone(TEHRAN)
    assert ids(store.measurements(platform="whatsapp", since=tehran_since)) == [rows[3].id]


def test_runs_are_listed_in_time_order_newest_first_on_request(store: Store) -> None:
    assert list(store.runs()) == []
    runs = [make_run(store.probe_id(), T0 + timedelta(days=d)) for d in (2, 0, 1)]
    for run in runs:
        store.start_run(run)
    by_time = sorted(runs, key=lambda r: r.started_at)
    assert [r.id for r in store.runs()] == [r.id for r in by_time]
    assert [r.id for r in store.runs(newest_first=True, limit=2)] == [by_time[2].id, by_time[1].id]
    assert [r.id for r in store.runs(since=T0 + timedelta(days=1))] == [
        by_time[1].id,
        by_time[2].id,
    ]
    assert [r.id for r in store.runs(newest_first=True, limit=1)] == [runs[0].id]


def test_latest_status_shows_the_newest_measurement_of_each_endpoint(store: Store) -> None:
    run = make_run(store.probe_id())
    store.start_run(run)
    old_ok = make_measurement(run.id, started_at=T0)
    new_blocked = make_measurement(
        run.id,
        started_at=T0 + timedelta(hours=1),
        failure="generic_timeout_error",
        failed_operation=Operation.CONNECT,
    )
    other_port = make_measurement(run.id, endpoint="149.154.175.50:80", started_at=T0)
    dns = make_measurement(run.id, layer=Layer.DNS, endpoint="system", started_at=T0)
    # Newest saved first: the answer must come from the timestamps, not the insertion order.
    store.save_measurements([new_blocked])
    store.save_measurements([old_ok, other_port, dns])

    latest = store.latest_status()
    assert [(m.layer, m.observation.endpoint, m.failure) for m in latest] == [
        (Layer.DNS, "system", None),
        (Layer.TCP, "149.154.175.50:443", "generic_timeout_error"),
        (Layer.TCP, "149.154.175.50:80", None),
    ]
    assert latest[1] == new_blocked
    assert store.latest_status(platform="whatsapp") == []


def test_streaming_50k_measurements_holds_one_chunk_not_the_whole_table(store: Store) -> None:
    # PostgreSQL inserts and fetches slower; its server-side cursor also has its own test. Peak:
    # one chunk (STREAM_CHUNK_ROWS) plus the store's bounded cache of decoded details, which
    # together cost about what 2,000 held rows do: at 20,000 rows that was a tenth of the table.
    total = 40_000 if store.location.startswith("postgresql") else 50_000
    sample = total // 10
    run = make_run(store.probe_id())
    store.start_run(run)
    # Details of their own per row: rows with the same details text share one decoded record
    # (probe.store.database._stored_details), which would make holding them all look cheap.
    for start in range(0, total, 5_000):
        store.save_measurements(
            [
                make_measurement(
                    run.id,
                    target=f"t{i}",
                    started_at=T0 + timedelta(seconds=i),
                    details=TcpConnect("149.154.175.50", 443, address_source=f"{i:x}" * 40),
                )
                for i in range(start, start + 5_000)
            ]
        )

    # What holding measurements costs, measured on a sample.
    gc.collect()
    tracemalloc.start()
    held = list(store.measurements(until=T0 + timedelta(seconds=sample)))
    holding_all = tracemalloc.get_traced_memory()[0] / sample * total
    tracemalloc.stop()
    assert len(held) == sample
    del held

    gc.collect()
    tracemalloc.start()
    count = sum(1 for _ in store.measurements())
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    assert count == total
    assert peak < holding_all / 10, f"streaming peak {peak} B vs {holding_all:.0f} B to hold all"


def test_many_single_measurement_batches_are_all_stored(tmp_path: Path) -> None:
    # The runner writes whatever completed, often one measurement per transaction (their speed:
    # benchmarks/store_benchmark.py).
    with Store.open(str(tmp_path / "probe.db")) as store:
        run = make_run(store.probe_id())
        store.start_run(run)
        for i in range(500):
            store.save_measurements([make_measurement(run.id, target=f"t{i}")])
        stored = [m.target for m in store.measurements()]
    assert sorted(stored) == sorted(f"t{i}" for i in range(500))


def test_corrupt_file_is_reported_as_not_a_probe_database(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    path.write_bytes(b"this is not sqlite at all\n" * 200)
    with pytest.raises(NotAProbeDatabaseError) as raised:
        Store.open(str(path))
    assert str(raised.value) == f"{path} is not a probe database (file is not a database)"
    assert path.read_bytes() == b"this is not sqlite at all\n" * 200


def test_probe_database_with_damaged_pages_is_reported_as_damaged(tmp_path: Path) -> None:
    path = tmp_path / "probe.db"
    Store.open(str(path)).close()
    with sqlite3.connect(path) as conn:  # fold the WAL into the main file before damaging it
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = path.read_bytes()
    path.write_bytes(data[:4096] + b"Z" * (len(data) - 4096))  # page 1 (the header) survives
    with pytest.raises(StoreError) as raised:
        Store.open(str(path))
    assert str(raised.value) == f"{path} is damaged (database disk image is malformed)"


def test_another_applications_sqlite_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "places.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE moz_places (id INTEGER PRIMARY KEY, url TEXT)")
    with pytest.raises(NotAProbeDatabaseError, match=r"places\.sqlite is not a probe database"):
        Store.open(str(path))
    with sqlite3.connect(path) as conn:
        tables = [
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
    assert tables == ["moz_places"]


def test_directory_given_as_database_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"^cannot open .*: it is a directory$"):
        Store.open(str(tmp_path))


def test_opening_creates_missing_parent_directories_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "probe.db"
    with Store.open(str(path)) as store:
        run = make_run(store.probe_id())
        store.start_run(run)
        store.save_measurements([make_measurement(run.id)])
        assert Path(f"{path}-wal").exists()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_unreachable_postgres_is_a_store_error_without_the_password() -> None:
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    with pytest.raises(StoreError) as raised:
        Store.open("postgresql+psycopg://probe:s3cret@127.0.0.1:1/probe")
    message = str(raised.value)
    assert message.startswith("cannot open postgresql+psycopg://probe:***@127.0.0.1:1/probe: ")
    assert "s3cret" not in message
    assert "\n" not in message


def test_verdicts_and_platform_summaries_round_trip_and_replace_on_reanalysis(
    store: Store,
) -> None:
    from probe.records import (
        Confidence,
        GroupSummary,
        PlatformStatus,
        PlatformSummary,
        Status,
        Verdict,
    )

    run = make_run(store.probe_id(), asn=58224, country="IR")
    store.start_run(run)
    m = make_measurement(
        run.id, failure="generic_timeout_error", failed_operation=Operation.CONNECT
    )
    store.save_measurements([m])
    verdict = Verdict(
        run_id=run.id,
        probe_id=run.probe_id,
        measured_at=run.started_at,
        asn=58224,
        country="IR",
        platform="telegram",
        target="dc1",
        status=Status.BLOCKED,
        technique="tcp.timeout",
        confidence=Confidence.ANOMALY,
        rule_id="tcp.timeout.control_ok",
        rules_version="test",
        evidence=(m.id,),
        detail="connect timed out here, not at the control",
    )
    summary = PlatformSummary(
        platform="telegram",
        status=PlatformStatus.PARTIAL,
        techniques=("tcp.timeout",),
        blocked=1,
        total=9,
        groups=(GroupSummary("dc", PlatformStatus.PARTIAL, 1, 6, ("tcp.timeout",)),),
        suspicious=("149.154.175.50",),
        detail="1 of 6 data centres",
    )
    store.save_verdicts(run.id, [verdict])
    store.save_platform_summaries(run.id, [summary])
    (back,) = store.verdicts(run_id=run.id)
    assert back == verdict  # every field kept
    assert store.platform_summaries(run.id) == [summary]
    ok = dataclasses.replace(verdict, measured_at=T0, status=Status.OK, technique=None)
    store.save_verdicts(run.id, [ok])
    assert [v.status for v in store.verdicts(platform="telegram")] == [Status.OK]
    assert list(store.verdicts(since=T0 + timedelta(seconds=1))) == []


def _sqlite_execute(path: Path, sql: str, *params: object) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute(sql, params)


@pytest.mark.parametrize(
    ("details", "problem"),
    [
        ("{not json", "Expecting property name"),
        ('{"port": 443}', "$.details.address: missing"),
        ('{"address": "149.154.175.50", "port": "443"}', "$.details.port: expected an integer"),
        ("[1, 2]", "$.details: expected an object"),
    ],
    ids=["not-json", "missing-field", "wrong-type", "not-an-object"],
)
def test_a_stored_row_that_does_not_parse_is_a_store_error_naming_run_and_measurement(
    tmp_path: Path, details: str, problem: str
) -> None:
    path = tmp_path / "probe.db"
    with Store.open(str(path)) as store:
        run = make_run(store.probe_id())
        store.start_run(run)
        bad = make_measurement(run.id)
        store.save_measurements([bad, make_measurement(run.id, target="dc2")])
    # A row damaged by hand (or by another program), in a real SQLite file.
    _sqlite_execute(path, "UPDATE measurements SET details = ? WHERE id = ?", details, bad.id)

    with Store.open(str(path)) as store, pytest.raises(StoreError) as raised:
        list(store.measurements())
    message = str(raised.value)
    assert f"measurement {bad.id} of run {run.id} does not parse" in message
    assert problem in message
    assert "\n" not in message


def test_rows_written_before_the_typed_records_decode_without_a_migration(tmp_path: Path) -> None:
    """The details shape the checks wrote before probe.codec (no aaaa_responses, lists for
    tuples, an unknown failure with its text in the failure string) still reads back."""
    path = tmp_path / "probe.db"
    with Store.open(str(path)) as store:
        run = make_run(store.probe_id())
        store.start_run(run)
        dns = make_measurement(run.id, layer=Layer.DNS, endpoint="system")
        http = make_measurement(run.id, layer=Layer.HTTP, endpoint="http://t.me/", target="web")
        store.save_measurements([dns, http])
    old_dns = {
        "query": "t.me",
        "resolver": "system",
        "transport": "system",
        "rcode": None,
        "addresses": ["149.154.167.99"],
        "answers": [],
        "responses": [],
        "second_answer": False,
        "per_type": {"A": None, "AAAA": "dns_no_answer"},
        "retried_over_tcp": False,
        "primary": True,
    }
    old_http: dict[str, object] = {
        "url": "http://t.me/",
        "method": "GET",
        "status": None,
        "headers": [],
        "redirects": [],
        "timings": {"connect_ms": 1.0, "ttfb_ms": None, "total_ms": 9.5},
        "address_source": "system",
    }
    _sqlite_execute(
        path, "UPDATE measurements SET details = ? WHERE id = ?", json.dumps(old_dns), dns.id
    )
    _sqlite_execute(
        path,
        "UPDATE measurements SET details = ?, failure = ? WHERE id = ?",
        json.dumps(old_http),
        "unknown_failure: ClientResponseError: Bad status line",
        http.id,
    )

    with Store.open(str(path)) as store:
        loaded = {m.id: m for m in store.measurements()}
    record = loaded[dns.id].observation.details
    assert isinstance(record, DnsQuery)
    assert record.addresses == ("149.154.167.99",)
    assert record.per_type.aaaa == "dns_no_answer" and record.primary is True
    page = loaded[http.id].observation
    assert isinstance(page.details, HttpTransaction)
    assert page.details.timings.total_ms == 9.5 and page.details.address_source == "system"
    assert page.failure == "unknown_failure"
    assert page.failure_detail == "ClientResponseError: Bad status line"
