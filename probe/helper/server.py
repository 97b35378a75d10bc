"""The control test helper: a small aiohttp service, run on an uncensored host, that measures the
probe's targets from its own vantage with the probe's own runner and checks, and returns what it
saw (probe.helper.protocol). It plays the role of OONI's test helper: without such a control the
honest verdict is "inconclusive" (OONI Web Connectivity, https://github.com/ooni/spec/blob/master/nettests/ts-017-web-connectivity.md).

    POST /v1/measure   a batch of targets -> their DNS/TCP/TLS/HTTP measurements
                       (bearer token, compared in constant time; 401 without it)
    GET  /healthz      {"status": "ok"}, no token (for monitoring)

Bounds: a request body of at most Limits.max_request_bytes (413 beyond), at most
Limits.max_targets targets (400 beyond), at most `max_requests` batches in flight (503 beyond),
and an overall deadline per batch, after which what was measured is returned with
"complete": false.

Abuse: the helper connects wherever its callers ask, so it guards its own network. Unless started
with allow_private it refuses to connect to any address that is not globally routable (loopback,
private, link-local, shared/CGNAT, multicast, reserved). The rule is enforced at connect time by
the event loop itself (GuardedEventLoop), so it also catches names that resolve to such addresses
(DNS rebinding included) and redirects that lead there, not only IP literals in the request. The
helper's own resolvers are exempt, by address and port. A target that met the rule is reported in
"refused" with the reason, never as a control measurement (a refusal says nothing about the
target). The helper fails closed: without allow_private it will not start on another loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import dataclasses
import errno
import hashlib
import hmac
import ipaddress
import json
import math
import resource
import signal
import socket
import ssl
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from probe.addresses import is_ip, non_public_reason
from probe.checks import CheckContext, format_endpoint
from probe.helper.protocol import (
    LIMITS,
    MEASURE_PATH,
    PROTOCOL_VERSION,
    ClientView,
    ControlTarget,
    HelperResult,
    Limits,
    ProtocolError,
    RefusedTarget,
    encode_response,
    parse_request,
)
from probe.model import Details, DnsQuery, Measurement, Observation, Target, new_run_id
from probe.netid.mmdb import AsnDatabase, AsnRecord
from probe.resolvers import SYSTEM_RESOLVER, ResolverSpec
from probe.runner import RunPlan, execute

# Appears in the failure detail of any check whose connect the guard refused (describe() keeps
# an unknown OSError's message), which is how the helper finds the targets to report as refused.
REFUSAL_MARKER = "refused by the helper's address policy"
BUDGET_MARKER = "refused: the batch used up the connections its endpoints allow"
# Descriptors kept for the process itself (logs, the loop, resolvers, the ASN files).
_RESERVED_DESCRIPTORS = 64

_ALLOW_HINT = "this helper measures public addresses only (start it with --allow-private to lift)"


def interface_addresses() -> frozenset[str]:
    """Every address of this host's interfaces (getifaddrs(3)), plus 0.0.0.0 and ::, which reach
    the host itself. A service bound to 0.0.0.0 on the helper's host answers on its public
    address too: that address must be refused like loopback."""
    found = {"0.0.0.0", "::"}
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    head = ctypes.POINTER(_IfAddrs)()
    if libc.getifaddrs(ctypes.byref(head)) != 0:
        raise OSError(ctypes.get_errno(), "getifaddrs failed")
    try:
        node = head
        while node:
            entry = node.contents
            if entry.ifa_addr:
                address = _sockaddr_text(entry.ifa_addr)
                if address is not None:
                    found.add(address)
            node = entry.ifa_next
    finally:
        libc.freeifaddrs(head)
    return frozenset(found)


class _IfAddrs(ctypes.Structure):
    pass


_IfAddrs._fields_ = [
    ("ifa_next", ctypes.POINTER(_IfAddrs)),
    ("ifa_name", ctypes.c_char_p),
    ("ifa_flags", ctypes.c_uint),
    ("ifa_addr", ctypes.c_void_p),
    ("ifa_netmask", ctypes.c_void_p),
    ("ifa_ifu", ctypes.c_void_p),
    ("ifa_data", ctypes.c_void_p),
]


def _sockaddr_text(pointer: int) -> str | None:
    # struct sockaddr: Linux starts with a 16-bit family; the BSDs with a length byte, then it.
    if sys.platform.startswith("linux"):
        family = ctypes.c_uint16.from_address(pointer).value
    else:
        family = ctypes.c_uint8.from_address(pointer + 1).value
    if family == socket.AF_INET:  # sockaddr_in: family, port, then the 4 address bytes
        return socket.inet_ntop(socket.AF_INET, ctypes.string_at(pointer + 4, 4))
    if family == socket.AF_INET6:  # sockaddr_in6: family, port, flowinfo, then 16 bytes
        return str(ipaddress.IPv6Address(ctypes.string_at(pointer + 8, 16)))
    return None


class EgressRefused(PermissionError):
    """The helper refused to connect to an address that is not public."""

    def __init__(self, address: str, reason: str) -> None:
        # The address stays out of the message: failure strings are scrubbed of addresses anyway,
        # and the reason alone is stable across targets.
        super().__init__(errno.EACCES, f"{REFUSAL_MARKER} ({reason} address)")
        self.address = address


class ConnectBudgetExhausted(PermissionError):
    """The batch has opened as many connections as its endpoints may cause."""

    def __init__(self, budget: int) -> None:
        super().__init__(errno.EACCES, f"{BUDGET_MARKER} ({budget} connections)")


@dataclass(slots=True)
class ConnectBudget:
    """The connections one batch may still open: a request can cost the helper at most this
    many, whatever its redirects and addresses."""

    limit: int
    used: int = 0

    def take(self) -> bool:
        if self.used >= self.limit:
            return False
        self.used += 1
        return True


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    """Where the tasks of one measurement batch may connect. The order of the rules: everything
    with allow_private; else never the helper host's own addresses; else the `allowed` networks
    (an allow-list, for tests on loopback); else public addresses only."""

    allow_private: bool
    exempt: frozenset[tuple[str, int]] = frozenset()
    allowed: tuple[Network, ...] = ()
    own: frozenset[str] = frozenset()
    budget: ConnectBudget | None = None

    def reason(self, host: str) -> str | None:
        """Why this batch may not reach `host` ("loopback", "helper-host", ...), or None."""
        if self.allow_private:
            return None
        try:
            ip = ipaddress.ip_address(host.partition("%")[0])
        except ValueError:
            return "unparsable"
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        reason = non_public_reason(str(ip))
        if str(ip) in self.own:
            # 0.0.0.0, ::, and every interface address: a service bound to 0.0.0.0 here answers
            # on the public address too. No allow-list lifts this.
            return reason or "helper-host"
        if any(ip.version == net.version and ip in net for net in self.allowed):
            return None
        return reason

    def check(self, address: Any) -> None:
        """Raise EgressRefused unless a connect to `address` (a socket address tuple) is allowed,
        ConnectBudgetExhausted once the batch has used up its connections."""
        host, port = str(address[0]), int(address[1])
        with contextlib.suppress(ValueError):
            if (str(ipaddress.ip_address(host)), port) in self.exempt:
                return
        reason = self.reason(host)
        if reason is not None:
            raise EgressRefused(host, reason)
        if self.budget is not None and not self.budget.take():
            raise ConnectBudgetExhausted(self.budget.limit)


# The policy of the batch the current task works for; tasks copy it when they are created, so
# every check the runner starts for a batch carries that batch's policy.
_EGRESS: ContextVar[EgressPolicy | None] = ContextVar("probe_helper_egress", default=None)


class GuardedEventLoop(asyncio.SelectorEventLoop):
    """An event loop that checks every outgoing IP connect against the EgressPolicy in the calling
    task's context. All connects go through sock_connect: asyncio's create_connection and
    open_connection, connected datagram endpoints, and aiohttp's happy-eyeballs dialer."""

    async def sock_connect(self, sock: socket.socket, address: Any) -> None:
        policy = _EGRESS.get()
        if policy is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            policy.check(address)
        await super().sock_connect(sock, address)


