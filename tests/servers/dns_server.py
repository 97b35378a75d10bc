"""A tiny fake nameserver on loopback for tests: DNS over UDP and TCP on one ephemeral port and,
optionally, DNS over HTTPS (RFC 8484, trustme certificate), all answering from one zone in which
every name has a Behaviour: an answer, NXDOMAIN, SERVFAIL, REFUSED, an empty answer, silence, a
forged answer racing the real one, a duplicate answer, garbage bytes, or truncation.

It runs its own event loop in a background thread, so sync tests, async tests and code that calls
asyncio.run() itself (the CLI) can all talk to it:

    zone = {
        "example.com": Behaviour.answer(a=["192.0.2.1"], aaaa=["2001:db8::1"]),
        "blocked.example": Behaviour.inject(forged=["10.10.34.35"], a=["192.0.2.7"]),
        "split.example": {"A": Behaviour.answer(a=["192.0.2.9"]), "AAAA": Behaviour.servfail()},
    }
    with FakeNameserver(zone, doh=True) as ns:        # or: async with FakeNameserver(...) as ns
        ns.udp_spec                 # "udp://127.0.0.1:PORT" (a resolver spec, probe.resolvers)
        ns.tcp_spec                 # "tcp://127.0.0.1:PORT"   (same port as UDP)
        ns.doh_url                  # "https://127.0.0.1:PORT2/dns-query"
        ns.client_ssl_context()     # an SSLContext that trusts the DoH certificate
        ns.queries                  # [Query(transport="udp", name="example.com", rdtype="A"), ...]
        ns.set("late.example", Behaviour.answer(a=["192.0.2.3"]))   # change the zone while running

Names are matched case-insensitively, without the trailing dot. A name missing from the zone gets
`default` (NXDOMAIN unless told otherwise); a name mapped per type ({"A": ..., "AAAA": ...}) gets
an empty NOERROR answer for a type it does not list. Queries for other types than A/AAAA get an
empty NOERROR answer when the name's behaviour is an answer.

What each behaviour does per transport (an on-path injector acts on UDP only, so over TCP and DoH
INJECT and DUPLICATE send the real answer once, and TRUNCATE sends the full answer):

    ANSWER     the records (a CNAME first when `cname` is set, the addresses owned by its target)
    NXDOMAIN / SERVFAIL / REFUSED   that rcode, no records
    NO_ANSWER  NOERROR with an empty answer section
    DROP       nothing (TCP: the connection stays open and silent; DoH: the request hangs)
    INJECT     UDP: a forged answer (`forged`, split by address family) at once, the real one
               `second_delay` seconds later; a query type with no forged address of its family
               gets only the real answer
    DUPLICATE  UDP: the same real answer twice, `second_delay` apart
    GARBAGE    bytes that start with the query id but do not parse as DNS (DoH: as a 200 body)
    TRUNCATE   UDP: an empty answer with the TC bit; TCP and DoH: the full answer
Every behaviour waits `delay` seconds before its first response.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import ssl
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Literal, Self, cast

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import trustme
from aiohttp import web

TransportName = Literal["udp", "tcp", "doh"]


class Kind(StrEnum):
    """What the fake nameserver does when asked about a name."""

    ANSWER = "answer"
    NXDOMAIN = "nxdomain"
    SERVFAIL = "servfail"
    REFUSED = "refused"
    NO_ANSWER = "no_answer"
    DROP = "drop"
    INJECT = "inject"
    DUPLICATE = "duplicate"
    GARBAGE = "garbage"
    TRUNCATE = "truncate"


@dataclass(frozen=True, slots=True)
class Behaviour:
    """How one name (or one name and type) is answered. Build it with the class methods."""

    kind: Kind
    a: tuple[str, ...] = ()
    aaaa: tuple[str, ...] = ()
    cname: str | None = None
    forged: tuple[str, ...] = ()
    delay: float = 0.0
    second_delay: float = 0.05
    ttl: int = 300

    @classmethod
    def answer(
        cls,
        a: Iterable[str] = (),
        aaaa: Iterable[str] = (),
        *,
        cname: str | None = None,
        ttl: int = 300,
        delay: float = 0.0,
    ) -> Behaviour:
        return cls(Kind.ANSWER, tuple(a), tuple(aaaa), cname=cname, ttl=ttl, delay=delay)

    @classmethod
    def nxdomain(cls, *, delay: float = 0.0) -> Behaviour:
        return cls(Kind.NXDOMAIN, delay=delay)

    @classmethod
    def servfail(cls, *, delay: float = 0.0) -> Behaviour:
        return cls(Kind.SERVFAIL, delay=delay)

    @classmethod
    def refused(cls, *, delay: float = 0.0) -> Behaviour:
        return cls(Kind.REFUSED, delay=delay)

    @classmethod
    def no_answer(cls, *, delay: float = 0.0) -> Behaviour:
        return cls(Kind.NO_ANSWER, delay=delay)

    @classmethod
    def drop(cls) -> Behaviour:
        return cls(Kind.DROP)

    @classmethod
    def inject(
        cls,
        forged: Iterable[str],
        a: Iterable[str] = (),
        aaaa: Iterable[str] = (),
        *,
        second_delay: float = 0.05,
        delay: float = 0.0,
    ) -> Behaviour:
        return cls(
            Kind.INJECT,
            tuple(a),
            tuple(aaaa),
            forged=tuple(forged),
            second_delay=second_delay,
            delay=delay,
        )

    @classmethod
    def duplicate(
        cls, a: Iterable[str] = (), aaaa: Iterable[str] = (), *, second_delay: float = 0.05
    ) -> Behaviour:
        return cls(Kind.DUPLICATE, tuple(a), tuple(aaaa), second_delay=second_delay)

    @classmethod
    def garbage(cls, *, delay: float = 0.0) -> Behaviour:
        return cls(Kind.GARBAGE, delay=delay)

    @classmethod
    def truncate(cls, a: Iterable[str] = (), aaaa: Iterable[str] = ()) -> Behaviour:
        return cls(Kind.TRUNCATE, tuple(a), tuple(aaaa))


Zone = Mapping[str, Behaviour | Mapping[str, Behaviour]]


@dataclass(frozen=True, slots=True)
class Query:
    """One query the fake nameserver received."""

    transport: TransportName
    name: str
    rdtype: str


def _key(name: str) -> str:
    return name.lower().rstrip(".")


def _family_split(addresses: Iterable[str], rdtype: int) -> tuple[str, ...]:
    version = 4 if rdtype == dns.rdatatype.A else 6
    return tuple(a for a in addresses if ipaddress.ip_address(a).version == version)


def _response(query: dns.message.Message, rcode: dns.rcode.Rcode) -> dns.message.Message:
    response = dns.message.make_response(query)
    response.flags |= dns.flags.RA
    response.set_rcode(rcode)
    return response


def _records(
    query: dns.message.Message, behaviour: Behaviour, addresses: Iterable[str]
) -> dns.message.Message:
    """A NOERROR response holding `addresses` of the query's type (after a CNAME if configured)."""
    response = _response(query, dns.rcode.NOERROR)
    question = query.question[0]
    owner = question.name
    if behaviour.cname is not None:
        target = dns.name.from_text(behaviour.cname)
        response.answer.append(
            dns.rrset.from_text_list(owner, behaviour.ttl, "IN", "CNAME", [target.to_text()])
        )
        owner = target
    wanted = tuple(addresses)
    if wanted and question.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        response.answer.append(
            dns.rrset.from_text_list(owner, behaviour.ttl, "IN", question.rdtype, list(wanted))
        )
    return response


