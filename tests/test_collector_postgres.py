"""The collector on a real PostgreSQL server (started by the test, on 127.0.0.1): many probes
uploading at once, a collector killed with SIGKILL in the middle of a batch, replays, and two
tokens racing for one probe id."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
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
from probe.store import Store
from probe.store.uploads import Batch, ForeignProbeError, add_token, ingest_batch
from tests.servers.collector import CollectorProcess, fill_probe
from tests.servers.postgres import PostgresServer, release_shared_server, shared_server

pytestmark = pytest.mark.postgres

FAST = UploadPolicy(deadline_s=60.0, request_timeout_s=20.0, backoff_base_s=0.05, backoff_cap_s=0.5)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = shared_server()
    if server is None:
        pytest.skip("PostgreSQL binaries not found (Debian 12: apt-get install postgresql-15)")
    try:
        yield server
    finally:
        release_shared_server()


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
        (lambda d: d["verdicts"][0].update(asn=2**70), "$.verdicts[0].asn: not an AS number"),
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
