"""Tests for probe.checks.dns against the fake nameserver (tests/servers/dns_server.py) on loopback:
resolver parsing, every DNS outcome over UDP, TCP and DoH, injection (two answers on one UDP
socket), truncation, and the system resolver with IP literals and /etc/hosts names only (the
machine's /etc/resolv.conf must never be queried)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import dns.message
import dns.rdatatype
import dns.rrset
import pytest

from probe.checks import CheckContext, Timeouts
from probe.checks.dns import DOH_CONNECTIONS_PER_SERVER, open_doh_session, resolve
from probe.codec import encode_details
from probe.model import DnsAnswer, DnsPerType, Layer, Operation
from probe.resolvers import ResolverSpec, parse_resolver
from tests.servers.dns_server import Behaviour, FakeNameserver

# Each check on asyncio's loop and on uvloop (tests/loops.py, probe/eventloop.py).
pytestmark = pytest.mark.both_loops

DNS_TIMEOUT = 0.5
WINDOW = 0.2
FORGED = "10.10.34.35"

ZONE: dict[str, Behaviour | dict[str, Behaviour]] = {
    "ok.example": Behaviour.answer(a=["192.0.2.1", "192.0.2.2"], aaaa=["2001:db8::1"]),
    "cdn.example": Behaviour.answer(a=["192.0.2.3"], aaaa=["2001:db8::3"], cname="edge.cdn.test"),
    "nx.example": Behaviour.nxdomain(),
    "servfail.example": Behaviour.servfail(),
    "refused.example": Behaviour.refused(),
    "empty.example": Behaviour.no_answer(),
    "silent.example": Behaviour.drop(),
    "junk.example": Behaviour.garbage(),
    "blocked.example": Behaviour.inject(forged=[FORGED], a=["192.0.2.7"], second_delay=0.05),
    "late-forgery.example": Behaviour.inject(forged=[FORGED], a=["192.0.2.8"], second_delay=0.4),
    "twice.example": Behaviour.duplicate(a=["192.0.2.9"], second_delay=0.05),
    "big.example": Behaviour.truncate(a=["192.0.2.10"], aaaa=["2001:db8::10"]),
    "v4only.example": {"A": Behaviour.answer(a=["192.0.2.11"]), "AAAA": Behaviour.servfail()},
    "v6only.example": {"A": Behaviour.refused(), "AAAA": Behaviour.answer(aaaa=["2001:db8::12"])},
}

TRANSPORTS = ["udp", "tcp", "doh"]


@pytest.fixture(scope="module")
def nameserver() -> Iterator[FakeNameserver]:
    with FakeNameserver(ZONE, doh=True) as server:
        yield server


@pytest.fixture
def ctx(nameserver: FakeNameserver) -> CheckContext:
    return CheckContext(
        timeouts=Timeouts(dns=DNS_TIMEOUT),
        ssl_context=nameserver.client_ssl_context(),
        dns_second_answer_window=WINDOW,
    )


def spec_for(nameserver: FakeNameserver, transport: str) -> ResolverSpec:
    text = {"udp": nameserver.udp_spec, "tcp": nameserver.tcp_spec, "doh": nameserver.doh_url}
    return parse_resolver(text[transport])


@pytest.fixture(params=TRANSPORTS)
def resolver(request: pytest.FixtureRequest, nameserver: FakeNameserver) -> ResolverSpec:
    return spec_for(nameserver, request.param)


def free_port() -> int:
    """A loopback port nobody listens on (bound, read, released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- parsing resolvers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "transport", "address", "port", "spec"),
    [
        ("system", "system", None, None, "system"),
        (" System ", "system", None, None, "system"),
        ("udp://192.0.2.53", "udp", "192.0.2.53", 53, "udp://192.0.2.53:53"),
        ("udp://127.0.0.1:5353", "udp", "127.0.0.1", 5353, "udp://127.0.0.1:5353"),
        ("TCP://192.0.2.53:853", "tcp", "192.0.2.53", 853, "tcp://192.0.2.53:853"),
        ("udp://[2001:DB8::53]", "udp", "2001:db8::53", 53, "udp://[2001:db8::53]:53"),
        ("tcp://[::1]:5353", "tcp", "::1", 5353, "tcp://[::1]:5353"),
        (
            "https://dns.example/dns-query",
            "doh",
            "dns.example",
            443,
            "https://dns.example/dns-query",
        ),
        (
            "https://127.0.0.1:8443/dns-query",
            "doh",
            "127.0.0.1",
            8443,
            "https://127.0.0.1:8443/dns-query",
        ),
        ("https://[::1]:443/q", "doh", "::1", 443, "https://[::1]/q"),
    ],
)
def test_parse_resolver_accepts_system_udp_tcp_and_doh(
    text: str, transport: str, address: str | None, port: int | None, spec: str
) -> None:
    parsed = parse_resolver(text)
    assert (parsed.transport, parsed.address, parsed.port, parsed.spec) == (
        transport,
        address,
        port,
        spec,
    )
    assert str(parsed) == spec
    if transport == "doh":
        assert parsed.url == spec


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty resolver"),
        ("8.8.8.8", "write udp://8.8.8.8"),
        ("udp://dns.google", "not an IP address"),
        ("udp://2001:db8::53", "put an IPv6 address in brackets"),
        ("udp://[2001:db8::53", "missing ']'"),
        ("udp://[192.0.2.1]:53", "not an IPv6 address"),
        ("udp://192.0.2.1:0", "port must be a number from 1 to 65535"),
        ("tcp://192.0.2.1:99999", "port must be a number from 1 to 65535"),
        ("tcp://192.0.2.1:", "port must be a number from 1 to 65535"),
        ("udp://192.0.2.1/path", "takes no path"),
        ("http://dns.example/dns-query", "needs an https:// URL"),
        ("https://dns.example", "needs a path"),
        ("https://dns.example/dns-query?dns=AAAB", "takes no query"),
        ("https://user:pw@dns.example/dns-query", "credentials"),
        ("https://bad host/dns-query", "not a valid host name"),
        ("tls://192.0.2.1", "unsupported resolver scheme 'tls'"),
        ("google", "unsupported resolver 'google'"),
    ],
)
def test_parse_resolver_rejects_bad_text_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_resolver(text)
    assert message in str(caught.value)