def _wire(message: dns.message.Message) -> bytes:
    # dnspython shuffles the records of an rrset by default; keep the zone's order so that tests
    # can check that the client keeps answer order.
    return message.to_wire(want_shuffle=False)


def _garbage(query: dns.message.Message) -> bytes:
    # The query id, then a header promising one question and five answers, then four junk bytes:
    # it looks like a reply to this query to anyone matching ids, and no DNS parser accepts it.
    return query.id.to_bytes(2, "big") + bytes.fromhex("818000010005000000000000deadbeef")


def responses_for(
    query: dns.message.Message, behaviour: Behaviour, transport: TransportName
) -> list[tuple[float, bytes]]:
    """The datagrams/messages to send, each with its delay (seconds after the query arrived)."""
    rdtype = query.question[0].rdtype
    addressed = rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)
    real = _family_split(behaviour.a + behaviour.aaaa, rdtype) if addressed else ()
    start = behaviour.delay
    kind = behaviour.kind
    if kind is Kind.DROP:
        return []
    if kind is Kind.GARBAGE:
        return [(start, _garbage(query))]
    rcodes = {
        Kind.NXDOMAIN: dns.rcode.NXDOMAIN,
        Kind.SERVFAIL: dns.rcode.SERVFAIL,
        Kind.REFUSED: dns.rcode.REFUSED,
        Kind.NO_ANSWER: dns.rcode.NOERROR,
    }
    if kind in rcodes:
        return [(start, _wire(_response(query, rcodes[kind])))]
    genuine = _wire(_records(query, behaviour, real))
    if transport != "udp" or kind is Kind.ANSWER:
        return [(start, genuine)]
    if kind is Kind.TRUNCATE:
        truncated = _response(query, dns.rcode.NOERROR)
        truncated.flags |= dns.flags.TC
        return [(start, _wire(truncated))]
    if kind is Kind.DUPLICATE:
        return [(start, genuine), (start + behaviour.second_delay, genuine)]
    forged = _family_split(behaviour.forged, rdtype) if addressed else ()
    if not forged:
        return [(start, genuine)]
    fake = _wire(_records(query, Behaviour(Kind.ANSWER, ttl=60), forged))
    return [(start, fake), (start + behaviour.second_delay, genuine)]