@dataclass(frozen=True, slots=True)
class HelperConfig:
    """How a helper measures and what it accepts."""

    token: str = field(repr=False)  # kept out of logs and tracebacks
    resolvers: tuple[ResolverSpec, ...] = (SYSTEM_RESOLVER,)
    context: CheckContext = field(default_factory=CheckContext)
    concurrency: int = 256
    max_addresses: int = 4
    allow_private: bool = False
    # Networks this helper may measure although they are not public: for tests on loopback only.
    allowed: tuple[Network, ...] = ()
    # This host's own addresses (read again for every batch: they change with DHCP, SLAAC).
    own_addresses: Callable[[], frozenset[str]] = field(default=interface_addresses, repr=False)
    # Long enough for a full batch at the default timeouts (a target's pipeline is bounded by
    # dns + connect + tls + http), short enough that a probe's own timeout can wait for it.
    deadline: float = 120.0
    max_requests: int = 4
    limits: Limits = LIMITS
    # Connections one endpoint (target x port) may cost per address: the TCP, TLS and HTTP
    # checks, the harmless-name halves of the A/B tests, and the redirects (5 by default).
    connects_per_endpoint: int = 10
    # Batches one token may send: a burst, then one every 60/per_minute seconds (429 beyond).
    rate_burst: int = 8
    rate_per_minute: float = 30.0
    # The web server's own bounds: a connection must send its request headers within
    # header_timeout, its body within body_timeout; at most max_connections at once, at most
    # max_connections_per_peer from one address (IPv6: one /64). Past the cap, the oldest
    # connection that has not sent a request yet makes way.
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 512
    max_connections_per_peer: int = 32
    # The helper's offline IP-to-ASN files ([network] mmdb of its config): the network a probe
    # measures from, as seen from outside, goes back with every answer.
    asn_database: AsnDatabase | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.token:
            raise ValueError("the helper needs a non-empty token")
        if not self.resolvers:
            raise ValueError("the helper needs at least one resolver")

    def egress_policy(self, targets: Sequence[Target] = ()) -> EgressPolicy:
        """The policy of a batch of `targets`: the helper's own resolvers stay reachable whatever
        their address, and the batch may open as many connections as its endpoints need."""
        exempt = frozenset(
            (str(ipaddress.ip_address(r.address)), r.port)
            for r in self.resolvers
            if r.address is not None and r.port is not None and is_ip(r.address)
        )
        endpoints = sum(len(t.ports) for t in targets)
        budget = ConnectBudget(endpoints * self.max_addresses * self.connects_per_endpoint)
        own = frozenset() if self.allow_private else self.own_addresses()
        return EgressPolicy(self.allow_private, exempt, self.allowed, own, budget)


