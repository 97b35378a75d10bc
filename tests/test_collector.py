"""The collector and the uploader on loopback, with SQLite databases: uploads arrive whole and once,
tokens only add their own probes' data, and hostile uploads are refused without harm.
(The same paths on PostgreSQL, with many probes at once and a collector killed mid-batch:
test_collector_postgres.py.)"""

from __future__ import annotations

import asyncio
import gc
import gzip
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import create_engine, text

from probe.codec import encode_measurement, encode_run
from probe.collector.batch import FORMAT, BatchLimits, compress, encode_batch
from probe.collector.server import (
    BATCHES_PATH,
    SERVE_GC_THRESHOLD,
    Collector,
    CollectorLimits,
    serve,
    start,
)
from probe.collector.uploader import UploadPolicy, UploadTarget, upload, upload_status
from probe.config import ConfigError, parse_settings
from probe.store import Store
from probe.store.uploads import Batch, add_token, list_tokens, revoke_token
from tests.cli import invoke
from tests.servers.collector import fill_probe, new_id

FAST = UploadPolicy(deadline_s=5.0, request_timeout_s=5.0, backoff_base_s=0.05, backoff_cap_s=0.2)


@dataclass
class Running:
    url: str
    store: Store
    token: str


@pytest.fixture
def probe_store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "probe.db") as store:
        yield store


async def _serve(path: Path, limits: CollectorLimits | None = None) -> AsyncIterator[Running]:
    store = Store.open(path)
    _, token = add_token(store, "volunteer-1")
    runner, port = await start(Collector(store, limits), "127.0.0.1", 0)
    try:
        yield Running(f"http://127.0.0.1:{port}", store, token)
    finally:
        await runner.cleanup()
        store.close()


@pytest.fixture
async def collector(tmp_path: Path) -> AsyncIterator[Running]:
    async for running in _serve(tmp_path / "collector.db"):
        yield running


def counts(store: Store) -> tuple[int, int, int]:
    return (
        len(list(store.runs())),
        len(list(store.measurements())),
        len(list(store.verdicts())),
    )


async def post(
    url: str, body: bytes, token: str | None, encoding: str = "gzip"
) -> tuple[int, dict[str, object]]:
    headers = {"Content-Encoding": encoding, "Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + BATCHES_PATH, data=body, headers=headers) as response,
    ):
        return response.status, await response.json(content_type=None)


def one_run_batch(store: Store) -> bytes:
    (run,) = fill_probe(store, runs=1, measurements=3)
    batch = Batch((run,), tuple(store.measurements(run_id=run.id)), tuple(store.verdicts()))
    return compress(encode_batch(batch))


async def test_upload_sends_every_queued_run_and_a_replay_adds_nothing(
    collector: Running, probe_store: Store
) -> None:
    fill_probe(probe_store, runs=3, measurements=25)
    target = UploadTarget(collector.url, collector.token)

    report = await upload(probe_store, target, replace(FAST, max_measurements=10))

    assert report.error is None and report.runs_done == 3
    assert report.batches >= 8  # 75 measurements + 75 verdicts, at most 10 records a batch
    assert counts(collector.store) == (3, 75, 75) == counts(probe_store)
    assert {m.id for m in collector.store.measurements()} == {
        m.id for m in probe_store.measurements()
    }
    assert upload_status(probe_store).queued == []
    again = await upload(probe_store, target, FAST)
    assert again.batches == 0  # nothing queued: nothing sent
    # A replay of everything (the acknowledgements lost) adds nothing either.
    with probe_store._transaction(write=True) as conn:
        conn.execute(text("DELETE FROM upload_progress"))
    replay = await upload(probe_store, target, FAST)
    assert replay.error is None and replay.runs_done == 3 and replay.measurements_added == 0
    assert counts(collector.store) == (3, 75, 75)