# -- what every transport reports ----------------------------------------------------------------


async def test_answer_lists_a_then_aaaa_addresses(
    resolver: ResolverSpec, ctx: CheckContext
) -> None:
    observation = await resolve("ok.example", resolver, ctx)
    details = observation.details
    assert observation.ok
    assert observation.layer is Layer.DNS
    assert observation.endpoint == resolver.spec
    assert observation.failed_operation is None
    assert details.addresses == ("192.0.2.1", "192.0.2.2", "2001:db8::1")
    assert details.rcode == "NOERROR"
    assert details.query == "ok.example"
    assert details.resolver == resolver.spec
    assert details.transport == resolver.transport
    assert details.per_type == DnsPerType(None, None)
    assert details.second_answer is False
    assert details.retried_over_tcp is False
    assert [r.addresses for r in details.responses] == [("192.0.2.1", "192.0.2.2")]
    assert {(a.type, a.value, a.ttl) for a in details.answers} == {
        ("A", "192.0.2.1", 300),
        ("A", "192.0.2.2", 300),
        ("AAAA", "2001:db8::1", 300),
    }
    json.dumps(encode_details(details))  # stored as JSON: must serialise as it is


async def test_cname_chain_is_recorded_in_answers(
    resolver: ResolverSpec, ctx: CheckContext
) -> None:
    observation = await resolve("cdn.example", resolver, ctx)
    answers = observation.details.answers
    assert observation.details.addresses == ("192.0.2.3", "2001:db8::3")
    assert answers[0] == DnsAnswer(type="CNAME", value="edge.cdn.test", ttl=300, name="cdn.example")
    assert [a.type for a in answers] == ["CNAME", "A", "AAAA"]  # the CNAME once, not per query


async def test_nxdomain_is_dns_nxdomain_error(resolver: ResolverSpec, ctx: CheckContext) -> None:
    observation = await resolve("nx.example", resolver, ctx)
    assert observation.failure == "dns_nxdomain_error"
    assert observation.failed_operation is Operation.DNS_ROUND_TRIP
    assert observation.details.rcode == "NXDOMAIN"
    assert observation.details.addresses == ()


async def test_servfail_is_dns_servfail_error(resolver: ResolverSpec, ctx: CheckContext) -> None:
    observation = await resolve("servfail.example", resolver, ctx)
    assert observation.failure == "dns_servfail_error"
    assert observation.details.rcode == "SERVFAIL"


