"""The collector on a real PostgreSQL server (started by the test, on 127.0.0.1): many probes
uploading at once, a collector killed with SIGKILL in the middle of a batch, replays, and two
tokens racing for one probe id."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
from sqlalchemy.engine import make_url

from probe.collector.batch import compress, encode_batch
from probe.collector.server import BATCHES_PATH, Collector, start
from probe.collector.uploader import (
    UploadPolicy,
    UploadReport,
    UploadTarget,
    upload,
    upload_now,
)
from probe.model import (
    Connectivity,
    Layer,
    Measurement,
    NetworkInfo,
    Observation,
    Run,
    TlsHandshake,
)
from probe.records import Status, Verdict
from probe.store import Store
from probe.store.uploads import (
    Batch,
    ForeignProbeError,
    IdConflictError,
    add_token,
    ingest_batch,
)
from tests.servers.collector import CollectorProcess, fill_probe, new_id
from tests.servers.postgres import PostgresServer

pytestmark = pytest.mark.postgres

FAST = UploadPolicy(deadline_s=60.0, request_timeout_s=20.0, backoff_base_s=0.05, backoff_cap_s=0.5)


@pytest.fixture
def database_url(postgres_server: PostgresServer) -> str:
    return postgres_server.create_database()


def table_counts(url: str) -> dict[str, int]:
    parsed = make_url(url)
    dsn = f"host={parsed.host} port={parsed.port} user={parsed.username} dbname={parsed.database}"
    with psycopg.connect(dsn) as conn:
        return {
            table: int(conn.execute(f"SELECT count(*) FROM {table}".encode()).fetchone()[0])  # type: ignore[index]
            for table in ("runs", "measurements", "verdicts", "probe_owners")
        }


async def test_many_probes_uploading_at_once_each_arrive_whole_and_once(
    database_url: str, tmp_path: Path
) -> None:
    probes = 12
    stores, targets = [], []
    with Store.open(database_url) as collector_store:
        runner, port = await start(Collector(collector_store), "127.0.0.1", 0)
        try:
            for i in range(probes):
                store = Store.open(tmp_path / f"probe-{i}.db")
                fill_probe(store, runs=3, measurements=40, asn=1000 + i)
                _, token = add_token(collector_store, f"probe-{i}")
                stores.append(store)
                targets.append(UploadTarget(f"http://127.0.0.1:{port}", token))
            policy = replace(FAST, max_measurements=25)
            reports = await asyncio.gather(
                *(upload(s, t, policy) for s, t in zip(stores, targets, strict=True))
            )
        finally:
            await runner.cleanup()
            for store in stores:
                store.close()

    assert [r.error for r in reports] == [None] * probes
    assert sum(r.runs_done for r in reports) == probes * 3
    assert table_counts(database_url) == {
        "runs": probes * 3,
        "measurements": probes * 3 * 40,
        "verdicts": probes * 3 * 40,
        "probe_owners": probes,
    }


def test_collector_killed_mid_batch_then_probe_retries_loses_and_duplicates_nothing(
    database_url: str, tmp_path: Path
) -> None:
    with Store.open(database_url) as collector_store:
        _, token = add_token(collector_store, "volunteer")
    probe = Store.open(tmp_path / "probe.db")
    fill_probe(probe, runs=12, measurements=400)
    expected = {m.id for m in probe.measurements()}

    collector = CollectorProcess(database_url).start()
    port = collector.port
    result: list[UploadReport] = []

    def uploader() -> None:
        result.append(
            upload_now(
                probe, UploadTarget(collector.url, token), replace(FAST, max_measurements=200)
            )
        )

    thread = threading.Thread(target=uploader)
    thread.start()
    try:
        # Kill it once some batches are in: batches follow each other without pause, so the
        # next one is being sent, decoded or written (its transaction open) when SIGKILL lands.
        deadline = time.monotonic() + 30
        while table_counts(database_url)["measurements"] < 400 and time.monotonic() < deadline:
            time.sleep(0.01)
        collector.kill()
        killed_at = table_counts(database_url)["measurements"]
        time.sleep(1.0)  # the probe keeps retrying against a closed port meanwhile
        collector = CollectorProcess(database_url, port=port).start()
        thread.join(timeout=120)
    finally:
        collector.stop()
    assert not thread.is_alive()

    (report,) = result
    assert report.error is None, report
    assert 400 <= killed_at < len(expected)  # it really died part way
    with Store.open(database_url) as stored:
        ids = [m.id for m in stored.measurements()]
    probe.close()
    assert len(ids) == len(set(ids)) == len(expected) and set(ids) == expected
    assert table_counts(database_url)["runs"] == 12


def test_replayed_batch_adds_nothing_on_postgresql(database_url: str, tmp_path: Path) -> None:
    with Store.open(tmp_path / "probe.db") as probe, Store.open(database_url) as collector:
        (run,) = fill_probe(probe, runs=1, measurements=30)
        batch = Batch((run,), tuple(probe.measurements()), tuple(probe.verdicts()))
        token_id = add_token(collector, "v")[0].id
        first = ingest_batch(collector, token_id, batch)
        second = ingest_batch(collector, token_id, batch)
    assert (first.runs, first.measurements, first.verdicts) == (1, 30, 30)
    assert (second.runs, second.measurements, second.verdicts) == (0, 0, 0)
    assert table_counts(database_url)["measurements"] == 30


def test_two_tokens_racing_for_one_probe_id_leave_exactly_one_owner(
    database_url: str, tmp_path: Path
) -> None:
    with Store.open(tmp_path / "probe.db") as probe:
        runs = fill_probe(probe, runs=8, measurements=5)
        batches = [
            Batch(
                (run,),
                tuple(probe.measurements(run_id=run.id)),
                tuple(probe.verdicts(run_id=run.id)),
            )
            for run in runs
        ]
    collector = Store.open(database_url)
    tokens = [add_token(collector, name)[0].id for name in ("a", "b")]
    barrier = threading.Barrier(2)
    outcomes: dict[str, list[str]] = {token: [] for token in tokens}

    def send(token_id: str, mine: list[Batch]) -> None:
        barrier.wait()
        for batch in mine:
            try:
                ingest_batch(collector, token_id, batch)
                outcomes[token_id].append("stored")
            except ForeignProbeError:
                outcomes[token_id].append("refused")

    threads = [
        threading.Thread(target=send, args=(tokens[0], batches[0::2])),
        threading.Thread(target=send, args=(tokens[1], batches[1::2])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    collector.close()

    winners = [t for t in tokens if "stored" in outcomes[t]]
    assert len(winners) == 1
    loser = next(t for t in tokens if t not in winners)
    assert outcomes[loser] == ["refused"] * 4 and outcomes[winners[0]] == ["stored"] * 4
    assert table_counts(database_url) == {
        "runs": 4,
        "measurements": 20,
        "verdicts": 20,
        "probe_owners": 1,
    }


def test_batch_body_is_the_same_bytes_for_the_same_records(tmp_path: Path) -> None:
    # Idempotence starts at the probe: re-sending a batch sends the same document.
    with Store.open(tmp_path / "probe.db") as probe:
        (run,) = fill_probe(probe, runs=1, measurements=3)
        batch = Batch((run,), tuple(probe.measurements()), tuple(probe.verdicts()))
        assert compress(encode_batch(batch)) == compress(encode_batch(batch))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda d: d["measurements"][0].update(target="dc1\u0000"), "holds a NUL character"),
        (
            lambda d: d["measurements"][0]["observation"]["details"].update(sni="\ud800"),
            "lone UTF-16 surrogate",
        ),
        (lambda d: d["verdicts"][0].update(asn=2**70), "$.verdicts[0].asn: "),
        (lambda d: d["verdicts"][0].update(asn=2**40), "$.verdicts[0].asn: not an AS number"),
        (lambda d: d["runs"][0]["network"].update(asn=-1), "not an AS number"),
    ],
)
async def test_values_postgresql_cannot_store_are_a_400_not_a_database_error(
    database_url: str, tmp_path: Path, change: Callable[[dict[str, Any]], None], reason: str
) -> None:
    with Store.open(tmp_path / "probe.db") as probe:
        (run,) = fill_probe(probe, runs=1, measurements=2)
        batch = Batch((run,), tuple(probe.measurements()), tuple(probe.verdicts()))
    document = json.loads(encode_batch(batch))
    change(document)
    # ensure_ascii: the surrogate travels as the escape a foreign client would send.
    body = compress(json.dumps(document).encode())
    with Store.open(database_url) as collector_store:
        _, token = add_token(collector_store, "v")
        runner, port = await start(Collector(collector_store), "127.0.0.1", 0)
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    f"http://127.0.0.1:{port}{BATCHES_PATH}",
                    data=body,
                    headers={"Authorization": f"Bearer {token}", "Content-Encoding": "gzip"},
                ) as response,
            ):
                status, answer = response.status, await response.json()
        finally:
            await runner.cleanup()
    assert status == 400 and reason in answer["error"]
    assert table_counts(database_url)["measurements"] == 0


def _awkward_batch() -> Batch:
    """A run, measurements and a verdict whose text holds what COPY's text format must escape
    (tab, newline, carriage return, backslash, a literal \\N) and times with microseconds."""
    began = datetime.now(UTC).replace(microsecond=654321) - timedelta(hours=1)
    awkward = "a\tb\\c\nd\re \\N \\."
    run = Run(
        id=new_id(),
        probe_id=new_id(),
        started_at=began,
        software_version=f"0.1.0 {awkward}",
        config_digest="test",
        network=NetworkInfo(asn=2**32 - 1, as_name=awkward, country="IR", source="helper"),
        finished_at=began + timedelta(seconds=90, microseconds=1),
        connectivity=Connectivity.OK,
    )
    measurements = tuple(
        Measurement(
            run_id=run.id,
            platform="telegram",
            target=f"{awkward} {i}",
            id=new_id(),
            observation=Observation(
                layer=Layer.TLS,
                endpoint=f"192.0.2.{i + 1}:443",
                started_at=began + timedelta(seconds=i, microseconds=123457),
                duration_ms=0.1 + i,
                failure="unknown_failure" if i else None,
                failure_detail=awkward if i else None,
                details=TlsHandshake(f"192.0.2.{i + 1}", 443, awkward, cipher="\\x00"),
            ),
        )
        for i in range(3)
    )
    verdict = Verdict(
        run_id=run.id,
        probe_id=run.probe_id,
        measured_at=began,
        asn=None,
        country=None,
        platform="telegram",
        target=measurements[0].target,
        status=Status.INCONCLUSIVE,
        technique=None,
        confidence=None,
        rule_id="control.missing",
        rules_version="2025.4",
        evidence=tuple(m.id for m in measurements),
        detail=awkward,
    )
    return Batch((run,), measurements, (verdict,))


def test_text_copy_must_escape_is_stored_exactly_on_postgresql(database_url: str) -> None:
    batch = _awkward_batch()
    with Store.open(database_url) as collector:
        token_id = add_token(collector, "v")[0].id
        added = ingest_batch(collector, token_id, batch)
        (run,) = collector.runs()
        measurements = sorted(collector.measurements(), key=lambda m: m.observation.duration_ms)
        verdicts = list(collector.verdicts())
    assert (added.runs, added.measurements, added.verdicts) == (1, 3, 1)
    (sent_run,) = batch.runs
    assert run.software_version == sent_run.software_version
    assert run.network == sent_run.network
    assert [m.target for m in measurements] == [m.target for m in batch.measurements]
    assert [m.observation.details for m in measurements] == [
        m.observation.details for m in batch.measurements
    ]
    assert [m.observation.failure_detail for m in measurements] == [
        m.observation.failure_detail for m in batch.measurements
    ]
    assert [m.observation.duration_ms for m in measurements] == [0.1, 1.1, 2.1]
    assert verdicts[0].detail == batch.verdicts[0].detail
    assert verdicts[0].evidence == batch.verdicts[0].evidence


def test_uploaded_times_are_stored_to_the_second_on_postgresql(database_url: str) -> None:
    # A sub-second time is one more handle to match a row against an ISP's flow logs
    # (probe.model.to_the_second): the collector stores what a probe's own database would.
    batch = _awkward_batch()
    with Store.open(database_url) as collector:
        ingest_batch(collector, add_token(collector, "v")[0].id, batch)
        (run,) = collector.runs()
        measurements = list(collector.measurements())
        (verdict,) = collector.verdicts()
    stored = [run.started_at, run.finished_at, verdict.measured_at]
    stored += [m.observation.started_at for m in measurements]
    assert all(t is not None and t.microsecond == 0 for t in stored)
    (sent,) = batch.runs
    assert run.started_at == sent.started_at.replace(microsecond=0)
    assert run.finished_at == sent.started_at.replace(microsecond=0) + timedelta(seconds=90)


def test_a_partly_replayed_batch_adds_only_its_new_rows_on_postgresql(
    database_url: str, tmp_path: Path
) -> None:
    # An acknowledgement lost after the first 20 measurements: the retry carries them again,
    # with 20 the collector has not seen (the path through the staging tables).
    with Store.open(tmp_path / "probe.db") as probe, Store.open(database_url) as collector:
        (run,) = fill_probe(probe, runs=1, measurements=40)
        measurements, verdicts = tuple(probe.measurements()), tuple(probe.verdicts())
        token_id = add_token(collector, "v")[0].id
        first = ingest_batch(collector, token_id, Batch((run,), measurements[:20], verdicts[:5]))
        second = ingest_batch(collector, token_id, Batch((run,), measurements, verdicts))
        stored = sorted(m.id for m in collector.measurements())
    assert (first.runs, first.measurements, first.verdicts) == (1, 20, 5)
    assert (second.runs, second.measurements, second.verdicts) == (0, 20, 35)
    assert stored == sorted(m.id for m in measurements)
    assert table_counts(database_url) == {
        "runs": 1,
        "measurements": 40,
        "verdicts": 40,
        "probe_owners": 1,
    }


def test_a_batch_holding_another_runs_measurement_id_is_refused_whole_on_postgresql(
    database_url: str, tmp_path: Path
) -> None:
    with Store.open(tmp_path / "probe.db") as probe, Store.open(database_url) as collector:
        first_run, second_run = fill_probe(probe, runs=2, measurements=30)
        token_id = add_token(collector, "v")[0].id
        taken = tuple(probe.measurements(run_id=first_run.id))
        ingest_batch(collector, token_id, Batch((first_run,), taken))
        mine = list(probe.measurements(run_id=second_run.id))
        mine[-1] = replace(mine[-1], id=taken[0].id)  # the last one reuses a stored id
        batch = Batch((second_run,), tuple(mine), tuple(probe.verdicts(run_id=second_run.id)))
        with pytest.raises(IdConflictError, match="another run"):
            ingest_batch(collector, token_id, batch)
    # Nothing of the second batch: not its run, not its 29 new measurements, not its verdicts.
    assert table_counts(database_url) == {
        "runs": 1,
        "measurements": 30,
        "verdicts": 0,
        "probe_owners": 1,
    }


async def test_a_batch_whose_last_record_is_bad_is_refused_whole_on_postgresql(
    database_url: str, tmp_path: Path
) -> None:
    with Store.open(tmp_path / "probe.db") as probe:
        (run,) = fill_probe(probe, runs=1, measurements=500)
        batch = Batch((run,), tuple(probe.measurements()), tuple(probe.verdicts()))
    document = json.loads(encode_batch(batch))
    document["measurements"][-1]["observation"]["duration_ms"] = "12.5"
    with Store.open(database_url) as collector_store:
        _, token = add_token(collector_store, "v")
        runner, port = await start(Collector(collector_store), "127.0.0.1", 0)
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    f"http://127.0.0.1:{port}{BATCHES_PATH}",
                    data=compress(json.dumps(document).encode()),
                    headers={"Authorization": f"Bearer {token}", "Content-Encoding": "gzip"},
                ) as response,
            ):
                status, answer = response.status, await response.json()
        finally:
            await runner.cleanup()
    assert status == 400
    assert answer["error"].startswith("$.measurements[499].observation.duration_ms: expected")
    assert table_counts(database_url) == {
        "runs": 0,
        "measurements": 0,
        "verdicts": 0,
        "probe_owners": 0,
    }
