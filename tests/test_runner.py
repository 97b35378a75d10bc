"""The runner on loopback: pipelines per target, A/B differentials, controls, streaming."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import socket
import struct
import time
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web

from probe.checks import CheckContext, Timeouts
from probe.model import (
    Connectivity,
    DifferentialKind,
    DnsQuery,
    HttpTransaction,
    Layer,
    Measurement,
    Speaks,
    Target,
    TargetKind,
    TcpConnect,
    TlsHandshake,
)
from probe.resolvers import parse_resolver
from probe.runner import CROWD_PER_SLOT, RUN_GC_THRESHOLD, RunOutcome, RunPlan, execute
from tests.builders import ListSink, record
from tests.loops import BOTH
from tests.servers import hostile
from tests.servers.dns_server import Behaviour, FakeNameserver
from tests.servers.tls_certs import Pki


@contextlib.asynccontextmanager
async def sni_filter(
    blocked: bytes, upstream_port: int, *, allowed: tuple[bytes, ...] = ()
) -> AsyncIterator[int]:
    """A middlebox in front of a TLS server: RST when the ClientHello names `blocked` (or, with
    `allowed`, names none of those: an SNI allowlist), otherwise a transparent relay (what a
    censor's SNI filter does)."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hello = await reader.read(65536)
        if blocked in hello or (allowed and not any(name in hello for name in allowed)):
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        up_writer.write(hello)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


def blockpage_app(blocked_host: str) -> web.Application:
    async def page(request: web.Request) -> web.Response:
        if request.host.split(":")[0] == blocked_host:
            return web.Response(status=403, text='<iframe src="http://10.10.34.34/"></iframe>')
        return web.Response(text="<title>fine</title>")

    application = web.Application()
    application.router.add_route("*", "/{tail:.*}", page)
    return application


async def test_sni_reset_gets_a_harmless_sni_handshake_on_the_same_address() -> None:
    pki = Pki()
    identity = pki.server("blocked.lo.test", "ok.lo.test")
    zone = {"blocked.lo.test": Behaviour.answer(a=["127.0.0.1"])}
    async with (
        FakeNameserver(zone) as ns,
        hostile.tls(identity.context) as upstream,
        sni_filter(b"blocked.lo.test", upstream.port) as port,
    ):
        target = Target("lo", "blocked", TargetKind.HTTPS, "blocked.lo.test", (port,))
        sink = ListSink()
        plan = RunPlan(
            targets=[target],
            controls=[],
            resolvers=[parse_resolver(ns.udp_spec)],
            context=pki.check_context(),
            differential_name="ok.lo.test",
        )
        outcome = await execute(plan, "run-1", sink)
    tls = [m.observation for m in sink.all if m.layer is Layer.TLS]
    handshakes = [(o, record(TlsHandshake, o)) for o in tls]
    target_sni = [o for o, d in handshakes if d.sni == "blocked.lo.test"]
    harmless = [(o, d) for o, d in handshakes if d.differential_kind is DifferentialKind.SNI]
    assert [o.failure for o in target_sni] == ["connection_reset"]
    assert len(harmless) == 1 and harmless[0][0].failure is None
    assert harmless[0][1].target_sni == "blocked.lo.test"
    assert harmless[0][0].endpoint == target_sni[0].endpoint
    (result,) = outcome.results
    # The harmless half of the A/B test does not count as the target's progress.
    assert (result.reached, result.failure, result.failed_layer) == (
        Layer.TCP,
        "connection_reset",
        Layer.TLS,
    )
    assert outcome.connectivity is Connectivity.UNKNOWN


async def test_the_harmless_sni_is_a_control_site_that_passed_not_a_fixed_name() -> None:
    # An SNI allowlist that lets the control site's name through and not example.com: the A/B
    # half must use the name that demonstrably passed, or it proves nothing.
    pki = Pki()
    identity = pki.server("blocked.lo.test", "control.lo.test")
    zone = {
        "blocked.lo.test": Behaviour.answer(a=["127.0.0.1"]),
        "control.lo.test": Behaviour.answer(a=["127.0.0.1"]),
    }
    async with (
        FakeNameserver(zone) as ns,
        hostile.tls(identity.context) as upstream,
        sni_filter(b"blocked.lo.test", upstream.port, allowed=(b"control.lo.test",)) as port,
    ):
        target = Target(
            "lo", "blocked", TargetKind.TCP, "blocked.lo.test", (port,), speaks=Speaks.TLS
        )
        control = Target(
            "control",
            "c",
            TargetKind.TCP,
            "control.lo.test",
            (port,),
            control=True,
            speaks=Speaks.TLS,
        )
        sink = ListSink()
        plan = RunPlan(
            targets=[target],
            controls=[control],
            resolvers=[parse_resolver(ns.udp_spec)],
            context=pki.check_context(),
        )
        outcome = await execute(plan, "run-allow", sink)
    assert outcome.connectivity is Connectivity.OK
    (harmless,) = [
        m.observation for m in sink.all if m.observation.differential_kind is DifferentialKind.SNI
    ]
    assert record(TlsHandshake, harmless).sni == "control.lo.test"
    assert record(TlsHandshake, harmless).target_sni == "blocked.lo.test"
    assert harmless.failure is None


async def test_a_tcp_endpoint_that_speaks_tls_gets_a_handshake_with_its_own_sni() -> None:
    # Facebook's API hosts: measured by the TLS their apps send, not by a TCP connect alone.
    pki = Pki()
    identity = pki.server("api.lo.test", "blocked.lo.test", "ok.lo.test")
    zone = {
        "api.lo.test": Behaviour.answer(a=["127.0.0.1"]),
        "blocked.lo.test": Behaviour.answer(a=["127.0.0.1"]),
    }
    async with (
        FakeNameserver(zone) as ns,
        hostile.tls(identity.context) as upstream,
        sni_filter(b"blocked.lo.test", upstream.port) as port,
    ):
        targets = [
            Target("lo", name, TargetKind.TCP, name, (port,), speaks=Speaks.TLS)
            for name in ("api.lo.test", "blocked.lo.test")
        ]
        sink = ListSink()
        plan = RunPlan(
            targets=targets,
            controls=[],
            resolvers=[parse_resolver(ns.udp_spec)],
            context=pki.check_context(),
            differential_name="ok.lo.test",
        )
        outcome = await execute(plan, "run-tls", sink)
    handshakes = {
        (m.target, record(TlsHandshake, m.observation).sni): m.observation
        for m in sink.all
        if m.layer is Layer.TLS
    }
    assert set(handshakes) == {
        ("api.lo.test", "api.lo.test"),
        ("blocked.lo.test", "blocked.lo.test"),
        ("blocked.lo.test", "ok.lo.test"),
    }
    assert handshakes["api.lo.test", "api.lo.test"].failure is None
    assert record(TlsHandshake, handshakes["api.lo.test", "api.lo.test"]).verified
    assert handshakes["blocked.lo.test", "blocked.lo.test"].failure == "connection_reset"
    harmless = handshakes["blocked.lo.test", "ok.lo.test"]
    assert harmless.failure is None
    assert harmless.differential_kind is DifferentialKind.SNI
    reached = {r.target.name: r.reached for r in outcome.results}
    assert reached == {"api.lo.test": Layer.TLS, "blocked.lo.test": Layer.TCP}


async def test_http_blockpage_gets_a_harmless_host_request_to_the_same_server() -> None:
    async with hostile.web_app(blockpage_app("127.0.0.1")) as server:
        target = Target("lo", "dc", TargetKind.HTTP, "127.0.0.1", (server.port,), method="POST")
        sink = ListSink()
        plan = RunPlan(targets=[target], controls=[], resolvers=[parse_resolver("system")])
        await execute(plan, "run-2", sink)
    http = [m.observation for m in sink.all if m.layer is Layer.HTTP]
    first, differential = (record(HttpTransaction, o) for o in http)
    assert first.status == 403 and first.method == "POST"
    assert differential.differential_kind is DifferentialKind.HOST
    assert differential.host_header == "example.com"
    assert differential.status == 200


async def test_each_endpoint_is_connected_twice_the_repeat_recorded_as_attempt_2() -> None:
    # One connect a run cannot tell a path that drops some SYNs from a clean one: every
    # endpoint gets a second plain connect, recorded beside the first with its own time.
    async with hostile.web_app(blockpage_app("blocked.invalid")) as server:
        target = Target("lo", "ok", TargetKind.TCP, "127.0.0.1", (server.port,))
        sink = ListSink()
        outcome = await execute(RunPlan([target], [], [parse_resolver("system")]), "r-rep", sink)
    connects = [record(TcpConnect, m.observation) for m in sink.all if m.layer is Layer.TCP]
    assert sorted(c.attempt for c in connects) == [1, 2]
    assert {(c.address, c.port) for c in connects} == {("127.0.0.1", server.port)}
    assert all(m.failure is None for m in sink.all if m.layer is Layer.TCP)
    (result,) = outcome.results
    assert result.reached is Layer.TCP


async def test_a_connect_and_its_repeat_run_at_once_in_one_slot_of_the_limiter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A connect left to time out (a blackholed address) must cost its target one connect
    # timeout, not two in a row, and its repeat must not wait for a slot another blackholed
    # connect holds: the pair starts together and holds one slot until both have ended.
    from probe.checks import tcp

    real_connect = tcp.connect
    active: list[tuple[str, int]] = []
    overlaps: list[list[tuple[str, int]]] = []

    async def connect(address: str, port: int, context: CheckContext) -> Any:
        active.append((address, port))
        overlaps.append(list(active))
        try:
            await asyncio.sleep(0.05)
            return await real_connect(address, port, context)
        finally:
            active.remove((address, port))

    monkeypatch.setattr(tcp, "connect", connect)
    async with (
        hostile.web_app(blockpage_app("x")) as one,
        hostile.web_app(blockpage_app("x")) as two,
    ):
        targets = [
            Target("lo", f"t{server.port}", TargetKind.TCP, "127.0.0.1", (server.port,))
            for server in (one, two)
        ]
        sink = ListSink()
        plan = RunPlan(targets, [], [parse_resolver("system")], concurrency=1)
        await execute(plan, "r-pair", sink)
    connects = [record(TcpConnect, m.observation) for m in sink.all if m.layer is Layer.TCP]
    assert sorted((c.port, c.attempt) for c in connects) == sorted(
        (server.port, attempt) for server in (one, two) for attempt in (1, 2)
    )
    # Each endpoint's two connects were in flight together, and never beside the other
    # target's (one slot: the pair).
    widest = max(overlaps, key=len)
    assert len(widest) == 2 and len(set(widest)) == 1
    assert all(len(set(seen)) == 1 for seen in overlaps)


async def test_no_differential_when_the_target_answers_normally() -> None:
    async with hostile.web_app(blockpage_app("blocked.invalid")) as server:
        target = Target("lo", "ok", TargetKind.HTTP, "127.0.0.1", (server.port,))
        sink = ListSink()
        await execute(RunPlan([target], [], [parse_resolver("system")]), "run-3", sink)
    # The connect, its repeat (see the test below) and the request.
    assert sorted(m.layer for m in sink.all) == [Layer.HTTP, Layer.TCP, Layer.TCP]
    assert not any(m.observation.differential_kind for m in sink.all)


async def test_a_bug_in_one_targets_check_is_reported_and_the_others_are_still_measured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Found in the lab under load: an asyncio.Timeout rescheduled while expiring raised
    # RuntimeError inside the DNS check, and the TaskGroup turned it into a crashed run (exit 1,
    # an ExceptionGroup traceback, nothing stored). One target's bug is that target's alone.
    from probe.checks import tcp

    real_connect = tcp.connect

    async def connect(address: str, port: int, context: CheckContext) -> Any:
        if port == broken_port:
            raise RuntimeError("Cannot change state of expiring Timeout")
        return await real_connect(address, port, context)

    monkeypatch.setattr(tcp, "connect", connect)
    async with (
        hostile.web_app(blockpage_app("x")) as fine,
        hostile.web_app(blockpage_app("x")) as broken,
    ):
        broken_port = broken.port
        targets = [
            Target("lo", "fine", TargetKind.HTTP, "127.0.0.1", (fine.port,)),
            Target("lo", "broken", TargetKind.HTTP, "127.0.0.1", (broken.port,)),
        ]
        sink = ListSink()
        outcome = await execute(RunPlan(targets, [], [parse_resolver("system")]), "run-b", sink)
    assert outcome.failed_targets == [
        "broken: RuntimeError: Cannot change state of expiring Timeout"
    ]
    layers = sorted(m.layer for m in sink.all if m.target == "fine")
    assert layers == [Layer.HTTP, Layer.TCP, Layer.TCP]
    assert len(outcome.results) == 2


async def test_failed_controls_cancel_the_targets_still_in_flight() -> None:
    async with hostile.refused_port() as refused, hostile.blackhole() as hole:
        control = Target("control", "c", TargetKind.TCP, "127.0.0.1", (refused.port,), control=True)
        slow = [Target("lo", f"t{i}", TargetKind.TCP, "127.0.0.1", (hole.port,)) for i in range(5)]
        pki = Pki()
        context = pki.check_context()
        context = type(context)(
            timeouts=type(context.timeouts)(connect=30.0), ssl_context=context.ssl_context
        )
        sink = ListSink()
        plan = RunPlan(slow, [control], [parse_resolver("system")], context=context)
        outcome = await asyncio.wait_for(execute(plan, "run-4", sink), timeout=10)
    assert outcome.connectivity is Connectivity.NONE
    assert [r.failure for r in outcome.controls] == ["connection_refused"]
    # The blackholed targets were cancelled, not measured: nothing of theirs can read as blocked.
    assert {m.platform for m in sink.all} == {"control"}


async def test_the_outcome_passed_in_is_filled_when_the_run_is_cancelled() -> None:
    async with hostile.web_app(blockpage_app("x")) as fast, hostile.blackhole() as hole:
        targets = [
            Target("lo", "fast", TargetKind.HTTP, "127.0.0.1", (fast.port,)),
            Target("lo", "slow", TargetKind.TCP, "127.0.0.1", (hole.port,)),
        ]
        sink = ListSink()
        outcome = RunOutcome()
        progress: list[tuple[int, int]] = []
        first_done = asyncio.Event()

        def record(done: int, total: int) -> None:
            progress.append((done, total))
            first_done.set()

        task = asyncio.create_task(
            execute(
                RunPlan(targets, [], [parse_resolver("system")]),
                "run-5",
                sink,
                outcome=outcome,
                progress=record,
            )
        )
        await asyncio.wait_for(first_done.wait(), timeout=10)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert outcome.interrupted
    assert progress[0] == (1, 2)
    assert outcome.measurements == len(sink.all) >= 2  # the fast target's TCP and HTTP
    assert {m.target for m in sink.all} >= {"fast"}


@pytest.mark.parametrize("loop", sorted(BOTH))
def test_names_the_system_resolver_never_answers_do_not_starve_other_lookups(
    monkeypatch: pytest.MonkeyPatch, loop: str
) -> None:
    # Found in the censorship lab (dns_drop): getaddrinfo runs in the loop's default executor,
    # min(32, CPUs + 4) threads, and a dropped query holds its thread for the C library's own
    # timeout after the check gave up. Names queued behind such lookups timed out in the queue
    # and were reported as DNS-blocked although nobody blocked them.
    real_getaddrinfo = socket.getaddrinfo

    def fake_getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host.startswith("dropped-"):
            time.sleep(1.0)  # the stub resolver waiting for an answer that never comes
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        if host == "innocent.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 0))]
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    # More hung names than asyncio's default executor has threads on any machine (at most 32).
    dropped = [Target("lo", f"d{i}", TargetKind.DNS, f"dropped-{i}.test") for i in range(40)]
    innocent = Target("lo", "innocent", TargetKind.DNS, "innocent.test")
    context = CheckContext(timeouts=Timeouts(dns=0.5))
    plan = RunPlan([*dropped, innocent], [], [parse_resolver("system")], context=context)
    sink = ListSink()
    with asyncio.Runner(loop_factory=BOTH[loop]) as runner:
        runner.run(execute(plan, "run-6", sink))
    by_target = {m.target: m.observation for m in sink.all}
    assert by_target["d0"].failure == "generic_timeout_error"
    assert by_target["innocent"].failure is None
    assert record(DnsQuery, by_target["innocent"]).addresses == ("127.0.0.1",)


async def test_a_download_cut_mid_body_gets_no_host_differential() -> None:
    # Found in the censorship lab (throttle): a throttled plain-HTTP download times out while
    # reading the body; the harmless-Host request that followed cost another whole http timeout,
    # and the verdict rules never read it (a Host A/B test pairs failures before the response).
    async with hostile.trickle(interval=0.2) as server:
        target = Target("lo", "slow", TargetKind.HTTP, "127.0.0.1", (server.port,))
        context = CheckContext(timeouts=Timeouts(http=0.6))
        sink = ListSink()
        plan = RunPlan([target], [], [parse_resolver("system")], context=context)
        await asyncio.wait_for(execute(plan, "run-7", sink), timeout=10)
    fetches = [m.observation for m in sink.all if m.layer is Layer.HTTP]
    assert [(o.failure, o.failed_operation) for o in fetches] == [("generic_timeout_error", "read")]
    assert not any(o.differential_kind for o in fetches)
    assert len([head for head in server.received if head]) == 1  # one request (and a connect)


async def test_connects_start_on_the_primary_answer_while_a_dropped_resolver_times_out() -> None:
    # Found with benchmarks/lab_benchmark.py: every target waited for all its resolvers before
    # connecting, so a control resolver the censor null-routes (or a UDP resolver listening for
    # a second answer) delayed every target's pipeline by up to a DNS timeout.
    name = "fast.lo.test"
    async with (
        FakeNameserver({name: Behaviour.answer(a=["127.0.0.1"])}) as primary,
        FakeNameserver({name: Behaviour.drop()}) as dropped,
        hostile.silent() as server,
    ):
        target = Target("lo", "t", TargetKind.TCP, name, (server.port,))
        resolvers = [parse_resolver(primary.udp_spec), parse_resolver(dropped.udp_spec)]
        context = CheckContext(timeouts=Timeouts(dns=1.0), dns_second_answer_window=0.0)
        sink = ListSink()
        await asyncio.wait_for(execute(RunPlan([target], [], resolvers, context), "r8", sink), 10)
    by_endpoint = {m.observation.endpoint: m.observation for m in sink.all}
    answered, silent = by_endpoint[primary.udp_spec], by_endpoint[dropped.udp_spec]
    (connect,) = [
        m.observation
        for m in sink.all
        if m.layer is Layer.TCP and record(TcpConnect, m.observation).attempt == 1
    ]
    assert answered.failure is None and connect.failure is None
    assert silent.failure == "generic_timeout_error"  # still measured and stored
    # An ordering, not a speed: the connect began while the dropped query was still waiting.
    gave_up = silent.started_at + timedelta(milliseconds=silent.duration_ms)
    assert connect.started_at < gave_up, "the connect waited for the dropped resolver"


async def test_a_resolver_answering_after_the_connect_does_not_undo_the_reached_layer() -> None:
    # The control site connects on the primary answer; a slower second resolver answers after
    # that. The run must still count the control as reached past DNS (else a working network is
    # called dead: exit 3, every verdict inconclusive, as the lab benchmark once showed).
    name = "control.lo.test"
    async with (
        FakeNameserver({name: Behaviour.answer(a=["127.0.0.1"])}) as primary,
        FakeNameserver({name: Behaviour.answer(a=["127.0.0.1"], delay=0.4)}) as slower,
        hostile.silent() as server,
    ):
        control = Target("control", "c", TargetKind.TCP, name, (server.port,), control=True)
        resolvers = [parse_resolver(primary.udp_spec), parse_resolver(slower.udp_spec)]
        context = CheckContext(dns_second_answer_window=0.0)
        plan = RunPlan([], [control], resolvers, context)
        outcome = await asyncio.wait_for(execute(plan, "r9", ListSink()), 10)
    assert outcome.connectivity is Connectivity.OK
    assert outcome.controls[0].reached is Layer.TCP


class FakeRawnet:
    """Stands in for probe.rawnet (raw sockets need root): records what the runner asks to
    capture, and when."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], float]] = []

    async def tcp_reset_evidence(self, *args: Any) -> dict[str, Any]:
        self.calls.append(("tcp", args, time.monotonic()))
        return {"evidence": "tcp_packets", "reset_ttls": [64], "segments": []}

    async def dns_packet_evidence(self, *args: Any) -> dict[str, Any]:
        self.calls.append(("dns", args, time.monotonic()))
        return {"evidence": "dns_packets", "responses": []}


async def test_raw_captures_follow_the_measurements_once_per_endpoint_within_the_budget() -> None:
    raw = FakeRawnet()
    name = "raced.lo.test"
    async with (
        FakeNameserver({name: Behaviour.inject(["10.10.34.35"], a=["127.0.0.1"])}) as ns,
        hostile.refused_port() as shared,
        hostile.blackhole() as hole,
    ):
        ports = []
        for _ in range(5):  # more distinct refused endpoints than the budget allows
            async with hostile.refused_port() as other:
                ports.append(other.port)
        targets = [
            *(
                Target("lo", f"same{i}", TargetKind.TCP, "127.0.0.1", (shared.port,))
                for i in range(3)
            ),
            *(Target("lo", f"other{p}", TargetKind.TCP, "127.0.0.1", (p,)) for p in ports),
            Target("lo", "raced", TargetKind.TCP, name, (shared.port,)),
            Target("lo", "slow", TargetKind.TCP, "127.0.0.1", (hole.port,)),
        ]
        context = CheckContext(timeouts=Timeouts(connect=0.5), dns_second_answer_window=0.2)
        plan = RunPlan(targets, [], [parse_resolver(ns.udp_spec)], context, rawnet=raw)
        sink = ListSink()
        await asyncio.wait_for(execute(plan, "r10", sink), 10)
    tcp = [args[:2] for kind, args, _ in raw.calls if kind == "tcp"]
    dns_calls = [args for kind, args, _ in raw.calls if kind == "dns"]
    # One capture per address and port, the shared one among them, never more than four.
    assert len(tcp) == 4 and len(set(tcp)) == 4 and ("127.0.0.1", shared.port) in tcp
    assert [(a[0], a[1], a[2]) for a in dns_calls] == [(ns.host, ns.port, name)]
    captures = [m for m in sink.all if m.observation.differential_kind is DifferentialKind.RAW]
    assert len(captures) == 5
    # Captured after every measurement ended (the blackholed connect's timeout included), so a
    # sniffer never perturbs the timings it explains.
    measured = [m.observation for m in sink.all if m not in captures]
    last_end = max(o.started_at.timestamp() + o.duration_ms / 1000 for o in measured)
    # Wall-clock starts are to the second: the captures start in or after the last end's second,
    # and their measurement ids (made in order within a process) come after every other one.
    assert min(c.observation.started_at.timestamp() for c in captures) >= last_end // 1
    assert min(c.id for c in captures) > max(m.id for m in sink.all if m not in captures)


async def test_a_capture_that_breaks_is_recorded_and_the_run_still_ends() -> None:
    class BrokenRawnet(FakeRawnet):
        async def tcp_reset_evidence(self, *args: Any) -> dict[str, Any]:
            raise RuntimeError("sniffer thread died")

    async with hostile.refused_port() as refused:
        target = Target("lo", "refused", TargetKind.TCP, "127.0.0.1", (refused.port,))
        plan = RunPlan([target], [], [parse_resolver("system")], rawnet=BrokenRawnet())
        sink = ListSink()
        outcome = await asyncio.wait_for(execute(plan, "r11", sink), 10)
    # The repeat connect is no evidence to capture: only the flow's own connect is.
    (capture,) = [
        m.observation for m in sink.all if m.observation.differential_kind is DifferentialKind.RAW
    ]
    connects = [m.observation for m in sink.all if m.observation is not capture]
    assert [c.failure for c in connects] == ["connection_refused"] * 2
    assert capture.failure == "unknown_failure"
    assert capture.failure_detail == "RuntimeError: sniffer thread died"
    assert outcome.measurements == 3


async def test_controls_are_measured_before_the_crowd_and_targets_in_flight_stay_bounded() -> None:
    """A test list far longer than the concurrency: the control is measured alone first (its own
    run's load cannot starve it), then the targets are taken a bounded number at a time (no
    task per target created up front: 200,000 of them took 1.5 GB)."""
    async with hostile.refused_port() as refused, hostile.web_app(blockpage_app("x")) as up:
        control = Target("control", "c", TargetKind.TCP, "127.0.0.1", (up.port,), control=True)
        crowd = [
            Target("testlist", f"t{i}", TargetKind.TCP, "127.0.0.1", (refused.port,))
            for i in range(3000)
        ]
        concurrency = 8
        plan = RunPlan(crowd, [control], [parse_resolver("system")], concurrency=concurrency)
        sink = ListSink()
        peak = 0

        def sample(_done: int, _total: int) -> None:
            nonlocal peak
            peak = max(peak, len(asyncio.all_tasks()))

        outcome = await execute(plan, "run-crowd", sink, progress=sample)
    assert outcome.connectivity is Connectivity.OK
    assert len(outcome.results) == 3000
    assert all(r.failure == "connection_refused" for r in outcome.results)
    # Bounded whatever the length of the list: the workers (CROWD_PER_SLOT per slot), a connect
    # task or two each, and a few of the run's own tasks.
    assert peak <= concurrency * CROWD_PER_SLOT * 3 + 10 < len(crowd) / 10, peak
    measured = sink.all
    control_end = max(m.observation.started_at for m in measured if m.platform == "control")
    first_target = min(m.observation.started_at for m in measured if m.platform == "testlist")
    assert control_end <= first_target


async def test_a_lying_network_resolver_still_gets_the_true_address_measured_beside_it() -> None:
    # The network's resolver (the first) answers an address where nothing listens; a second
    # resolver answers the true one. The flow measures the network's answer (what every app
    # uses), and the true address is measured too, for IP-level reachability.
    pki = Pki()
    name = "lied.lo.test"
    identity = pki.server(name)
    async with (
        FakeNameserver({name: Behaviour.answer(a=["127.0.0.3"])}) as network,
        FakeNameserver({name: Behaviour.answer(a=["127.0.0.1"])}) as honest,
        hostile.tls(identity.context) as server,
    ):
        target = Target("lo", "lied", TargetKind.HTTPS, name, (server.port,))
        resolvers = [parse_resolver(network.udp_spec), parse_resolver(honest.udp_spec)]
        context = dataclasses.replace(pki.check_context(), dns_second_answer_window=0.0)
        sink = ListSink()
        outcome = await asyncio.wait_for(
            execute(RunPlan([target], [], resolvers, context), "r10", sink), 20
        )
    tcp = [record(TcpConnect, m.observation) for m in sink.all if m.layer is Layer.TCP]
    connects = {(d.address, d.address_source) for d in tcp}
    assert connects == {("127.0.0.3", network.udp_spec), ("127.0.0.1", honest.udp_spec)}
    (handshake,) = [record(TlsHandshake, m.observation) for m in sink.all if m.layer is Layer.TLS]
    assert (handshake.address, handshake.verified) == ("127.0.0.1", True)
    # The target's own progress is the network's path: it never got past DNS there.
    (result,) = outcome.results
    assert result.failed_layer is Layer.TCP


async def test_a_run_collects_garbage_less_often_and_leaves_the_collector_as_it_found_it() -> None:
    # During the run: the objects that existed before it are frozen (out of every collection)
    # and the first generation waits for RUN_GC_THRESHOLD allocations; afterwards both are
    # back, so a long-lived process (the scheduler's, a test session) collects as it did.
    seen: list[tuple[tuple[int, int, int], int]] = []

    class Watching(ListSink):
        def save_measurements(self, batch: Sequence[Measurement]) -> None:
            seen.append((gc.get_threshold(), gc.get_freeze_count()))
            super().save_measurements(batch)

    before = gc.get_threshold()
    async with hostile.web_app(blockpage_app("blocked.invalid")) as server:
        target = Target("lo", "ok", TargetKind.TCP, "127.0.0.1", (server.port,))
        await execute(RunPlan([target], [], [parse_resolver("system")]), "r-gc", Watching())
    assert seen and all(t[0] == RUN_GC_THRESHOLD and frozen > 0 for t, frozen in seen)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