def require_guard(config: HelperConfig) -> None:
    """Fail closed: without allow_private, the running loop must enforce the egress policy."""
    if config.allow_private:
        return
    if not isinstance(asyncio.get_running_loop(), GuardedEventLoop):
        raise RuntimeError(
            "the helper refuses non-public addresses only on a GuardedEventLoop: run it with "
            "probe.helper.server.serve() (or asyncio.Runner(loop_factory=GuardedEventLoop)), "
            "or set allow_private"
        )


class _MemorySink:
    """The runner's sink for one batch: the measurements stay in memory until answered."""

    def __init__(self) -> None:
        self.measurements: list[Measurement] = []

    def save_measurements(self, batch: Sequence[Measurement]) -> None:
        self.measurements.extend(batch)


def _refusal(observations: Sequence[Observation[Details]], policy: EgressPolicy) -> str | None:
    """Why a measured target is no control (its answer says nothing about it, or would reveal
    the helper's own network), or None. Addresses stay out of the reason: an internal name's
    address is exactly what a caller must not learn."""
    # The guard's refusals are unknown OSErrors: their text is the observation's failure detail.
    if any(BUDGET_MARKER in (o.failure_detail or "") for o in observations):
        return "the batch used up the connections its endpoints allow; send fewer targets"
    reasons = sorted(
        {
            why
            for o in observations
            if isinstance(o.details, DnsQuery)
            for address in o.details.addresses
            if (why := policy.reason(address)) is not None
        }
    )
    if reasons:
        return f"resolves to a non-public address ({', '.join(reasons)}); {_ALLOW_HINT}"
    if any(REFUSAL_MARKER in (o.failure_detail or "") for o in observations):
        return f"a redirect led to a non-public address; {_ALLOW_HINT}"
    return None


