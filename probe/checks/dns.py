"""The DNS check: resolve a host's A and AAAA addresses through one resolver (the system's, or a
chosen one over UDP, TCP or DNS over HTTPS) and return what was seen as an Observation (layer dns).

Over UDP the socket keeps listening after the first response for ctx.dns_second_answer_window
seconds and records every further response to the same query: an on-path injector's forged answer
races the real one and usually wins, so two answers on one socket are the signature of injection
(ICLab Centinel's technique,
https://github.com/iclab/centinel/blob/master/centinel/primitives/dnslib.py). The addresses
reported are those of
the first response, which is what an ordinary stub resolver would have used.

Outcome per query type, from the response (or its absence):

    NOERROR with addresses of the type ..... None (success)
    NOERROR without them ................... dns_no_answer
    NXDOMAIN ............................... dns_nxdomain_error
    SERVFAIL ............................... dns_servfail_error
    REFUSED ................................ dns_refused_error
    another rcode, or a reply that does not parse or does not match the query
                                             dns_server_misbehaving
    no reply within ctx.timeouts.dns ....... generic_timeout_error
    a socket, TLS or HTTP error ............ probe.failures.classify(error)

The observation succeeds when either type returned an address.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

from probe.checks import CheckContext, Stopwatch
from probe.failures import classify, split, unknown
from probe.model import (
    DnsAnswer,
    DnsPerType,
    DnsQuery,
    DnsResponse,
    DnsUnexpected,
    Failure,
    Layer,
    Observation,
    Operation,
)
from probe.resolvers import ResolverSpec, ip_text

if TYPE_CHECKING:
    # DNS over HTTPS only: aiohttp is loaded when a DoH session is opened (open_doh_session).
    import aiohttp

__all__ = ["open_doh_session", "resolve"]

# EDNS(0) with the DNS Flag Day 2020 buffer size: large enough for ordinary A/AAAA answers, small
# enough to avoid IP fragmentation; a longer answer comes back truncated and is retried over TCP.
EDNS_PAYLOAD = 1232
# RFC 8484 section 6: a DoH response is one DNS message, at most 65535 bytes.
MAX_DOH_BODY = 65535
DNS_MESSAGE = "application/dns-message"

_RCODE_FAILURES: dict[int, Failure] = {
    dns.rcode.NXDOMAIN: Failure.DNS_NXDOMAIN_ERROR,
    dns.rcode.SERVFAIL: Failure.DNS_SERVFAIL_ERROR,
    dns.rcode.REFUSED: Failure.DNS_REFUSED_ERROR,
}

# What can go wrong on the wire (as opposed to a bug): these become failure strings (over DoH,
# aiohttp's ClientError too: _https).
_NETWORK_ERRORS = (OSError, EOFError, TimeoutError, dns.exception.DNSException)


# -- one query, one transport --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What one query type (A or AAAA) came to.

    `response` is the message whose records count (the first valid one; the TCP one after a
    truncated UDP answer); `responses` summarises every valid response seen, in arrival order;
    `unexpected` lists replies that did not parse or did not match the query.
    """

    rdtype: str
    response: dns.message.Message | None
    failure: str | None
    responses: tuple[DnsResponse, ...] = ()
    unexpected: tuple[DnsUnexpected, ...] = ()
    retried_over_tcp: bool = False
    capped: bool = False


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def _addresses(message: dns.message.Message, rdtype: int) -> list[str]:
    found: list[str] = []
    for rrset in message.answer:
        if rrset.rdtype == rdtype:
            found.extend(rdata.to_text() for rdata in rrset)
    return found


def _summary(
    message: dns.message.Message, rdtype: int, received_ms: float, attempt: int | None = None
) -> DnsResponse:
    return DnsResponse(
        received_ms=received_ms,
        rcode=dns.rcode.to_text(message.rcode()),
        addresses=tuple(_addresses(message, rdtype)),
        truncated=bool(message.flags & dns.flags.TC),
        attempt=attempt,
    )