async def test_token_cannot_add_runs_to_a_probe_another_token_uploads(
    collector: Running, probe_store: Store, tmp_path: Path
) -> None:
    fill_probe(probe_store, runs=1, measurements=5)
    first = await upload(probe_store, UploadTarget(collector.url, collector.token), FAST)
    assert first.error is None
    _, other = add_token(collector.store, "someone-else")
    # The other token replays this probe's id with a new run: an injection.
    more = fill_probe(probe_store, runs=1, measurements=5)

    report = await upload(probe_store, UploadTarget(collector.url, other), FAST)

    assert report.refused and report.error is not None
    assert "(403)" in report.error and probe_store.probe_id() in report.error
    assert counts(collector.store) == (1, 5, 5)
    (queued,) = upload_status(probe_store).queued
    assert queued.run.id == more[0].id and queued.last_error == report.error


async def test_run_id_stored_for_another_probe_refuses_the_whole_batch(
    collector: Running, probe_store: Store, tmp_path: Path
) -> None:
    (run,) = fill_probe(probe_store, runs=1, measurements=2)
    assert (
        await upload(probe_store, UploadTarget(collector.url, collector.token), FAST)
    ).error is None
    _, other = add_token(collector.store, "attacker")
    with Store.open(tmp_path / "attacker.db") as attacker:
        # Another probe claims the same run id, with a measurement of its own.
        forged = replace(run, probe_id=attacker.probe_id())
        measurement = next(iter(probe_store.measurements()))
        injected = replace(measurement, id=new_id())
        body = compress(encode_batch(Batch((forged,), (injected,))))

    status, answer = await post(collector.url, body, other)

    assert status == 409 and "run id" in str(answer["error"])
    assert counts(collector.store) == (1, 2, 2)


async def test_revoked_and_unknown_tokens_are_refused_before_the_body_is_read(
    collector: Running, probe_store: Store
) -> None:
    body = one_run_batch(probe_store)
    revoke_token(collector.store, "volunteer-1")

    assert (await post(collector.url, body, collector.token))[0] == 401
    assert (await post(collector.url, body, "not-a-token"))[0] == 401
    status, answer = await post(collector.url, body, None)
    assert status == 401 and "Bearer" in str(answer["error"])
    assert counts(collector.store) == (0, 0, 0)


@pytest.mark.parametrize(
    ("body", "encoding", "status", "reason"),
    [
        (b"\x00garbage\xff" * 10, "identity", 400, "not JSON"),
        (b"not gzip at all", "gzip", 400, "not valid gzip"),
        (gzip.compress(b"[1, 2, 3]"), "gzip", 400, "expected an object"),
        (gzip.compress(b'{"format": "x"}'), "gzip", 400, "$.format"),
        (
            gzip.compress(json.dumps({"format": FORMAT, "version": 1}).encode()),
            "gzip",
            400,
            "at least one run",
        ),
        (gzip.compress(b"{}"), "br", 400, "Content-Encoding"),
    ],
)
async def test_garbage_uploads_are_refused_with_a_reason(
    collector: Running, body: bytes, encoding: str, status: int, reason: str
) -> None:
    got, answer = await post(collector.url, body, collector.token, encoding)
    assert got == status and reason in str(answer["error"])
    assert counts(collector.store) == (0, 0, 0)


_DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("where", ["the document", "a raw capture's details"])
async def test_deeply_nested_upload_is_a_400_not_a_crash(
    collector: Running, probe_store: Store, where: str
) -> None:
    # The collector's parser may read any depth (orjson does); the codec's readers recurse.
    if where == "the document":
        text = _DEEP
    else:
        document = _document(probe_store)
        observation = document["measurements"][0]["observation"]  # type: ignore[index]
        observation.update(layer="dns", details={"differential_kind": "raw", "deep": "DEEP"})
        text = json.dumps(document).replace('"DEEP"', _DEEP)
    status, answer = await post(collector.url, compress(text.encode()), collector.token)
    assert status == 400
    assert "\n" not in str(answer["error"]) and len(str(answer["error"])) < 300
    assert counts(collector.store) == (0, 0, 0)