async def measure(
    targets: Sequence[Target], config: HelperConfig, client_address: str | None
) -> HelperResult:
    """Measure `targets` from here with the probe's runner (no controls, nothing stored) under
    the batch deadline and the egress policy; the library function behind POST /v1/measure."""
    require_guard(config)
    policy = config.egress_policy(targets)
    literal_refusals: dict[tuple[str, str], str] = {}
    allowed: list[Target] = []
    for target in targets:
        # An address literal is refused before anything is sent; names meet the guard at connect.
        reason = policy.reason(target.host) if is_ip(target.host) else None
        if reason is not None:
            literal_refusals[(target.platform, target.name)] = (
                f"{target.host} is a {reason} address; {_ALLOW_HINT}"
            )
        else:
            allowed.append(target)
    plan = RunPlan(
        targets=allowed,
        controls=(),
        resolvers=config.resolvers,
        context=config.context,
        concurrency=config.concurrency,
        max_addresses=config.max_addresses,
    )
    sink = _MemorySink()
    complete = True
    token = _EGRESS.set(policy)
    try:
        deadline = asyncio.timeout(config.deadline)
        try:
            async with deadline:
                await execute(plan, new_run_id(), sink)
        except TimeoutError:
            if not deadline.expired():
                raise
            # execute() flushed every finished measurement before the cancellation ended it.
            complete = False
    finally:
        _EGRESS.reset(token)
    observed: dict[tuple[str, str], list[Observation[Details]]] = {}
    for m in sink.measurements:
        observed.setdefault((m.platform, m.target), []).append(m.observation)
    controls: list[ControlTarget] = []
    refused: list[RefusedTarget] = []
    for target in targets:
        key = (target.platform, target.name)
        if key in literal_refusals:
            refused.append(RefusedTarget(target.platform, target.name, literal_refusals[key]))
            continue
        observations = observed.get(key, [])
        why = _refusal(observations, policy)
        if why is not None:
            refused.append(RefusedTarget(target.platform, target.name, why))
        else:
            controls.append(
                ControlTarget(target.platform, target.name, target.host, tuple(observations))
            )
    record = AsnRecord()
    if config.asn_database is not None and client_address:
        record = config.asn_database.lookup(client_address)
    return HelperResult(
        client=ClientView(
            address=client_address,
            asn=record.asn,
            as_name=record.as_name,
            country=record.country,
        ),
        targets=tuple(controls),
        refused=tuple(refused),
        complete=complete,
    )


# -- the web application ----------------------------------------------------------------------


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(
        {"version": PROTOCOL_VERSION, "error": message}, status=status, headers=headers
    )


def _authorised(request: web.Request, token: str) -> bool:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    presented = value.strip().encode("utf-8", "surrogateescape")
    # Constant time: the comparison must not tell an attacker how much of a guess was right.
    return hmac.compare_digest(presented, token.encode("utf-8"))


