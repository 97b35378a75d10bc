"""One TLS handshake per HTTPS target: the HTTP request rides the connection the TLS check
verified (probe/checks/tls.py HeldConnection, probe/checks/http.py), counted at a loopback HTTPS
server that sees every handshake; and the TLS records, failures and A/B controls of the cases
where no connection is handed over stay what they were."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from probe.checks import http
from probe.checks.tls import BROWSER_ALPN, HTTP1_ALPN, HeldConnection, handshake
from probe.model import (
    DifferentialKind,
    HttpTransaction,
    Layer,
    Measurement,
    Operation,
    Target,
    TargetKind,
    TlsHandshake,
)
from probe.resolvers import parse_resolver
from probe.runner import RunOutcome, RunPlan, execute
from tests.builders import ListSink, record
from tests.servers import hostile
from tests.servers.dns_server import Behaviour, FakeNameserver
from tests.servers.tls_certs import Pki, ServerIdentity

pytestmark = pytest.mark.both_loops

SITE = "site.lo.test"
OTHER = "other.lo.test"
HARMLESS = "ok.lo.test"
PAGE = b"<html><head><title>Riding</title></head><body>hello</body></html>"


@dataclass
class CountingServer:
    """An HTTPS server that counts what it sees: the SNI of every handshake (completed or not),
    the ALPN and request line of every request, and the connections still open."""

    host: str
    port: int
    handshakes: list[str] = field(default_factory=list)
    requests: list[tuple[str | None, str]] = field(default_factory=list)
    open: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    def opened(self) -> None:
        self.open += 1
        self.idle.clear()

    def closed(self) -> None:
        self.open -= 1
        if not self.open:
            self.idle.set()

    async def all_closed(self) -> None:
        """Return once every connection the server accepted has been closed by the client
        (bounded: a connection left open fails the test here)."""
        if self.open:
            async with asyncio.timeout(5.0):
                await self.idle.wait()


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await reader.read(4096)
        if not chunk:
            break
        data += chunk
    return data


@contextlib.asynccontextmanager
async def counting_https(
    identity: ServerIdentity,
    *,
    host: str = hostile.LOOPBACK,
    port: int = 0,
    redirect_to: str | None = None,
) -> AsyncIterator[CountingServer]:
    """`identity`'s certificate on `host`; "/" answers 200 with PAGE, or a 302 to
    `redirect_to` when given; each answer closes its connection once the client has."""
    server = CountingServer(host, port)
    context = identity.context

    def on_sni(_obj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        server.handshakes.append(name or "")

    context.sni_callback = on_sni
    tasks: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        server.opened()
        try:
            head = await _read_head(reader)
            if head:
                ssl_object = writer.get_extra_info("ssl_object")
                line = head.split(b"\r\n", 1)[0].decode("latin-1")
                server.requests.append((ssl_object.selected_alpn_protocol(), line))
                if redirect_to is not None:
                    answer = f"HTTP/1.1 302 Found\r\nLocation: {redirect_to}\r\n"
                    answer += "Content-Length: 0\r\nConnection: close\r\n\r\n"
                    writer.write(answer.encode("ascii"))
                else:
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
                        b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(PAGE) + PAGE
                    )
                await writer.drain()
            while await reader.read(65536):
                pass
        except (ConnectionError, ssl.SSLError, asyncio.CancelledError):
            pass
        finally:
            server.closed()
            writer.transport.abort()

    listening = await asyncio.start_server(handle, host, port, ssl=context)
    server.port = listening.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listening.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await listening.wait_closed()


async def run_one(pki: Pki, zone: dict[str, Behaviour], port: int) -> tuple[RunOutcome, ListSink]:
    """One HTTPS target for SITE on `port`, through the runner."""
    async with FakeNameserver(zone) as ns:
        sink = ListSink()
        plan = RunPlan(
            targets=[Target("lo", "site", TargetKind.HTTPS, SITE, (port,))],
            controls=[],
            resolvers=[parse_resolver(ns.udp_spec)],
            context=pki.check_context(),
            differential_name=HARMLESS,
        )
        outcome = await execute(plan, "run-1", sink)
    return outcome, sink


def tls_records(sink: ListSink) -> list[tuple[Measurement, TlsHandshake]]:
    return [(m, record(TlsHandshake, m.observation)) for m in sink.all if m.layer is Layer.TLS]


def http_records(sink: ListSink) -> list[tuple[Measurement, HttpTransaction]]:
    return [(m, record(HttpTransaction, m.observation)) for m in sink.all if m.layer is Layer.HTTP]


async def test_an_https_target_costs_one_handshake_its_request_riding_the_tls_check() -> None:
    pki = Pki()
    # The server would pick h2 first (like a CDN front end): the request still speaks HTTP/1.1.
    async with counting_https(pki.server(SITE)) as server:
        zone = {SITE: Behaviour.answer(a=[server.host])}
        outcome, sink = await run_one(pki, zone, server.port)
        await server.all_closed()

    assert server.handshakes == [SITE]  # was two: the TLS check's, then aiohttp's own
    ((tls_m, tls),) = tls_records(sink)
    assert tls_m.failure is None and tls.verified
    assert (tls.alpn_offered, tls.alpn) == (HTTP1_ALPN, "http/1.1")
    assert tls.certificates and tls.connect_ms is not None and tls.handshake_ms is not None
    ((http_m, transaction),) = http_records(sink)
    assert http_m.failure is None
    assert (transaction.status, transaction.title) == (200, "Riding")
    assert transaction.reused_tls_connection is True
    # No connection set-up of its own: its handshake's times are on the TLS record.
    assert transaction.timings.connect_ms is None and transaction.timings.ttfb_ms is not None
    # The request went over the connection whose ALPN the TLS record holds.
    assert server.requests == [(tls.alpn, "GET / HTTP/1.1")]
    (result,) = outcome.results
    assert (result.reached, result.failure) == (Layer.HTTP, None)


async def test_a_rejected_certificate_keeps_its_unverified_retry_and_gets_no_request() -> None:
    pki = Pki()
    identity = pki.unknown_ca_server(SITE)
    async with counting_https(identity) as server:
        zone = {SITE: Behaviour.answer(a=[server.host])}
        outcome, sink = await run_one(pki, zone, server.port)
        await server.all_closed()

    # The verifying handshake, then the non-verifying one that records the chain: no request.
    assert server.handshakes == [SITE, SITE] and server.requests == []
    ((tls_m, tls),) = tls_records(sink)
    assert (tls_m.failure, tls_m.observation.failed_operation) == (
        "ssl_unknown_authority",
        Operation.TLS_HANDSHAKE,
    )
    assert not tls.verified and tls.verify_failure == "ssl_unknown_authority"
    assert tls.certificates[0].sha256 == identity.leaf_sha256
    assert tls.unverified_handshake_failure is None
    assert tls.alpn_offered == HTTP1_ALPN  # the retry offers what its first handshake offered
    assert http_records(sink) == []
    (result,) = outcome.results
    assert (result.reached, result.failure, result.failed_layer) == (
        Layer.TCP,
        "ssl_unknown_authority",
        Layer.TLS,
    )


async def test_a_stalled_handshake_times_out_and_its_sni_control_offers_the_same_alpn() -> None:
    pki = Pki()
    async with hostile.silent() as server:
        zone = {SITE: Behaviour.answer(a=[server.host])}
        outcome, sink = await run_one(pki, zone, server.port)

    records = tls_records(sink)
    target = [(m, d) for m, d in records if d.differential_kind is None]
    control = [(m, d) for m, d in records if d.differential_kind is DifferentialKind.SNI]
    ((target_m, target_d),) = target
    ((control_m, control_d),) = control
    assert (target_m.failure, target_m.observation.failed_operation) == (
        "generic_timeout_error",
        Operation.TLS_HANDSHAKE,
    )
    assert (control_d.sni, control_d.target_sni) == (HARMLESS, SITE)
    assert control_m.failure == "generic_timeout_error"
    # A and B differ in the SNI alone.
    assert control_d.alpn_offered == target_d.alpn_offered == HTTP1_ALPN
    assert http_records(sink) == []
    (result,) = outcome.results
    assert (result.failure, result.failed_layer) == ("generic_timeout_error", Layer.TLS)


async def test_when_the_first_address_fails_its_handshake_the_next_verified_one_is_fetched() -> (
    None
):
    pki = Pki()
    async with (
        counting_https(pki.unknown_ca_server(SITE), host="127.0.0.1") as rogue,
        counting_https(pki.server(SITE), host="127.0.0.2", port=rogue.port) as good,
    ):
        zone = {SITE: Behaviour.answer(a=[rogue.host, good.host])}
        _outcome, sink = await run_one(pki, zone, rogue.port)
        await rogue.all_closed()
        await good.all_closed()

    by_address = {d.address: (m, d) for m, d in tls_records(sink)}
    assert by_address[rogue.host][0].failure == "ssl_unknown_authority"
    # The other address's handshake offered a browser's list and got h2: it cannot carry the
    # HTTP/1.1 request, which makes its own connection, as before.
    good_tls = by_address[good.host][1]
    assert (good_tls.alpn_offered, good_tls.alpn) == (BROWSER_ALPN, "h2")
    ((http_m, transaction),) = http_records(sink)
    assert http_m.failure is None and transaction.address == good.host
    assert transaction.reused_tls_connection is None
    assert transaction.timings.connect_ms is not None
    assert good.handshakes == [SITE, SITE]
    assert good.requests == [("http/1.1", "GET / HTTP/1.1")]


async def test_the_http_check_takes_a_held_connection_with_this_aiohttp() -> None:
    # Fails loudly if aiohttp's TCPConnector._wrap_create_connection changes so that the
    # override in probe/checks/http.py is no longer called (every request would dial again).
    pki = Pki()
    ctx = pki.check_context()
    held = HeldConnection()
    async with counting_https(pki.server(SITE)) as server:
        shaken = await handshake(server.host, server.port, SITE, ctx, alpn=HTTP1_ALPN, hold=held)
        assert shaken.ok and held.held
        observation = await http.fetch(
            f"https://{SITE}:{server.port}/", ctx, address=server.host, held=held
        )
        await held.release()
        await server.all_closed()

    assert held.taken, "aiohttp no longer calls TCPConnector._wrap_create_connection"
    assert observation.ok and record(HttpTransaction, observation).reused_tls_connection is True
    assert server.handshakes == [SITE]


async def test_a_held_connection_is_never_used_for_another_name_and_is_closed_when_not_taken() -> (
    None
):
    pki = Pki()
    ctx = pki.check_context()
    held = HeldConnection()
    async with counting_https(pki.server(SITE, OTHER)) as server:
        shaken = await handshake(server.host, server.port, SITE, ctx, alpn=HTTP1_ALPN, hold=held)
        assert shaken.ok
        # Same address and port, another SNI: the request dials its own connection.
        observation = await http.fetch(
            f"https://{OTHER}:{server.port}/", ctx, address=server.host, held=held
        )
        await held.release()
        await server.all_closed()

    assert not held.taken
    transaction = record(HttpTransaction, observation)
    assert observation.ok and transaction.reused_tls_connection is False
    assert transaction.timings.connect_ms is not None
    assert server.handshakes == [SITE, OTHER]
    assert held.take(server.host, server.port, SITE, ctx.ssl_context) is None  # released


async def test_a_verified_connection_with_a_browsers_alpn_is_not_handed_to_the_http_check() -> None:
    # The server picked h2 on a browser-like handshake: its SSL context is not the HTTP
    # check's, so the connection is not taken (aiohttp cannot speak h2 on it).
    pki = Pki()
    ctx = pki.check_context()
    held = HeldConnection()
    async with counting_https(pki.server(SITE)) as server:
        shaken = await handshake(server.host, server.port, SITE, ctx, hold=held)
        observation = await http.fetch(
            f"https://{SITE}:{server.port}/", ctx, address=server.host, held=held
        )
        await held.release()
        await server.all_closed()

    assert record(TlsHandshake, shaken).alpn == "h2"
    assert not held.taken and observation.ok
    assert server.requests == [("http/1.1", "GET / HTTP/1.1")]


async def test_a_redirect_to_another_host_dials_its_own_connection_after_the_first_rode() -> None:
    pki = Pki()
    ctx = pki.check_context()
    held = HeldConnection()
    async with counting_https(pki.server(OTHER), host="127.0.0.2") as second:
        target = f"https://{OTHER}:{second.port}/"
        async with counting_https(pki.server(SITE), redirect_to=target) as first:

            async def resolve(host: str) -> list[str]:
                return [second.host] if host == OTHER else []

            policy = http.RedirectPolicy(resolve=resolve, refuse=lambda _address: None)
            await handshake(first.host, first.port, SITE, ctx, alpn=HTTP1_ALPN, hold=held)
            observation = await http.fetch(
                f"https://{SITE}:{first.port}/",
                ctx,
                address=first.host,
                held=held,
                redirects=policy,
            )
            await held.release()
            await first.all_closed()
            await second.all_closed()

    transaction = record(HttpTransaction, observation)
    assert observation.ok and transaction.status == 200 and len(transaction.redirects) == 1
    assert transaction.reused_tls_connection is True  # the first request rode
    assert transaction.timings.connect_ms is not None  # the final hop dialled its own
    assert first.handshakes == [SITE] and second.handshakes == [OTHER]


async def test_a_held_connection_kept_past_its_idle_bound_is_not_ridden_the_request_dials() -> None:
    # The flow holds the verified connection until every handshake is over; one held longer
    # than max_idle may be closing at the server, so the request makes its own.
    pki = Pki()
    ctx = pki.check_context()
    held = HeldConnection(max_idle=0.0)
    async with counting_https(pki.server(SITE)) as server:
        shaken = await handshake(server.host, server.port, SITE, ctx, alpn=HTTP1_ALPN, hold=held)
        assert shaken.ok and held.held
        await asyncio.sleep(0.01)
        observation = await http.fetch(
            f"https://{SITE}:{server.port}/", ctx, address=server.host, held=held
        )
        await held.release()
        await server.all_closed()

    transaction = record(HttpTransaction, observation)
    assert not held.taken and observation.ok
    assert transaction.reused_tls_connection is False and transaction.timings.connect_ms is not None
    assert server.handshakes == [SITE, SITE]