def _failure_of(message: dns.message.Message, rdtype: int) -> str | None:
    rcode = message.rcode()
    if rcode == dns.rcode.NOERROR:
        return None if _addresses(message, rdtype) else Failure.DNS_NO_ANSWER
    return _RCODE_FAILURES.get(rcode, Failure.DNS_SERVER_MISBEHAVING)


def _outcome(
    query: dns.message.Message,
    response: dns.message.Message,
    responses: Iterable[DnsResponse],
    unexpected: Iterable[DnsUnexpected] = (),
    *,
    retried_over_tcp: bool = False,
) -> _Outcome:
    rdtype = query.question[0].rdtype
    return _Outcome(
        dns.rdatatype.to_text(rdtype),
        response,
        _failure_of(response, rdtype),
        tuple(responses),
        tuple(unexpected),
        retried_over_tcp,
    )


def _failed(query: dns.message.Message, failure: str, **kwargs: Any) -> _Outcome:
    return _Outcome(dns.rdatatype.to_text(query.question[0].rdtype), None, failure, **kwargs)


def _reply(query: dns.message.Message, wire: bytes) -> tuple[dns.message.Message | None, str]:
    """The reply parsed, or None and why it is not a reply to `query`."""
    try:
        message = dns.message.from_wire(wire)
    except dns.exception.DNSException as exc:
        return None, f"unparseable ({type(exc).__name__})"
    if not query.is_response(message):
        return None, "does not match the query (id, flags or question differ)"
    return message, ""


def _reply_to_any(
    queries: list[dns.message.Message], wire: bytes
) -> tuple[dns.message.Message | None, str]:
    """The reply parsed, matched against any attempt of a resent query."""
    reason = ""
    for query in queries:
        message, reason = _reply(query, wire)
        if message is not None:
            return message, ""
    return None, reason


class _Listener(asyncio.DatagramProtocol):
    """Queues every datagram (and ICMP error) the connected socket receives, with its arrival."""

    def __init__(self) -> None:
        self.arrivals: asyncio.Queue[tuple[float, bytes | OSError]] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.arrivals.put_nowait((self._loop.time(), data))

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, OSError):
            self.arrivals.put_nowait((self._loop.time(), exc))


# A UDP query unanswered for a third of the DNS timeout is sent again, as stub resolvers do: a
# resolver that drops part of a burst (dnsmasq answers 150 queries in flight) must not read as DNS
# blocking. Each attempt carries a fresh query id, so that the reply to a resend can never pass
# for a second (injected) answer to the first query.
UDP_ATTEMPTS = 3
# Replies recorded per UDP query (valid and not), then the query stops listening: injection shows
# in two or three, and a flood after the first answer (thousands of forged replies in the window)
# must not store hundreds of kilobytes for one query. The measurement says the cap was hit.
MAX_RECORDED_REPLIES = 16