async def test_refused_is_dns_refused_error(resolver: ResolverSpec, ctx: CheckContext) -> None:
    observation = await resolve("refused.example", resolver, ctx)
    assert observation.failure == "dns_refused_error"
    assert observation.details.rcode == "REFUSED"


async def test_noerror_without_addresses_is_dns_no_answer(
    resolver: ResolverSpec, ctx: CheckContext
) -> None:
    observation = await resolve("empty.example", resolver, ctx)
    assert observation.failure == "dns_no_answer"
    assert observation.details.rcode == "NOERROR"
    assert observation.details.per_type == DnsPerType("dns_no_answer", "dns_no_answer")


async def test_silent_resolver_times_out_within_the_dns_timeout(
    resolver: ResolverSpec, ctx: CheckContext
) -> None:
    started = time.monotonic()
    observation = await resolve("silent.example", resolver, ctx)
    elapsed = time.monotonic() - started
    assert observation.failure == "generic_timeout_error"
    assert observation.failed_operation is Operation.DNS_ROUND_TRIP
    assert observation.details.rcode is None
    assert observation.details.responses == ()
    # A and AAAA run concurrently: the whole check costs one timeout, not two.
    assert DNS_TIMEOUT * 0.9 <= elapsed < DNS_TIMEOUT + 0.4


async def test_garbage_reply_is_dns_server_misbehaving(
    resolver: ResolverSpec, ctx: CheckContext
) -> None:
    started = time.monotonic()
    observation = await resolve("junk.example", resolver, ctx)
    assert observation.failure == "dns_server_misbehaving"
    assert observation.details.addresses == ()
    # Over UDP garbage opens the same short window a first answer does; no full timeout.
    assert time.monotonic() - started < DNS_TIMEOUT
    if resolver.transport != "tcp":
        reasons = [n.reason for n in observation.details.unexpected_responses]
        assert reasons and all((r or "").startswith("unparseable") for r in reasons)


async def test_a_answer_succeeds_when_aaaa_fails(resolver: ResolverSpec, ctx: CheckContext) -> None:
    observation = await resolve("v4only.example", resolver, ctx)
    assert observation.ok
    assert observation.details.addresses == ("192.0.2.11",)
    assert observation.details.per_type == DnsPerType(None, "dns_servfail_error")
    assert observation.details.rcodes == DnsPerType("NOERROR", "SERVFAIL")


async def test_aaaa_answer_succeeds_when_a_is_refused(
    resolver: ResolverSpec, ctx: CheckContext
) -> None:
    observation = await resolve("v6only.example", resolver, ctx)
    assert observation.ok
    assert observation.details.addresses == ("2001:db8::12",)
    assert observation.details.per_type == DnsPerType("dns_refused_error", None)


async def test_unreachable_resolver_port_is_connection_refused(ctx: CheckContext) -> None:
    port = free_port()
    for text in (f"udp://127.0.0.1:{port}", f"tcp://127.0.0.1:{port}"):
        observation = await resolve("ok.example", parse_resolver(text), ctx)
        assert observation.failure == "connection_refused", text
        assert observation.duration_ms < DNS_TIMEOUT * 1000


# -- UDP: injection, duplicates, truncation ------------------------------------------------------


async def test_udp_injected_answer_is_recorded_before_the_real_one(
    nameserver: FakeNameserver, ctx: CheckContext
) -> None:
    observation = await resolve("blocked.example", spec_for(nameserver, "udp"), ctx)
    details = observation.details
    first, second = details.responses
    assert details.second_answer is True
    # The stub resolver's view: the first answer wins, and that is the forged one.
    assert details.addresses == (FORGED,)
    assert first.addresses == (FORGED,)
    assert second.addresses == ("192.0.2.7",)
    assert first.rcode == second.rcode == "NOERROR"
    assert second.received_ms - first.received_ms >= 40.0
    json.dumps(encode_details(details))


async def test_udp_duplicate_identical_answer_is_recorded_as_a_second_answer(
    nameserver: FakeNameserver, ctx: CheckContext
) -> None:
    observation = await resolve("twice.example", spec_for(nameserver, "udp"), ctx)
    responses = observation.details.responses
    assert observation.details.second_answer is True
    assert len(responses) == 2
    assert responses[0].addresses == responses[1].addresses == ("192.0.2.9",)
    assert observation.details.addresses == ("192.0.2.9",)