def _document(store: Store) -> dict[str, object]:
    (run,) = fill_probe(store, runs=1, measurements=2)
    batch = Batch((run,), tuple(store.measurements(run_id=run.id)), tuple(store.verdicts()))
    document: dict[str, object] = json.loads(encode_batch(batch))
    return document


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda d: d["runs"][0].update(started_at=5), "$.runs[0].started_at: expected a string"),
        (lambda d: d["runs"][0].update(id="../../etc"), "$.runs[0].id"),
        (lambda d: d["measurements"][1].update(run_id=new_id()), "is not in this batch"),
        (
            lambda d: d["measurements"][0]["observation"].update(duration_ms="slow"),
            "$.measurements[0].observation.duration_ms: expected a number",
        ),
        (
            lambda d: d["measurements"][0]["observation"].update(
                started_at=(datetime.now(UTC) + timedelta(days=2)).isoformat()
            ),
            "is in the future",
        ),
        (lambda d: d["verdicts"][0].update(probe_id=new_id()), "$.verdicts[0].probe_id"),
        (lambda d: d["verdicts"][0].update(status="censored"), "$.verdicts[0].status"),
        (lambda d: d["measurements"].append(d["measurements"][0]), "appears twice"),
        (lambda d: d["runs"][0].update(config_digest="x" * 5000), "longer than"),
    ],
)
async def test_records_with_wrong_types_or_ids_refuse_the_whole_batch(
    collector: Running, probe_store: Store, change: object, reason: str
) -> None:
    document = _document(probe_store)
    change(document)  # type: ignore[operator]
    status, answer = await post(
        collector.url, compress(json.dumps(document).encode()), collector.token
    )
    assert status == 400 and reason in str(answer["error"])
    assert counts(collector.store) == (0, 0, 0)


async def test_compression_bomb_is_refused_without_inflating_it(tmp_path: Path) -> None:
    limits = CollectorLimits(batch=BatchLimits(max_decompressed_bytes=1 << 20))
    async for running in _serve(tmp_path / "c.db", limits):
        bomb = gzip.compress(b" " * (200 << 20))  # 200 MiB of spaces in ~200 KiB
        assert len(bomb) < limits.max_body_bytes
        status, answer = await post(running.url, bomb, running.token)
        assert status == 413 and "inflates to more than" in str(answer["error"])


async def test_body_over_the_size_cap_is_refused(tmp_path: Path) -> None:
    limits = CollectorLimits(max_body_bytes=64 * 1024)
    async for running in _serve(tmp_path / "c.db", limits):
        status, answer = await post(running.url, b"x" * (1 << 20), running.token, "identity")
        assert status == 413 and "larger than" in str(answer["error"])


async def test_token_over_its_request_rate_gets_429_with_retry_after(
    tmp_path: Path, probe_store: Store
) -> None:
    limits = CollectorLimits(rate_per_s=0.01, burst=2)
    async for running in _serve(tmp_path / "c.db", limits):
        body = one_run_batch(probe_store)
        statuses = [(await post(running.url, body, running.token))[0] for _ in range(3)]
        assert statuses == [200, 200, 429]