class _UdpServer(asyncio.DatagramProtocol):
    def __init__(self, owner: FakeNameserver) -> None:
        self._owner = owner
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Python 3.11's selector datagram transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        query = self._owner._parse(data, "udp")
        if query is None or self.transport is None:
            return
        loop = asyncio.get_running_loop()
        for delay, wire in responses_for(query, self._owner._lookup(query), "udp"):
            loop.call_later(delay, self._send, wire, addr)

    def _send(self, wire: bytes, addr: tuple[str | int, ...]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(wire, addr)


class FakeNameserver:
    """A fake nameserver on loopback (see the module docstring).

    `host` is the loopback address to listen on ("127.0.0.1" or "::1"); `doh=True` also serves
    DNS over HTTPS at `doh_url` with a certificate from a fresh trustme CA.
    """

    def __init__(
        self,
        zone: Zone | None = None,
        *,
        host: str = "127.0.0.1",
        doh: bool = False,
        default: Behaviour | None = None,
        doh_path: str = "/dns-query",
    ) -> None:
        self._zone: dict[str, Behaviour | Mapping[str, Behaviour]] = {
            _key(name): behaviour for name, behaviour in (zone or {}).items()
        }
        self.host = host
        self.default = default or Behaviour.nxdomain()
        self._want_doh = doh
        self._doh_path = doh_path
        self.queries: list[Query] = []
        self._port: int | None = None
        self._doh_port: int | None = None
        self._ca: trustme.CA | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tcp_tasks: set[asyncio.Task[None]] = set()
        self._doh_runner: web.AppRunner | None = None
        # The client ends (address, port) of every connection a DoH request came over.
        self.doh_connections: set[tuple[object, ...]] = set()
        self._stopping: asyncio.Event | None = None

    # -- the API --------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        return self.host

    @property
    def port(self) -> int:
        """The UDP and TCP port."""
        if self._port is None:
            raise RuntimeError("the fake nameserver is not started")
        return self._port

    @property
    def doh_port(self) -> int:
        if self._doh_port is None:
            raise RuntimeError("the fake nameserver serves no DoH (start it with doh=True)")
        return self._doh_port

    def _netloc(self, port: int) -> str:
        return f"[{self.host}]:{port}" if ":" in self.host else f"{self.host}:{port}"

    @property
    def udp_spec(self) -> str:
        return f"udp://{self._netloc(self.port)}"

    @property
    def tcp_spec(self) -> str:
        return f"tcp://{self._netloc(self.port)}"

    @property
    def doh_url(self) -> str:
        return f"https://{self._netloc(self.doh_port)}{self._doh_path}"

    @property
    def ca(self) -> trustme.CA:
        if self._ca is None:
            self._ca = trustme.CA()
        return self._ca

    def client_ssl_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts the DoH certificate's CA and nothing else."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.ca.configure_trust(context)
        return context

    def set(self, name: str, behaviour: Behaviour | Mapping[str, Behaviour]) -> None:
        """Change how `name` is answered (takes effect for the next query)."""
        self._zone[_key(name)] = behaviour

    def queries_for(self, name: str) -> list[Query]:
        return [q for q in self.queries if q.name == _key(name)]

    def start(self) -> Self:
        if self._loop is not None:
            raise RuntimeError("the fake nameserver is already started")
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=loop.run_forever, name="fake-nameserver", daemon=True
        )
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._open(), loop).result(timeout=10)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._close(), loop).result(timeout=10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()
            self._loop = None
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    # -- inside the server's thread ------------------------------------------------------------

    def _parse(self, wire: bytes, transport: TransportName) -> dns.message.Message | None:
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            return None
        if not query.question:
            return None
        question = query.question[0]
        self.queries.append(
            Query(
                transport,
                _key(question.name.to_text()),
                dns.rdatatype.to_text(question.rdtype),
            )
        )
        return query

    def _lookup(self, query: dns.message.Message) -> Behaviour:
        question = query.question[0]
        entry = self._zone.get(_key(question.name.to_text()))
        if entry is None:
            return self.default
        if isinstance(entry, Behaviour):
            return entry
        return entry.get(dns.rdatatype.to_text(question.rdtype), Behaviour.no_answer())

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        # UDP and TCP share one port, as a real nameserver's do: bind UDP first, then try TCP on
        # the same number, and start again if another process holds it.
        for _attempt in range(50):
            udp, _ = await loop.create_datagram_endpoint(
                lambda: _UdpServer(self), local_addr=(self.host, 0)
            )
            port = int(udp.get_extra_info("sockname")[1])
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, self.host, port)
            except OSError:
                udp.close()
                continue
            self._udp, self._port = udp, port
            break
        else:
            raise RuntimeError("no free port for UDP and TCP together")
        if self._want_doh:
            await self._open_doh()

    async def _open_doh(self) -> None:
        server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1", "::1", "localhost").configure_cert(server_context)
        app = web.Application()
        app.router.add_route("POST", self._doh_path, self._serve_doh)
        app.router.add_route("GET", self._doh_path, self._serve_doh)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, self.host, 0, ssl_context=server_context)
        await site.start()
        self._doh_runner = runner
        server = site._server
        assert isinstance(server, asyncio.Server)
        self._doh_port = int(server.sockets[0].getsockname()[1])

    async def _close(self) -> None:
        if self._stopping is not None:
            self._stopping.set()
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
        # Handlers notice `_stopping` in their pauses and return by themselves; cancelling them
        # instead would make asyncio's stream machinery log the CancelledError.
        if self._tcp_tasks:
            await asyncio.wait(set(self._tcp_tasks), timeout=2)
        if self._doh_runner is not None:
            await self._doh_runner.cleanup()

    async def _pause(self, seconds: float | None) -> bool:
        """Sleep `seconds` (None: until stopped); False when the server is stopping meanwhile."""
        assert self._stopping is not None
        try:
            async with asyncio.timeout(seconds):
                await self._stopping.wait()
        except TimeoutError:
            return True
        return False

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tcp_tasks.add(task)
        try:
            while True:
                length = int.from_bytes(await reader.readexactly(2), "big")
                query = self._parse(await reader.readexactly(length), "tcp")
                if query is None:
                    return
                planned = responses_for(query, self._lookup(query), "tcp")
                if not planned:
                    await self._pause(None)
                    return
                elapsed = 0.0
                for delay, wire in planned:
                    if not await self._pause(delay - elapsed):
                        return
                    elapsed = delay
                    writer.write(len(wire).to_bytes(2, "big") + wire)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            self._tcp_tasks.discard(task)
            writer.close()

    async def _serve_doh(self, request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer is not None:
            self.doh_connections.add(tuple(peer))
        if request.method == "POST":
            if request.content_type != "application/dns-message":
                return web.Response(status=415, text="expected application/dns-message")
            wire = await request.read()
        else:
            encoded = request.query.get("dns", "")
            try:
                wire = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
            except ValueError:
                return web.Response(status=400, text="bad dns parameter")
        query = self._parse(wire, "doh")
        if query is None:
            return web.Response(status=400, text="not a DNS query")
        planned = responses_for(query, self._lookup(query), "doh")
        if not planned:
            await self._pause(None)
            return web.Response(status=503)
        delay, body = planned[-1]
        if not await self._pause(delay):
            return web.Response(status=503)
        return web.Response(body=body, content_type="application/dns-message")
