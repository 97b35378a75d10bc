"""The probe's own stalls (probe.stall): the monitor sees a loop that did not run, the runner marks
the measurements that overlapped it, and a real `probe run` stopped (SIGSTOP, as a starved or
swapped-out machine stops it) in the middle of a TLS handshake records the stall and calls the
handshake's timeout inconclusive, where it would otherwise be a confirmed SNI block."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from probe.codec import PROBE_STALL_KEY, CodecError, decode_measurement, encode_measurement
from probe.model import Measurement
from probe.stall import STALL_THRESHOLD, StallMarking, StallMonitor
from tests.builders import dns, tcp
from tests.servers import hostile
from tests.servers.background import background
from tests.servers.dns_server import Behaviour, FakeNameserver
from tests.servers.tls_certs import Pki
from tests.sites import write_site_config

RUN = [sys.executable, "-m", "probe", "run", "--i-understand-the-risks"]


def test_the_monitor_sees_a_loop_that_did_not_run_and_nothing_else() -> None:
    async def main() -> tuple[StallMonitor, float, float]:
        monitor = StallMonitor()
        watcher = asyncio.create_task(monitor.watch())
        await asyncio.sleep(0.3)  # a loop that runs: no stall
        before = time.monotonic()
        time.sleep(0.7)  # noqa: ASYNC251 - the loop that does not run, on purpose
        await asyncio.sleep(0.2)
        after = time.monotonic()
        watcher.cancel()
        return monitor, before, after

    monitor, before, after = asyncio.run(main())
    assert monitor.count == 1
    assert 0.6 <= monitor.seconds <= 0.95
    assert 600.0 <= monitor.overlap_ms(before - 0.1, after) <= 950.0
    assert monitor.overlap_ms(before - 0.3, before - 0.2) == 0.0  # a window before it


def test_a_measurement_is_marked_only_when_its_span_overlapped_a_stall() -> None:
    clock = [100.0]
    monitor = StallMonitor(clock=lambda: clock[0])
    monitor.note(98.0, 99.0)  # stalled from 98 s to 99 s
    kept: list[Measurement] = []

    class Kept:
        def add(self, m: Measurement) -> None:
            kept.append(m)

    marking = StallMarking(Kept(), monitor)
    long = _connect(duration_ms=2500.0)  # from 97.5 s to 100 s
    short = _connect(duration_ms=500.0)  # from 99.5 s to 100 s
    marking.add(long)
    marking.add(short)
    first, second = kept
    assert first.observation.probe_stall_ms == 1000.0
    assert second.observation.probe_stall_ms is None
    assert monitor.count == 1 and STALL_THRESHOLD < 1.0


def test_a_measurement_recorded_before_the_monitor_saw_the_stall_is_marked_too() -> None:
    """After a stall the loop may run a check's timeout, and its recording, before the
    monitor's own tick (found with a real run stopped by SIGSTOP: the warning was printed, but
    the handshake's row carried no stall)."""
    kept: list[Measurement] = []

    class Kept:
        def add(self, m: Measurement) -> None:
            kept.append(m)

    async def main() -> int:
        monitor = StallMonitor()
        watcher = asyncio.create_task(monitor.watch())
        await asyncio.sleep(0.2)
        time.sleep(0.6)  # noqa: ASYNC251 - the loop that does not run, on purpose
        StallMarking(Kept(), monitor).add(_connect(duration_ms=700.0))  # before any tick
        noted_then = monitor.count
        watcher.cancel()
        return noted_then

    assert asyncio.run(main()) == 0
    (marked,) = kept
    assert marked.observation.probe_stall_ms is not None
    assert 500.0 <= marked.observation.probe_stall_ms <= 700.0


def _connect(duration_ms: float) -> Measurement:
    template = tcp("p", "t", "127.0.0.1", 443)
    obs = dataclasses.replace(template.observation, duration_ms=duration_ms)
    return dataclasses.replace(template, observation=obs)