async def test_udp_answer_after_the_listening_window_is_not_recorded(
    nameserver: FakeNameserver, ctx: CheckContext
) -> None:
    # The real answer comes 0.4 s after the forged one, past the 0.2 s window.
    observation = await resolve("late-forgery.example", spec_for(nameserver, "udp"), ctx)
    assert [r.addresses for r in observation.details.responses] == [(FORGED,)]
    assert observation.details.second_answer is False
    assert observation.duration_ms < (WINDOW + 0.15) * 1000


async def test_udp_single_answer_waits_out_the_window_and_reports_no_second_answer(
    nameserver: FakeNameserver, ctx: CheckContext
) -> None:
    observation = await resolve("ok.example", spec_for(nameserver, "udp"), ctx)
    assert len(observation.details.responses) == 1
    assert observation.details.second_answer is False
    assert observation.duration_ms >= WINDOW * 1000 * 0.9


@pytest.mark.parametrize("transport", ["tcp", "doh"])
async def test_tcp_and_doh_see_only_the_real_answer_an_injector_forges_over_udp(
    nameserver: FakeNameserver, ctx: CheckContext, transport: str
) -> None:
    observation = await resolve("blocked.example", spec_for(nameserver, transport), ctx)
    assert observation.details.addresses == ("192.0.2.7",)
    assert observation.details.second_answer is False
    assert len(observation.details.responses) == 1


async def test_truncated_udp_answer_is_retried_over_tcp(
    nameserver: FakeNameserver, ctx: CheckContext
) -> None:
    observation = await resolve("big.example", spec_for(nameserver, "udp"), ctx)
    details = observation.details
    assert observation.ok
    assert details.retried_over_tcp is True
    assert details.addresses == ("192.0.2.10", "2001:db8::10")
    assert details.responses[0].truncated is True
    assert details.responses[0].addresses == ()
    transports = {(q.transport, q.rdtype) for q in nameserver.queries_for("big.example")}
    assert {("udp", "A"), ("tcp", "A"), ("udp", "AAAA"), ("tcp", "AAAA")} <= transports


async def test_ipv6_loopback_resolver_answers_over_udp() -> None:
    zone = {"ok.example": Behaviour.answer(a=["192.0.2.1"])}
    async with FakeNameserver(zone, host="::1") as server:
        resolver = parse_resolver(server.udp_spec)
        ctx = CheckContext(timeouts=Timeouts(dns=DNS_TIMEOUT), dns_second_answer_window=0.05)
        observation = await resolve("ok.example", resolver, ctx)
    assert resolver.spec.startswith("udp://[::1]:")
    assert observation.ok
    assert observation.details.addresses == ("192.0.2.1",)


# -- DoH specifics -------------------------------------------------------------------------------


async def test_doh_http_error_status_is_dns_server_misbehaving(
    nameserver: FakeNameserver, ctx: CheckContext
) -> None:
    resolver = parse_resolver(f"https://127.0.0.1:{nameserver.doh_port}/not-dns")
    observation = await resolve("ok.example", resolver, ctx)
    assert observation.failure == "dns_server_misbehaving"
    assert observation.failed_operation is Operation.DNS_ROUND_TRIP
    statuses = {n.http_status for n in observation.details.unexpected_responses}
    assert statuses == {404}


async def test_doh_server_with_an_untrusted_certificate_is_ssl_unknown_authority(
    nameserver: FakeNameserver,
) -> None:
    # A context trusting nothing at all: the fake server's trustme CA is unknown to it.
    untrusting = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx = CheckContext(timeouts=Timeouts(dns=DNS_TIMEOUT), ssl_context=untrusting)
    observation = await resolve("ok.example", spec_for(nameserver, "doh"), ctx)
    assert observation.failure == "ssl_unknown_authority"
    assert observation.details.addresses == ()


# -- IP literals and the system resolver ---------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"), [("192.0.2.5", "192.0.2.5"), ("[2001:DB8::5]", "2001:db8::5")]
)
@pytest.mark.parametrize("transport", ["system", "udp"])
async def test_ip_literal_is_returned_without_a_query(
    nameserver: FakeNameserver, ctx: CheckContext, host: str, expected: str, transport: str
) -> None:
    resolver = parse_resolver("system") if transport == "system" else spec_for(nameserver, "udp")
    before = len(nameserver.queries)
    observation = await resolve(host, resolver, ctx)
    assert observation.ok
    assert observation.details.addresses == (expected,)
    assert observation.details.rcode is None
    assert observation.details.transport == transport
    assert len(nameserver.queries) == before