async def _udp(query: dns.message.Message, address: str, port: int, ctx: CheckContext) -> _Outcome:
    """A UDP query (resent while unanswered); keeps listening for the second-answer window after
    the first reply, and records every reply to the query id that was answered first."""
    loop = asyncio.get_running_loop()
    rdtype = query.question[0].rdtype
    responses: list[DnsResponse] = []
    unexpected: list[DnsUnexpected] = []
    first: dns.message.Message | None = None
    failure: str | None = None
    transport: asyncio.DatagramTransport | None = None
    attempts = [query]
    capped = False
    interval = ctx.timeouts.dns / UDP_ATTEMPTS
    try:
        async with asyncio.timeout(ctx.timeouts.dns) as budget:
            # A connected socket: the kernel drops datagrams from any other address and port, so
            # a forged answer is seen only if it spoofs the resolver's, as on-path injectors do.
            transport, listener = await loop.create_datagram_endpoint(
                _Listener, remote_addr=(address, port)
            )
            sent = loop.time()
            transport.sendto(query.to_wire())
            while True:
                if budget.expired():
                    # The deadline fired while a reply was being read: asyncio.wait_for (3.11)
                    # then returns the reply and drops the cancellation, so the loop ends here
                    # (https://github.com/python/cpython/issues/86296); the reply is kept.
                    break
                if first is None and not unexpected and len(attempts) < UDP_ATTEMPTS:
                    resend_at = sent + interval * len(attempts)
                    # A nested timeout, not asyncio.wait_for: on Python 3.11 wait_for returns a
                    # reply that lands in the same loop pass as the budget's expiry and drops the
                    # budget's cancellation (CPython gh-86296), leaving `budget` expiring, so the
                    # query listened on unbounded and budget.reschedule raised RuntimeError.
                    try:
                        async with asyncio.timeout_at(resend_at):
                            arrived, item = await listener.arrivals.get()
                    except TimeoutError:
                        if budget.expired():
                            raise
                        again = _query(query.question[0].name, query.question[0].rdtype)
                        attempts.append(again)
                        transport.sendto(again.to_wire())
                        continue
                else:
                    arrived, item = await listener.arrivals.get()
                received_ms = _ms(arrived - sent)
                if len(responses) + len(unexpected) >= MAX_RECORDED_REPLIES:
                    capped = True
                    break
                if isinstance(item, OSError):
                    if first is None:
                        # ICMP port/host unreachable: the resolver cannot be reached at all.
                        failure = classify(item)
                        break
                    continue
                if first is not None:
                    message, reason = _reply(query, item)
                else:
                    message, reason = _reply_to_any(attempts, item)
                    if message is not None:
                        query = next(q for q in attempts if q.id == message.id)
                if message is None:
                    unexpected.append(DnsUnexpected(received_ms, len(item), reason))
                    if first is None:
                        # Garbage counts as a first reply too: give a valid one the same window
                        # to arrive, rather than waiting for the whole DNS timeout.
                        window_end = arrived + ctx.dns_second_answer_window
                        _listen_until(budget, min(window_end, budget.when() or window_end))
                    continue
                responses.append(_summary(message, rdtype, received_ms, attempts.index(query) + 1))
                if first is None:
                    first = message
                    _listen_until(budget, arrived + ctx.dns_second_answer_window)
    except TimeoutError:
        pass  # the end of the listening window, or no reply at all: told apart below
    except OSError as exc:
        failure = classify(exc)
    finally:
        if transport is not None:
            transport.close()
    if first is None:
        if failure is None:
            failure = (
                Failure.DNS_SERVER_MISBEHAVING if unexpected else Failure.GENERIC_TIMEOUT_ERROR
            )
        return _failed(
            query,
            failure,
            responses=tuple(responses),
            unexpected=tuple(unexpected),
            capped=capped,
        )
    if first.flags & dns.flags.TC:
        # The answer did not fit: ask again over TCP, as a stub resolver does (RFC 7766).
        retried = await _tcp(query, address, port, ctx)
        return _Outcome(
            retried.rdtype,
            retried.response,
            retried.failure,
            tuple(responses),
            tuple(unexpected),
            retried_over_tcp=True,
            capped=capped,
        )
    return dataclasses.replace(_outcome(query, first, responses, unexpected), capped=capped)


def _listen_until(budget: asyncio.Timeout, when: float) -> None:
    """Move the listening deadline to `when`, unless it has already fired (asyncio refuses to
    move an expiring timeout; the loop then stops at its next turn)."""
    if not budget.expired():
        budget.reschedule(when)


async def _tcp(query: dns.message.Message, address: str, port: int, ctx: CheckContext) -> _Outcome:
    loop = asyncio.get_running_loop()
    sent = loop.time()
    try:
        async with asyncio.timeout(ctx.timeouts.dns):
            response = await dns.asyncquery.tcp(query, address, timeout=ctx.timeouts.dns, port=port)
    except _NETWORK_ERRORS as exc:
        return _failed(query, classify(exc))
    summary = _summary(response, query.question[0].rdtype, _ms(loop.time() - sent))
    return _outcome(query, response, [summary])


async def _read_body(response: aiohttp.ClientResponse) -> bytes | None:
    """The body, or None when it is longer than any DNS message can be."""
    body = bytearray()
    async for chunk in response.content.iter_chunked(16384):
        body.extend(chunk)
        if len(body) > MAX_DOH_BODY:
            return None
    return bytes(body)


