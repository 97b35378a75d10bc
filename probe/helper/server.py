"""The control test helper: a small aiohttp service, run on an uncensored host, that measures the
probe's targets from its own vantage with the probe's own runner and checks, and returns what it
saw (probe.helper.protocol). It plays the role of OONI's test helper: without such a control the
honest verdict is "inconclusive" (REFERENCE.md, "How verdicts are reached").

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
import errno
import hmac
import ipaddress
import json
import signal
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

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
from probe.model import Layer, Measurement, Observation, Target, new_run_id
from probe.netid import AsnDatabase, AsnRecord
from probe.resolvers import SYSTEM_RESOLVER, ResolverSpec
from probe.runner import RunPlan, execute

# Appears in the failure string of any check whose connect the guard refused (classify() keeps
# an unknown OSError's message), which is how the helper finds the targets to report as refused.
REFUSAL_MARKER = "refused by the helper's address policy"

_ALLOW_HINT = "this helper measures public addresses only (start it with --allow-private to lift)"


def non_public_reason(address: str) -> str | None:
    """Why `address` is not a public Internet address ("loopback", "private", ...), or None when
    it is one. Anything that does not parse counts as not public."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "unparsable"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    checks = (
        (ip.is_unspecified, "unspecified"),
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local"),
        (ip.is_multicast, "multicast"),
        (ip.is_private, "private"),
        (ip.is_reserved, "reserved"),
        # 100.64.0.0/10 (carrier-grade NAT) and the like: neither private nor routable.
        (not ip.is_global, "non-global"),
    )
    for matched, reason in checks:
        if matched:
            return reason
    return None


class EgressRefused(PermissionError):
    """The helper refused to connect to an address that is not public."""

    def __init__(self, address: str, reason: str) -> None:
        # The address stays out of the message: failure strings are scrubbed of addresses anyway,
        # and the reason alone is stable across targets.
        super().__init__(errno.EACCES, f"{REFUSAL_MARKER} ({reason} address)")
        self.address = address


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    """Where the tasks of one measurement batch may connect."""

    allow_private: bool
    exempt: frozenset[tuple[str, int]] = frozenset()

    def check(self, address: Any) -> None:
        """Raise EgressRefused unless a connect to `address` (a socket address tuple) is allowed."""
        if self.allow_private:
            return
        host, port = str(address[0]), int(address[1])
        reason = non_public_reason(host)
        if reason is None:
            return
        with contextlib.suppress(ValueError):
            if (str(ipaddress.ip_address(host)), port) in self.exempt:
                return
        raise EgressRefused(host, reason)


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
    # Long enough for a full batch at the default timeouts (a target's pipeline is bounded by
    # dns + connect + tls + http), short enough that a probe's own timeout can wait for it.
    deadline: float = 120.0
    max_requests: int = 4
    limits: Limits = LIMITS
    # The helper's offline IP-to-ASN files ([network] mmdb of its config): the network a probe
    # measures from, as seen from outside, goes back with every answer.
    asn_database: AsnDatabase | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.token:
            raise ValueError("the helper needs a non-empty token")
        if not self.resolvers:
            raise ValueError("the helper needs at least one resolver")

    def egress_policy(self) -> EgressPolicy:
        """The batch policy: the helper's own resolvers stay reachable whatever their address."""
        exempt = frozenset(
            (str(ipaddress.ip_address(r.address)), r.port)
            for r in self.resolvers
            if r.address is not None and r.port is not None and _is_ip(r.address)
        )
        return EgressPolicy(self.allow_private, exempt)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


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


def _refusal_reason(refused: Sequence[Observation]) -> str:
    addresses = {
        str(o.details["address"]): non_public_reason(str(o.details["address"]))
        for o in refused
        if o.layer in (Layer.TCP, Layer.TLS) and isinstance(o.details.get("address"), str)
    }
    if addresses:
        listed = ", ".join(f"{a} ({why})" for a, why in addresses.items())
        return f"resolves to non-public addresses: {listed}; {_ALLOW_HINT}"
    return f"a redirect led to a non-public address; {_ALLOW_HINT}"


async def measure(
    targets: Sequence[Target], config: HelperConfig, client_address: str | None
) -> HelperResult:
    """Measure `targets` from here with the probe's runner (no controls, nothing stored) under
    the batch deadline and the egress policy; the library function behind POST /v1/measure."""
    require_guard(config)
    literal_refusals: dict[tuple[str, str], str] = {}
    allowed: list[Target] = []
    for target in targets:
        # An address literal is refused before anything is sent; names meet the guard at connect.
        literal = not config.allow_private and _is_ip(target.host)
        reason = non_public_reason(target.host) if literal else None
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
    token = _EGRESS.set(config.egress_policy())
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
    observed: dict[tuple[str, str], list[Observation]] = {}
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
        hit = [o for o in observations if o.failure and REFUSAL_MARKER in o.failure]
        if hit:
            refused.append(RefusedTarget(target.platform, target.name, _refusal_reason(hit)))
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


def create_app(config: HelperConfig) -> web.Application:
    """The helper's aiohttp application."""
    limits = config.limits
    gate = _Gate(config.max_requests)

    async def check_loop(_app: web.Application) -> None:
        require_guard(config)

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
        too_large = f"the request is larger than {limits.max_request_bytes} bytes"
        if request.content_length is not None and request.content_length > limits.max_request_bytes:
            return _error(413, too_large)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(413, too_large)
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

    app = web.Application(client_max_size=limits.max_request_bytes)
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
    """Serve the helper on host:port (0: a free port) while the block runs; yields its base URL."""
    runner = web.AppRunner(create_app(config), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        scheme = "https" if ssl_context is not None else "http"
        yield f"{scheme}://{format_endpoint(str(bound_host), int(bound_port))}"
    finally:
        await runner.cleanup()


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

    with asyncio.Runner(loop_factory=GuardedEventLoop) as runner:
        runner.run(main())