async def test_system_resolver_answers_localhost_from_etc_hosts(ctx: CheckContext) -> None:
    observation = await resolve("localhost", parse_resolver("system"), ctx)
    assert observation.ok
    assert observation.endpoint == "system"
    assert "127.0.0.1" in observation.details.addresses
    assert observation.details.per_type.a is None
    assert observation.details.transport == "system"
    json.dumps(encode_details(observation.details))


async def test_system_resolver_unknown_name_is_dns_nxdomain_error(
    ctx: CheckContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # getaddrinfo is replaced: an unknown name would otherwise go to the machine's resolver.
    def no_such_name(*_args: Any, **_kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    observation = await resolve("nowhere.example", parse_resolver("system"), ctx)
    assert observation.failure == "dns_nxdomain_error"
    assert observation.failed_operation is Operation.RESOLVE
    assert observation.details.per_type == DnsPerType("dns_nxdomain_error", "dns_nxdomain_error")


async def test_system_resolver_that_hangs_times_out_within_the_dns_timeout(
    ctx: CheckContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    released = threading.Event()

    def hang(*_args: Any, **_kwargs: Any) -> Any:
        released.wait(10)  # the C library waiting for an answer that never comes
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", hang)
    try:
        observation = await resolve("slow.example", parse_resolver("system"), ctx)
    finally:
        released.set()
    assert observation.failure == "generic_timeout_error"
    assert observation.failed_operation is Operation.RESOLVE
    assert observation.duration_ms < (DNS_TIMEOUT + 0.3) * 1000


async def test_system_lookups_run_in_the_loops_default_executor_on_either_loop(
    ctx: CheckContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The runner widens the default executor so that lookups the network drops cannot starve
    # the others; uvloop's own getaddrinfo ran in libuv's 4 threads instead (false dns.timeout
    # verdicts in the lab's dns_drop scenario).
    used: list[str] = []

    class Recording(concurrent.futures.ThreadPoolExecutor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            used.append(getattr(fn, "func", fn).__name__)
            return super().submit(fn, *args, **kwargs)

    def answer(*_args: Any, **_kwargs: Any) -> Any:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.60", 0))]

    monkeypatch.setattr(socket, "getaddrinfo", answer)
    executor = Recording(max_workers=2)
    asyncio.get_running_loop().set_default_executor(executor)
    observation = await resolve("executor.example", parse_resolver("system"), ctx)
    assert observation.details.addresses == ("192.0.2.60",)
    assert used == ["answer"]


async def test_a_name_with_no_dns_wire_form_is_a_recorded_failure_without_a_query(
    nameserver: FakeNameserver, ctx: CheckContext
) -> None:
    observation = await resolve("a" * 64 + ".example", spec_for(nameserver, "udp"), ctx)
    assert observation.failure == "unknown_failure"
    assert (observation.failure_detail or "").startswith("the name cannot be encoded for DNS")
    assert observation.failed_operation is Operation.RESOLVE
    assert observation.details.addresses == ()
    assert nameserver.queries_for("a" * 64 + ".example") == []


class _DropsFirstQuery(asyncio.DatagramProtocol):
    """A resolver that loses the first query of each type (a burst it could not take)."""

    def __init__(self) -> None:
        self.seen: dict[int, int] = {}
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        rdtype = query.question[0].rdtype
        self.seen[rdtype] = self.seen.get(rdtype, 0) + 1
        if self.seen[rdtype] == 1:
            return
        response = dns.message.make_response(query)
        if rdtype == dns.rdatatype.A:
            response.answer.append(
                dns.rrset.from_text(query.question[0].name, 60, "IN", "A", "192.0.2.44")
            )
        assert self.transport is not None
        self.transport.sendto(response.to_wire(), addr)


async def test_a_lost_udp_query_is_resent_and_the_reply_is_no_second_answer() -> None:
    loop = asyncio.get_running_loop()
    transport, server = await loop.create_datagram_endpoint(
        _DropsFirstQuery, local_addr=("127.0.0.1", 0)
    )
    port = transport.get_extra_info("sockname")[1]
    try:
        ctx = CheckContext(timeouts=Timeouts(dns=0.9), dns_second_answer_window=0.1)
        observation = await resolve("lossy.example", parse_resolver(f"udp://127.0.0.1:{port}"), ctx)
    finally:
        transport.close()
    assert observation.failure is None
    assert observation.details.addresses == ("192.0.2.44",)
    assert [r.attempt for r in observation.details.responses] == [2]
    assert observation.details.second_answer is False
    assert server.seen[dns.rdatatype.A] == 2


async def test_a_reply_that_lands_as_the_dns_budget_expires_is_a_timeout_not_a_crash(
    nameserver: FakeNameserver,
) -> None:
    # The event loop is held (a busy 2-core machine, a slow callback) from just after the
    # queries went out until past the DNS budget; meanwhile the server's replies arrive. When
    # the loop resumes, the reply, the resend timer and the budget's expiry are due at once: the
    # budget's cancellation must end the query, never be lost inside the wait for the reply
    # (asyncio.wait_for on Python 3.11 returned the reply and dropped it, and the next
    # reschedule of the expired budget raised RuntimeError out of resolve()).
    loop = asyncio.get_running_loop()
    budget = 0.6
    ctx = CheckContext(timeouts=Timeouts(dns=budget), dns_second_answer_window=0.1)
    name = "held-loop.example"
    # The replies trail the queries by a little, so that they land while the loop is held.
    behaviour = Behaviour.answer(a=["192.0.2.61"], aaaa=["2001:db8::61"], delay=0.15)
    nameserver.set(name, behaviour)
    held: list[float] = []

    def hold_the_loop() -> None:
        if len(nameserver.queries_for(name)) < 2:
            loop.call_later(0.001, hold_the_loop)  # the queries are not out yet
            return
        time.sleep(budget + 0.2)  # the replies land in the socket; the budget runs out
        held.append(budget + 0.2)

    loop.call_soon(hold_the_loop)
    observation = await resolve(name, spec_for(nameserver, "udp"), ctx)
    assert held, "the loop was never held"
    # Which of the due events a loop handles first is its own business: asyncio's runs the
    # budget's expiry first (a timeout), uvloop reads the socket first (the reply that was
    # there before the budget ran out). Either is a consistent measurement; a crash, or a
    # timeout that still carries the answer, is not.
    if observation.failure is None:
        assert observation.details.addresses == ("192.0.2.61", "2001:db8::61")
    else:
        assert observation.failure == "generic_timeout_error"
        assert observation.failed_operation is Operation.DNS_ROUND_TRIP
        assert observation.details.addresses == ()


async def test_doh_lookups_of_a_run_share_a_few_kept_alive_connections(
    nameserver: FakeNameserver, ctx: CheckContext
) -> None:
    # A run's first names are asked all at once: with a session per lookup each name opened two
    # TLS connections (the lab's DoH server then timed out under ~120 handshakes at once).
    # What is counted is connections, not time: a generous timeout, so that 30 lookups through
    # a thread-served fake on a loaded machine cannot fail for being slow (0.5 s did, once).
    ctx = dataclasses.replace(ctx, timeouts=Timeouts(dns=10.0))
    nameserver.doh_connections.clear()
    names = ["ok.example"] * 30
    async with open_doh_session(ctx) as session:
        observations = await asyncio.gather(
            *(resolve(n, spec_for(nameserver, "doh"), ctx, doh_session=session) for n in names)
        )
    assert all(o.ok for o in observations)
    assert 1 <= len(nameserver.doh_connections) <= DOH_CONNECTIONS_PER_SERVER


async def test_a_test_that_asks_a_resolver_off_this_machine_is_refused_before_any_packet(
    loopback_resolvers_only: list[str], ctx: CheckContext
) -> None:
    # tests/conftest.py: the default config's public resolvers must never be asked from a test.
    for text in ("udp://8.8.8.8", "https://1.1.1.1/dns-query"):
        with pytest.raises(AssertionError, match="queried the resolver"):
            await resolve("example.org", parse_resolver(text), ctx)
    assert loopback_resolvers_only == ["udp://8.8.8.8:53", "https://1.1.1.1/dns-query"]
    loopback_resolvers_only.clear()  # refused as it should be: this test itself passes