async def _https(
    query: dns.message.Message, url: str, session: aiohttp.ClientSession, ctx: CheckContext
) -> _Outcome:
    import aiohttp  # loaded already: the session is aiohttp's

    loop = asyncio.get_running_loop()
    sent = loop.time()
    headers = {"Content-Type": DNS_MESSAGE, "Accept": DNS_MESSAGE, "User-Agent": ctx.user_agent}
    problem: str | None = None
    wire: bytes | None = None
    status = 0
    try:
        async with asyncio.timeout(ctx.timeouts.dns):
            async with session.post(url, data=query.to_wire(), headers=headers) as reply:
                status = reply.status
                if status != 200:
                    problem = f"HTTP status {status}"
                elif reply.content_type != DNS_MESSAGE:
                    problem = f"content type {reply.content_type!r}"
                else:
                    wire = await _read_body(reply)
                    if wire is None:
                        problem = "body longer than a DNS message"
    except (*_NETWORK_ERRORS, aiohttp.ClientError) as exc:
        return _failed(query, classify(exc))
    received_ms = _ms(loop.time() - sent)
    if wire is not None:
        message, problem = _reply(query, wire)
        if message is not None:
            summary = _summary(message, query.question[0].rdtype, received_ms)
            return _outcome(query, message, [summary])
    note = DnsUnexpected(received_ms, len(wire or b""), problem, http_status=status or None)
    return _failed(query, Failure.DNS_SERVER_MISBEHAVING, unexpected=(note,))


# At most this many connections to one DoH server at once, each kept alive and reused: a run's
# first names are all asked at once, and a new session per lookup opened two TLS connections per
# name (some 120 handshakes at once against the lab's one-process DoH server, which then timed
# out under load). Queries beyond it wait for a connection, inside their own DNS timeout.
DOH_CONNECTIONS_PER_SERVER = 8


def open_doh_session(ctx: CheckContext) -> aiohttp.ClientSession:
    """The run's DNS-over-HTTPS session: keep-alive connections shared by every lookup, verified
    with the run's trust store, no proxy from the environment (it would route the control around
    the network under test). Call inside a running loop; close it when the run ends."""
    import aiohttp

    connector = aiohttp.TCPConnector(
        ssl=ctx.ssl_context, limit=0, limit_per_host=DOH_CONNECTIONS_PER_SERVER
    )
    return aiohttp.ClientSession(connector=connector, trust_env=False)


# -- the check -----------------------------------------------------------------------------------