def test_a_stall_survives_the_codec_and_a_hostile_one_is_refused() -> None:
    plain = dns("p", "t", "t.example", ["192.0.2.1"])
    marked = dataclasses.replace(
        plain, observation=dataclasses.replace(plain.observation, probe_stall_ms=812.5)
    )
    assert decode_measurement(encode_measurement(marked)) == marked
    assert decode_measurement(encode_measurement(plain)).observation.probe_stall_ms is None
    for hostile_value in (-1.0, "812", True, float("nan")):
        document: dict[str, Any] = encode_measurement(marked)
        document["observation"][PROBE_STALL_KEY] = hostile_value
        with pytest.raises(CodecError, match=PROBE_STALL_KEY):
            decode_measurement(document)


class _StallingSni:
    """A TLS server's SNI callback that stops the probe (SIGSTOP) for `seconds` when a client
    asks for `name` the first time: what an overloaded or swapped-out machine does to it."""

    def __init__(self, name: str, seconds: float) -> None:
        self.name = name
        self.seconds = seconds
        self.pid: int | None = None
        self.stopped = threading.Event()

    def __call__(self, _sock: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        if server_name != self.name or self.pid is None or self.stopped.is_set():
            return
        self.stopped.set()
        os.kill(self.pid, signal.SIGSTOP)
        threading.Timer(self.seconds, self.resume).start()

    def resume(self) -> None:
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGCONT)


def _page() -> web.Application:
    async def page(_request: web.Request) -> web.Response:
        return web.Response(text="<html><title>ok</title>hello</html>", content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", page)
    return app


@pytest.fixture
def stalling_site(tmp_path: Path) -> Iterator[tuple[Path, _StallingSni]]:
    pki = Pki()
    ca_pem = tmp_path / "ca.pem"
    pki.ca.cert_pem.write_to_path(str(ca_pem))
    identity = pki.server("ok.lo.test", "control.lo.test")
    stall = _StallingSni("ok.lo.test", 2.5)
    identity.context.sni_callback = stall
    zone = {
        "ok.lo.test": Behaviour.answer(a=["127.0.0.1"]),
        "control.lo.test": Behaviour.answer(a=["127.0.0.1"]),
    }
    with (
        FakeNameserver(zone) as ns,
        background(
            lambda: hostile.web_app(_page(), ssl_context=identity.context), hostile.refused_port
        ) as (https, refused),
    ):
        config = write_site_config(
            tmp_path, ns, ca_pem, https.port, refused.port, f"https://control.lo.test:{https.port}/"
        )
        # The one target: the site itself, whose handshake with its own name stops the probe.
        (tmp_path / "catalog" / "lo.toml").write_text(
            f'platform = "lo"\n[[targets]]\nurl = "https://ok.lo.test:{https.port}/"\n'
        )
        try:
            yield config, stall
        finally:
            stall.resume()


def test_a_probe_stopped_across_a_handshake_calls_its_timeout_inconclusive_not_blocked(
    stalling_site: tuple[Path, _StallingSni], tmp_path: Path
) -> None:
    config, stall = stalling_site
    db = tmp_path / "probe.db"
    process = subprocess.Popen(
        [*RUN, "--config", str(config), "--db", str(db), "-v"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stall.pid = process.pid
    try:
        _, err = process.communicate(timeout=90)
    finally:
        stall.resume()
        if process.poll() is None:
            process.kill()
            process.wait()
    assert stall.stopped.is_set(), "the probe never asked for the stalling name"
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert "warning: the probe stalled once" in " ".join(err.split())
    with sqlite3.connect(db) as conn:
        verdicts = dict(conn.execute("select target, rule_id from verdicts").fetchall())
        handshakes = conn.execute(
            "select failure, details from measurements where layer = 'tls'"
        ).fetchall()
    target = next(t for t in verdicts if "ok.lo.test" in t)
    assert verdicts[target] == "probe.stalled"  # before: tls.sni_timeout.differential
    timed_out = [d for f, d in handshakes if f == "generic_timeout_error"]
    assert len(timed_out) == 1 and '"probe_stall_ms"' in timed_out[0]
    stall_ms = float(timed_out[0].split('"probe_stall_ms":')[1].split("}")[0].split(",")[0])
    assert stall_ms >= 1000.0  # stopped for 2.5 s; at least the timeout's worth overlapped