async def _open_raw(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


async def test_slow_request_head_is_cut_off(tmp_path: Path) -> None:
    limits = CollectorLimits(head_timeout_s=0.5)
    async for running in _serve(tmp_path / "c.db", limits):
        reader, writer = await _open_raw(running.url)
        writer.write(b"POST /v1/batches HTTP/1.1\r\nHost: x\r\n")  # and never the rest
        await writer.drain()
        closed = await asyncio.wait_for(reader.read(), timeout=10)  # EOF: the server hung up
        writer.close()
        assert closed == b""


async def test_slow_body_is_cut_off_with_408(tmp_path: Path) -> None:
    limits = CollectorLimits(body_timeout_s=0.5)
    async for running in _serve(tmp_path / "c.db", limits):
        reader, writer = await _open_raw(running.url)
        writer.write(
            b"POST /v1/batches HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
            + f"Authorization: Bearer {running.token}\r\n\r\n".encode()
            + b"{"
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.readline(), timeout=10)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 408")
        assert counts(running.store) == (0, 0, 0)


async def test_collector_logs_and_answers_never_name_the_client_address(
    collector: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    reader, writer = await _open_raw(collector.url)
    writer.write(b"GARBAGE \x00\x01 HTTP/9\r\n\r\n")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    status, body = await post(collector.url, b"{}", "wrong")

    assert answer.startswith(b"HTTP/1.") and b"400" in answer.split(b"\r\n")[0]
    assert status == 401
    assert "127.0.0.1" not in caplog.text and "127.0.0.1" not in answer.decode(errors="replace")
    assert "127.0.0.1" not in json.dumps(body)


async def test_unreachable_collector_keeps_every_run_queued_until_it_is_back(
    tmp_path: Path, probe_store: Store
) -> None:
    # Runs taken while the collector is down: each upload gives up quietly, within its deadline.
    async for running in _serve(tmp_path / "c.db"):
        url, token = running.url, running.token
    for _ in range(3):
        fill_probe(probe_store, runs=1, measurements=4)
        report = await upload(probe_store, UploadTarget(url, token), replace(FAST, deadline_s=0.5))
        assert report.error is not None and "cannot reach the collector" in report.error
        assert not report.refused
    state = upload_status(probe_store)
    assert len(state.queued) == 3 and state.measurements == 12
    assert all(item.attempts >= 1 and item.last_error for item in state.queued)

    port = int(url.rsplit(":", 1)[1])
    store = Store.open(tmp_path / "c.db")
    runner, _ = await start(Collector(store), "127.0.0.1", port)
    try:
        report = await upload(probe_store, UploadTarget(url, token), FAST)
        assert report.error is None and report.runs_done == 3
        assert counts(store) == (3, 12, 12)
    finally:
        await runner.cleanup()
        store.close()
    assert upload_status(probe_store).queued == []


def test_token_add_prints_the_token_once_and_the_database_keeps_only_its_hash(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "collector.db")
    added = invoke("collector", "token", "add", "volunteer-7", "--db", db)
    assert added.code == 0, added.output
    token = added.stdout.strip().splitlines()[-1]
    assert len(token) >= 43

    listed = invoke("collector", "token", "list", "--db", db)
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        dump = "\n".join(str(row) for row in conn.execute(text("SELECT * FROM upload_tokens")))
    engine.dispose()
    assert "volunteer-7" in listed.stdout and token not in listed.stdout
    assert token not in dump and "volunteer-7" in dump
    duplicate = invoke("collector", "token", "add", "volunteer-7", "--db", db)
    assert duplicate.code == 1 and "already has a token named" in duplicate.output
    revoked = invoke("collector", "token", "revoke", "volunteer-7", "--db", db)
    assert revoked.code == 0
    with Store.open(db) as store:
        (info,) = list_tokens(store)
    assert info.revoked_at is not None


def test_upload_status_lists_what_is_not_uploaded(tmp_path: Path) -> None:
    db = str(tmp_path / "probe.db")
    with Store.open(db) as store:
        fill_probe(store, runs=2, measurements=3)
    result = invoke("upload", "--status", "--db", db)
    assert result.code == 0, result.output
    assert "2 run(s) and 6 measurement(s) not yet uploaded" in result.stdout
    nothing = invoke("upload", "--db", db)
    assert nothing.code == 1 and "set [upload] url and token" in nothing.output


def test_measurement_codec_round_trips_through_the_batch(probe_store: Store) -> None:
    (run,) = fill_probe(probe_store, runs=1, measurements=1)
    (measurement,) = probe_store.measurements()
    document = json.loads(encode_batch(Batch((run,), (measurement,))))
    assert document["runs"] == [encode_run(run)]
    assert document["measurements"] == [encode_measurement(measurement)]


async def test_interrupted_upload_resumes_where_it_stopped(
    tmp_path: Path, probe_store: Store
) -> None:
    (run,) = fill_probe(probe_store, runs=1, measurements=60)
    path = tmp_path / "c.db"
    store = Store.open(path)
    _, token = add_token(store, "v")
    runner, port = await start(Collector(store), "127.0.0.1", 0)
    target = UploadTarget(f"http://127.0.0.1:{port}", token)
    policy = replace(FAST, max_measurements=10, deadline_s=2.0)
    sending = asyncio.create_task(upload(probe_store, target, policy))
    for _ in range(4000):  # at most 20 s
        if len(list(store.measurements())) >= 20:
            break
        await asyncio.sleep(0.005)
    await runner.cleanup()  # the collector goes away part way through the run
    first = await sending
    (queued,) = upload_status(probe_store).queued
    assert first.error is not None and queued.measurements_through is not None
    sent_before = first.measurements_sent
    assert 20 <= sent_before < 60

    runner, _ = await start(Collector(store), "127.0.0.1", port)
    try:
        second = await upload(probe_store, target, replace(policy, deadline_s=10.0))
    finally:
        await runner.cleanup()
    assert second.error is None and second.runs_done == 1
    # Resumed, not started again: at most the batch whose acknowledgement was lost is re-sent.
    assert second.measurements_sent in (60 - sent_before, 60 - sent_before + 10)
    assert counts(store) == (1, 60, 60)
    store.close()
    assert run.id not in {q.run.id for q in upload_status(probe_store).queued}


@pytest.mark.parametrize(
    ("upload", "message"),
    [
        ({"url": "https://c.example"}, "give both url and token"),
        ({"url": "ftp://c.example", "token": "t"}, "must start with http:// or https://"),
        ({"url": "https://u:p@c.example", "token": "t"}, "[upload] token, not in the URL"),
        ({"url": "https://c.example", "token": "a\nb"}, "must be printable"),
        ({"url": "https://c.example", "token": "t", "proxy": "socks5://p"}, "proxy must start"),
        ({"url": "https://c.example", "token": "t", "retries": 3}, "unknown key(s) retries"),
    ],
)
def test_bad_upload_config_is_a_one_line_error(upload: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_settings({"upload": upload})
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_upload_token_stays_out_of_the_config_digest() -> None:
    one = parse_settings({"upload": {"url": "https://c.example", "token": "secret-1"}})
    two = parse_settings({"upload": {"url": "https://c.example", "token": "secret-2"}})
    assert one.upload_token == "secret-1" and one.digest() == two.digest()


async def test_a_token_holding_two_slow_batches_cannot_take_a_third_slot(
    tmp_path: Path, probe_store: Store
) -> None:
    # A burst large enough that the polling below never meets the rate limit (that limit has
    # its own tests): on a loaded machine the server may take many polls to hold both slow ones.
    limits = CollectorLimits(burst=100_000, rate_per_s=1000.0)
    async for collector in _serve(tmp_path / "c.db", limits):
        await _two_slow_batches_then_a_third(collector, probe_store)


async def _two_slow_batches_then_a_third(collector: Running, probe_store: Store) -> None:
    slow = []
    for _ in range(2):
        _reader, writer = await _open_raw(collector.url)
        writer.write(
            b"POST /v1/batches HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
            + f"Authorization: Bearer {collector.token}\r\n\r\n".encode()
            + b"{"
        )
        await writer.drain()
        slow.append(writer)
    status, answer = 500, dict[str, object]()
    batch = one_run_batch(probe_store)
    deadline = time.monotonic() + 20.0
    while time.monotonic() < deadline:  # until the server has both slow ones in hand
        status, answer = await post(collector.url, batch, collector.token)
        if status == 429:
            break
        await asyncio.sleep(0.01)
    for writer in slow:
        writer.close()
    assert status == 429 and "already has batches in flight" in str(answer["error"])
    _, other = add_token(collector.store, "another-volunteer")
    with Store.open(probe_store.location + ".other") as elsewhere:
        assert (await post(collector.url, one_run_batch(elsewhere), other))[0] == 200


def test_serving_collects_garbage_less_often_and_restores_the_collector_after(
    tmp_path: Path,
) -> None:
    # While serving, what existed at start is frozen and the first generation waits for
    # SERVE_GC_THRESHOLD allocations (probe.garbage); both come back when serve returns.
    seen: list[tuple[tuple[int, int, int], int]] = []

    class Stop(Exception):
        pass

    def ready(port: int) -> None:
        seen.append((gc.get_threshold(), gc.get_freeze_count()))
        raise Stop

    before = gc.get_threshold()
    with pytest.raises(Stop):
        serve(str(tmp_path / "c.db"), "127.0.0.1", 0, ready=ready)
    ((threshold, frozen),) = seen
    assert threshold[0] == SERVE_GC_THRESHOLD and frozen > 0
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