def _query(qname: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> dns.message.Message:
    return dns.message.make_query(qname, rdtype, use_edns=0, payload=EDNS_PAYLOAD)


def _qname(host: str) -> dns.name.Name:
    try:
        qname = dns.name.from_text(host)
    except dns.exception.DNSException as exc:
        raise ValueError(f"not a valid DNS name: {host!r} ({exc})") from None
    if qname == dns.name.root:
        raise ValueError(f"not a valid DNS name: {host!r}")
    return qname


def _literal(host: str) -> str | None:
    return ip_text(host[1:-1] if host.startswith("[") and host.endswith("]") else host)


def _plain(failure: str | None) -> str | None:
    """A failure as a plain str (not the Failure enum), so details compare and serialise alike."""
    return None if failure is None else str(failure)


def _dedup(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _answers(outcomes: Iterable[_Outcome]) -> tuple[DnsAnswer, ...]:
    answers: dict[tuple[str, str, str], DnsAnswer] = {}
    for outcome in outcomes:
        if outcome.response is None:
            continue
        for rrset in outcome.response.answer:
            if rrset.rdtype not in (dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.CNAME):
                continue
            kind = dns.rdatatype.to_text(rrset.rdtype)
            name = rrset.name.to_text(omit_final_dot=True)
            for rdata in rrset:
                value = (
                    rdata.target.to_text(omit_final_dot=True)
                    if rrset.rdtype == dns.rdatatype.CNAME
                    else rdata.to_text()
                )
                key = (kind, name, value)
                answers.setdefault(key, DnsAnswer(kind, value, rrset.ttl, name))
    return tuple(answers.values())


def _combined_failure(a: str | None, aaaa: str | None) -> str:
    """The observation's failure when neither type gave an address: the A query's, unless it only
    timed out while the AAAA query got a reply, which says more about the resolver."""
    if a is not None and (a != Failure.GENERIC_TIMEOUT_ERROR or aaaa is None):
        return a
    return aaaa or a or Failure.DNS_NO_ANSWER


def _observation(
    host: str, resolver: ResolverSpec, watch: Stopwatch, a: _Outcome, aaaa: _Outcome
) -> Observation[DnsQuery]:
    addresses = _dedup(
        [
            *(_addresses(a.response, dns.rdatatype.A) if a.response else []),
            *(_addresses(aaaa.response, dns.rdatatype.AAAA) if aaaa.response else []),
        ]
    )
    answered = a.response or aaaa.response
    unexpected = tuple(
        dataclasses.replace(note, query=o.rdtype) for o in (a, aaaa) for note in o.unexpected
    )
    details = DnsQuery(
        query=host,
        resolver=resolver.spec,
        transport=resolver.transport,
        rcode=dns.rcode.to_text(answered.rcode()) if answered is not None else None,
        addresses=tuple(addresses),
        rcodes=DnsPerType(
            *(dns.rcode.to_text(o.response.rcode()) if o.response else None for o in (a, aaaa))
        ),
        answers=_answers((a, aaaa)),
        responses=a.responses,
        aaaa_responses=aaaa.responses,
        second_answer=resolver.transport == "udp"
        and (len(a.responses) > 1 or len(aaaa.responses) > 1),
        per_type=DnsPerType(_plain(a.failure), _plain(aaaa.failure)),
        retried_over_tcp=a.retried_over_tcp or aaaa.retried_over_tcp,
        unexpected_responses=unexpected,
        replies_capped=True if a.capped or aaaa.capped else None,
    )
    failure = None if addresses else str(_combined_failure(a.failure, aaaa.failure))
    return Observation(
        layer=Layer.DNS,
        endpoint=resolver.spec,
        started_at=watch.started_at,
        duration_ms=watch.elapsed_ms(),
        failure=failure,
        failed_operation=Operation.DNS_ROUND_TRIP if failure else None,
        details=details,
    )


async def _resolve_system(
    host: str, resolver: ResolverSpec, ctx: CheckContext, watch: Stopwatch
) -> Observation[DnsQuery]:
    # One AF_UNSPEC call, not one per family: glibc answers an AF_UNSPEC lookup of a name in
    # /etc/hosts from the file, but an AF_INET6-only lookup of a name listed only with an IPv4
    # address falls through to DNS. A single call also mirrors what applications on the probe's
    # network do (glibc sends the A and AAAA queries in parallel itself).
    loop = asyncio.get_running_loop()
    failure: str | None = None
    infos: list[Any] = []
    lookup = functools.partial(socket.getaddrinfo, host, None, socket.AF_UNSPEC, socket.SOCK_STREAM)
    try:
        async with asyncio.timeout(ctx.timeouts.dns):
            # In the loop's default executor (what asyncio's loop.getaddrinfo does), not through
            # loop.getaddrinfo: uvloop's runs in libuv's own pool of 4 threads, which the runner
            # cannot widen, so a few names the network drops (each holding a thread for the C
            # library's timeout) starved every lookup behind them: false dns.timeout verdicts in
            # the lab's dns_drop and dns_injection scenarios under uvloop.
            infos = await loop.run_in_executor(None, lookup)
    except (OSError, TimeoutError) as exc:
        failure = classify(exc)
    except UnicodeError as exc:
        # getaddrinfo encodes with Python's IDNA 2003 codec, which refuses some names that
        # dnspython's IDNA 2008 accepts (and the reverse).
        return _unencodable(host, resolver, watch, f"IDNA: {exc}")
    v4 = _dedup(str(info[4][0]) for info in infos if info[0] == socket.AF_INET)
    v6 = _dedup(str(info[4][0]) for info in infos if info[0] == socket.AF_INET6)
    per_type = DnsPerType(
        _plain(failure or (None if v4 else Failure.DNS_NO_ANSWER)),
        _plain(failure or (None if v6 else Failure.DNS_NO_ANSWER)),
    )
    addresses = v4 + v6
    if not addresses and failure is None:
        failure = Failure.DNS_NO_ANSWER
    failure = _plain(failure)
    return Observation(
        layer=Layer.DNS,
        endpoint=resolver.spec,
        started_at=watch.started_at,
        duration_ms=watch.elapsed_ms(),
        failure=failure,
        failed_operation=Operation.RESOLVE if failure else None,
        details=DnsQuery(
            host, resolver.spec, resolver.transport, addresses=tuple(addresses), per_type=per_type
        ),
    )


def _unencodable(
    host: str, resolver: ResolverSpec, watch: Stopwatch, why: str
) -> Observation[DnsQuery]:
    failure, detail = split(unknown(f"the name cannot be encoded for DNS ({why})"))
    return Observation(
        layer=Layer.DNS,
        endpoint=resolver.spec,
        started_at=watch.started_at,
        duration_ms=watch.elapsed_ms(),
        failure=failure,
        failed_operation=Operation.RESOLVE,
        failure_detail=detail,
        details=DnsQuery(
            host, resolver.spec, resolver.transport, per_type=DnsPerType(failure, failure)
        ),
    )


async def _exchange_all(
    qname: dns.name.Name,
    resolver: ResolverSpec,
    ctx: CheckContext,
    session: aiohttp.ClientSession | None,
) -> tuple[_Outcome, _Outcome]:
    queries = (_query(qname, dns.rdatatype.A), _query(qname, dns.rdatatype.AAAA))
    if resolver.transport == "doh":
        assert resolver.url is not None
        for query in queries:
            # RFC 8484 section 4.1: id 0 makes the request cacheable by HTTP caches.
            query.id = 0
        if session is not None:
            a, aaaa = await asyncio.gather(
                *(_https(query, resolver.url, session, ctx) for query in queries)
            )
            return a, aaaa
        async with open_doh_session(ctx) as own:
            a, aaaa = await asyncio.gather(
                *(_https(query, resolver.url, own, ctx) for query in queries)
            )
        return a, aaaa
    assert resolver.address is not None and resolver.port is not None
    exchange = _udp if resolver.transport == "udp" else _tcp
    a, aaaa = await asyncio.gather(
        *(exchange(query, resolver.address, resolver.port, ctx) for query in queries)
    )
    return a, aaaa


async def resolve(
    host: str,
    resolver: ResolverSpec,
    ctx: CheckContext,
    *,
    doh_session: aiohttp.ClientSession | None = None,
) -> Observation[DnsQuery]:
    """Resolve `host` (A and AAAA, concurrently) through `resolver`; never raises for a network
    outcome. An IP literal is returned as it is, without a query. A host with no DNS wire form
    is a recorded failure too. `doh_session` (open_doh_session) is the run's: its connections
    to a DoH server are reused; without it a lookup opens and closes a session of its own."""
    watch = Stopwatch()
    literal = _literal(host)
    if literal is not None:
        return Observation(
            layer=Layer.DNS,
            endpoint=resolver.spec,
            started_at=watch.started_at,
            duration_ms=watch.elapsed_ms(),
            details=DnsQuery(host, resolver.spec, resolver.transport, addresses=(literal,)),
        )
    try:
        qname = _qname(host)
    except ValueError as exc:
        # A name with no DNS wire form (an IDN label over 63 octets once encoded, an empty
        # label) is recorded as this target's failure: one bad name never aborts the run.
        return _unencodable(host, resolver, watch, str(exc))
    if resolver.transport == "system":
        return await _resolve_system(host, resolver, ctx, watch)
    a, aaaa = await _exchange_all(qname, resolver, ctx, doh_session)
    return _observation(host, resolver, watch, a, aaaa)