class _Gate:
    """Counts batches in flight; a full gate answers 503 at once instead of queueing work."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.in_flight = 0

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1


class _TokenRate:
    """A token bucket per bearer token: `burst` batches at once, then `per_minute`. A leaked
    token (it sits in every volunteer's config) buys a bounded rate, not a free scanner."""

    def __init__(self, burst: int, per_minute: float) -> None:
        self.burst = burst
        self.per_second = per_minute / 60.0
        self.buckets: dict[bytes, tuple[float, float]] = {}

    def wait(self, token: str) -> float:
        """0 when a batch may go now (and count it), else the seconds until one may."""
        key = hashlib.sha256(token.encode("utf-8")).digest()
        now = time.monotonic()
        level, since = self.buckets.get(key, (float(self.burst), now))
        level = min(float(self.burst), level + (now - since) * self.per_second)
        if level < 1.0:
            self.buckets[key] = (level, now)
            return (1.0 - level) / self.per_second if self.per_second > 0 else 3600.0
        self.buckets[key] = (level - 1.0, now)
        return 0.0


def _peer(transport: asyncio.BaseTransport) -> str:
    """Whom a connection counts against: its IPv4 address, or its IPv6 /64 (one host's share)."""
    address = transport.get_extra_info("peername")
    host = str(address[0]) if isinstance(address, tuple) and address else "?"
    with contextlib.suppress(ValueError):
        ip = ipaddress.ip_address(host.partition("%")[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is None:
            return str(ipaddress.ip_network(f"{ip}/64", strict=False))
        return str(ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else ip)
    return host


class _Connections:
    """Admission for the helper's connections, before aiohttp reads a byte: at most `total` at
    once and `per_peer` from one peer, and request headers within `header_timeout`. When full,
    the oldest connection that has not sent its request yet is closed to make way, so idle
    connections (a slowloris, a censor that wants every verdict inconclusive) cannot lock the
    probes out, and the helper never reaches its descriptor limit (EMFILE)."""

    def __init__(self, total: int, per_peer: int, header_timeout: float) -> None:
        self.total = total
        self.per_peer = per_peer
        self.header_timeout = header_timeout
        self.waiting: dict[asyncio.BaseTransport, _GuardedConnection] = {}  # oldest first
        self.open: dict[asyncio.BaseTransport, _GuardedConnection] = {}
        self.peers: dict[str, int] = {}
        self.turned_away = 0

    def admit(self, connection: _GuardedConnection, transport: asyncio.BaseTransport) -> bool:
        peer = connection.peer
        if self.peers.get(peer, 0) >= self.per_peer:
            self.turned_away += 1
            return False
        if len(self.open) >= self.total:
            if not self.waiting:
                self.turned_away += 1
                return False
            oldest_transport, oldest = next(iter(self.waiting.items()))
            # Forget it now, not when its close completes: the next accept in this same loop
            # iteration must find the slot free and pick the next oldest.
            self.closed(oldest, oldest_transport)
            oldest.expire()
        self.open[transport] = connection
        self.waiting[transport] = connection
        self.peers[peer] = self.peers.get(peer, 0) + 1
        return True

    def request_started(self, transport: asyncio.BaseTransport | None) -> None:
        connection = self.waiting.pop(transport, None) if transport is not None else None
        if connection is not None:
            connection.headers_read()

    def closed(self, connection: _GuardedConnection, transport: asyncio.BaseTransport) -> None:
        self.waiting.pop(transport, None)
        if self.open.pop(transport, None) is not None:
            left = self.peers.get(connection.peer, 1) - 1
            if left > 0:
                self.peers[connection.peer] = left
            else:
                self.peers.pop(connection.peer, None)


class _GuardedConnection(asyncio.Protocol):
    """aiohttp's request handler behind the admission rules of _Connections."""

    def __init__(self, inner: asyncio.Protocol, connections: _Connections) -> None:
        self.inner = inner
        self.connections = connections
        self.transport: asyncio.Transport | None = None
        self.admitted = False
        self.peer = "?"
        self.deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.peer = _peer(transport)
        if not self.connections.admit(self, transport):
            transport.abort()
            return
        self.admitted = True
        loop = asyncio.get_running_loop()
        self.deadline = loop.call_later(self.connections.header_timeout, self.expire)
        self.inner.connection_made(transport)

    def headers_read(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def expire(self) -> None:
        """No request headers in time (or making way for a newer connection): close it."""
        self.headers_read()
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.admitted:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.admitted else None

    def pause_writing(self) -> None:
        if self.admitted:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.admitted:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.headers_read()
        if self.admitted and self.transport is not None:
            self.connections.closed(self, self.transport)
            self.inner.connection_lost(exc)


def create_app(config: HelperConfig, connections: _Connections | None = None) -> web.Application:
    """The helper's aiohttp application (`connections`: the admission rules it is served with,
    told when a connection's request headers have arrived)."""
    limits = config.limits
    gate = _Gate(config.max_requests)
    rate = _TokenRate(config.rate_burst, config.rate_per_minute)

    async def check_loop(_app: web.Application) -> None:
        require_guard(config)

    @web.middleware
    async def one_request_per_connection(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        # The headers are in: the connection's header deadline is over. It carries this one
        # request only, so no idle keep-alive connection waits for the next one.
        if connections is not None:
            connections.request_started(request.transport)
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.force_close()
            raise
        response.force_close()
        return response

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "version": PROTOCOL_VERSION})

    async def measure_batch(request: web.Request) -> web.Response:
        # Authenticate before reading a byte of the body: strangers get nothing to parse.
        if not _authorised(request, config.token):
            return _error(
                401,
                "missing or wrong bearer token",
                headers={"WWW-Authenticate": 'Bearer realm="probe-helper"'},
            )
        wait = rate.wait(config.token)
        if wait > 0:
            return _error(
                429,
                f"too many batches for this token: at most {config.rate_burst} at once, then "
                f"{config.rate_per_minute:g} a minute; try again in {math.ceil(wait)} s",
                headers={"Retry-After": str(math.ceil(wait))},
            )
        too_large = f"the request is larger than {limits.max_request_bytes} bytes"
        if request.content_length is not None and request.content_length > limits.max_request_bytes:
            return _error(413, too_large)
        try:
            async with asyncio.timeout(config.body_timeout):
                body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(413, too_large)
        except TimeoutError:
            return _error(408, f"the request body took longer than {config.body_timeout:g} s")
        try:
            document = json.loads(body)
        except (ValueError, RecursionError) as exc:
            return _error(400, f"the request is not JSON: {type(exc).__name__}")
        try:
            targets = parse_request(document, limits)
        except ProtocolError as exc:
            return _error(400, str(exc))
        if gate.in_flight >= gate.capacity:
            return _error(
                503,
                f"busy: {gate.in_flight} batches in flight; try again later",
                headers={"Retry-After": "10"},
            )
        with gate.slot():
            result = await measure(targets, config, request.remote)
        return web.json_response(encode_response(result))

    app = web.Application(
        client_max_size=limits.max_request_bytes, middlewares=[one_request_per_connection]
    )
    app.on_startup.append(check_loop)
    app.router.add_get("/healthz", healthz)
    app.router.add_post(f"/{MEASURE_PATH}", measure_batch)
    return app


@contextlib.asynccontextmanager
async def running(
    config: HelperConfig,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[str]:
    """Serve the helper on host:port (0: a free port) while the block runs; yields its base URL.
    Every connection passes the admission rules (_Connections) before aiohttp sees it."""
    connections = _Connections(
        config.max_connections, config.max_connections_per_peer, config.header_timeout
    )
    runner = web.AppRunner(
        create_app(config, connections),
        access_log=None,
        shutdown_timeout=1.0,
        keepalive_timeout=config.header_timeout,
    )
    await runner.setup()
    loop = asyncio.get_running_loop()
    server: asyncio.Server | None = None
    try:
        handlers = runner.server
        assert handlers is not None
        server = await loop.create_server(
            lambda: _GuardedConnection(handlers(), connections),
            host,
            port,
            ssl=ssl_context,
            # A TLS handshake that never completes holds a descriptor like an idle connection.
            ssl_handshake_timeout=config.header_timeout if ssl_context is not None else None,
            reuse_address=True,
        )
        bound_host, bound_port = server.sockets[0].getsockname()[:2]
        scheme = "https" if ssl_context is not None else "http"
        yield f"{scheme}://{format_endpoint(str(bound_host), int(bound_port))}"
    finally:
        if server is not None:
            server.close()
        await runner.cleanup()
        if server is not None:
            await server.wait_closed()


def serve(
    config: HelperConfig,
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Run the helper on a GuardedEventLoop until SIGINT or SIGTERM; `ready` gets its base URL."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        async with running(config, host, port, ssl_context=ssl_context) as url:
            if ready is not None:
                ready(url)
            await stop.wait()

    # Keep the connections within the descriptors: half of what is left after a reserve goes
    # to connections, the rest to the measurements' own sockets. Past the limit accept() fails
    # with EMFILE for everyone, the probes included, and asyncio logs each failure.
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY:
        fit = max(16, (soft - _RESERVED_DESCRIPTORS) // 2)
        if fit < config.max_connections:
            config = dataclasses.replace(config, max_connections=fit)
    with asyncio.Runner(loop_factory=GuardedEventLoop) as runner:
        runner.run(main())
