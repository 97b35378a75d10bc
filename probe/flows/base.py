"""What every flow shares: one target's measurement in one run (TargetRun), its checks under the
run's semaphore, the addresses it resolves, its connects and protocol probes, the HTTP fetch and
the A/B controls (the same address with a harmless SNI or Host).

A flow (probe/flows/tcp.py, http.py, https.py, dns.py) is the order in which a kind of target
takes these steps; a TargetRun records every observation, tracks how far the target got and
hands suspicious results to the run's raw-packet evidence.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from probe.addresses import is_ip
from probe.checks import tcp, tls
from probe.checks.dns import resolve
from probe.checks.sessions import RunSessions
from probe.flows.evidence import RawEvidence
from probe.model import (
    Details,
    DifferentialKind,
    DnsQuery,
    HttpTransaction,
    Layer,
    Measurement,
    Observation,
    Speaks,
    Target,
    TargetKind,
    TcpConnect,
    TlsHandshake,
)
from probe.plan import RunPlan
from probe.resolvers import ResolverSpec

if TYPE_CHECKING:
    # Loaded in a thread while the first checks run (RunSessions); a fetch imports it once its
    # session is open, from sys.modules.
    from probe.checks import http

# Ports where a protocol allowlist has been seen (Iran, 2020: on TCP 53/80/443 only flows whose
# first data looks like DNS/HTTP/TLS pass; Bock et al., FOCI 2020, https://www.usenix.org/conference/foci20/presentation/bock);
# TCP to 53 is not in the catalog.
PROTOCOL_PROBE_PORTS = frozenset({80, 443})

# Failures that a censor's interference looks like (as opposed to a certificate problem): when a
# handshake or request to the target name ends so, the same address is tried with a harmless name.
# The same server completing with the harmless name proves the name is what was targeted
# (OONI's SNI blocking test compares the two: https://github.com/ooni/spec/blob/master/nettests/ts-024-sni-blocking.md).
INTERFERENCE_FAILURES = frozenset(
    {"connection_reset", "generic_timeout_error", "eof_error", "connection_aborted"}
)

# How far into a target's pipeline each layer is.
_DEPTH = {Layer.DNS: 0, Layer.TCP: 1, Layer.TLS: 2, Layer.HTTP: 3}

D = TypeVar("D", bound=Details)

# (address, which resolver gave it): "literal" for an address target.
Address = tuple[str, str]
# (address, which resolver gave it, port).
Endpoint = tuple[str, str, int]
# A TLS handshake with the target's SNI: (address, which resolver gave it) and what it saw.
Handshake = tuple[Address, Observation[TlsHandshake]]


class Recorder(Protocol):
    """Where a target's finished measurements go (the runner's writer)."""

    def add(self, measurement: Measurement) -> None: ...


@dataclass(frozen=True, slots=True)
class TargetResult:
    """How far one target got: the furthest layer that succeeded, and the first failure."""

    target: Target
    reached: Layer | None
    failure: str | None
    failed_layer: Layer | None
    measurements: int


@dataclass(frozen=True, slots=True)
class Fetched:
    """An HTTP fetch a flow made: its observation and where it went (for an A/B control)."""

    observation: Observation[HttpTransaction]
    url: str
    address: str
    source: str


class TargetRun:
    """One target's measurement in one run; records what it measured and how far it got."""

    def __init__(
        self,
        target: Target,
        plan: RunPlan,
        limiter: asyncio.Semaphore,
        recorder: Recorder,
        run_id: str,
        sessions: RunSessions,
        raw: RawEvidence | None = None,
    ) -> None:
        self.target = target
        self.plan = plan
        self.limiter = limiter
        self.recorder = recorder
        self.run_id = run_id
        self.raw = raw
        # The run's HTTP session (http.open_session: safe to share, a new connection per fetch),
        # so a fetch does not build and tear down a session, connector and resolver of its own;
        # and its DoH session (dns.open_doh_session): its connections are reused by every lookup
        # instead of two new TLS connections per name.
        self.sessions = sessions
        self.count = 0
        self.reached: Layer | None = None
        self.failure: str | None = None
        self.failed_layer: Layer | None = None
        # The other resolvers' lookups, still answering when the network's resolver (the first)
        # gave the addresses the flow measures; and those addresses.
        self._other_lookups: list[tuple[str, asyncio.Task[Observation[DnsQuery]]]] = []
        self._network_answers: set[str] = set()

    async def run(self, flow: Flow) -> None:
        # The group holds the resolvers still answering while the flow goes on; leaving it
        # waits for them (and a cancelled run cancels them).
        async with asyncio.TaskGroup() as group:
            await flow(self, group)
            if self.target.kind is not TargetKind.DNS:
                await self.reach_elsewhere()

    def record(self, observation: Observation[Details]) -> None:
        target = self.target
        self.recorder.add(Measurement(self.run_id, target.platform, target.name, observation))
        self.count += 1

    def result(self) -> TargetResult:
        return TargetResult(self.target, self.reached, self.failure, self.failed_layer, self.count)

    async def check(
        self, call: Awaitable[Observation[D]], *, differential: bool = False, **annotations: Any
    ) -> Observation[D]:
        """Run one check under the semaphore and record it (see settle)."""
        async with self.limiter:
            return await self.settle(call, differential=differential, **annotations)

    async def settle(
        self, call: Awaitable[Observation[D]], *, differential: bool = False, **annotations: Any
    ) -> Observation[D]:
        """Await one check (its slot of the limiter already held) and record it (see _checked)."""
        return self._checked(await call, differential, annotations)

    def _checked(
        self, observation: Observation[D], differential: bool, annotations: dict[str, Any]
    ) -> Observation[D]:
        """Record a check's observation, with the runner's `annotations` set on its record
        (address_source, primary, differential_kind, target_sni, target_host), and track the
        target's progress. A differential measurement (the harmless-name half of an A/B test, a
        repeat) is stored but does not count as the target's progress."""
        if annotations:
            details = dataclasses.replace(observation.details, **annotations)
            observation = dataclasses.replace(observation, details=details)
        self.record(observation)
        if differential:
            return observation
        if self.raw is not None and observation.differential_kind is None:
            # The packets behind a suspicious result (an extra UDP answer, a refused or reset
            # connect): their IP TTL and IP-ID tell an injected packet from the server's.
            self.raw.consider(self, observation)
        if observation.ok:
            # The furthest layer: a resolver still answering beside the connects (see
            # addresses) may finish after them, and must not pull the target back to DNS.
            if self.reached is None or _DEPTH[observation.layer] > _DEPTH[self.reached]:
                self.reached = observation.layer
        elif self.failure is None:
            self.failure, self.failed_layer = observation.failure, observation.layer
        return observation

    async def addresses(self, group: asyncio.TaskGroup) -> list[Address]:
        """(address, which resolver gave it): the primary resolver's answers first; when it gives
        nothing, the other resolvers' answers, so IP-level reachability is measured even where
        DNS is tampered with.

        Every resolver is asked at once, and the flow goes on as soon as the first resolver in
        order with an answer has it: the others (a DoH control the censor may null-route, a UDP
        resolver listening for a second answer) finish in `group` beside the connects instead of
        holding every target back by up to a DNS timeout (found with benchmarks/lab_benchmark.py).
        """
        host = self.target.host
        if is_ip(host):
            return [(host, "literal")]
        lookups = [
            group.create_task(self._lookup(host, spec, primary=i == 0))
            for i, spec in enumerate(self.plan.resolvers)
        ]
        for i, (spec, lookup) in enumerate(zip(self.plan.resolvers, lookups, strict=True)):
            observation = await lookup
            found = [(a, spec.spec) for a in observation.details.addresses]
            if found:
                if i == 0:
                    self._network_answers = {a for a, _ in found}
                    self._other_lookups = [
                        (other.spec, task)
                        for other, task in zip(self.plan.resolvers[1:], lookups[1:], strict=True)
                    ]
                return found[: self.plan.max_addresses]
        return []

    async def _lookup(
        self, host: str, spec: ResolverSpec, *, primary: bool
    ) -> Observation[DnsQuery]:
        """One resolver's lookup of `host` as a check; a DoH lookup waits for the run's DoH
        session first (aiohttp may still be loading), outside the check and its slot."""
        doh = await self._doh_session(spec)
        return await self.check(
            resolve(host, spec, self.plan.context, doh_session=doh), primary=primary
        )

    async def _doh_session(self, spec: ResolverSpec) -> http.Session | None:
        return await self.sessions.doh() if spec.transport == "doh" else None

    async def reach_elsewhere(self) -> None:
        """IP-level reachability of the addresses only the other resolvers gave, once the flow
        has measured the network resolver's: a connect to each on every port, and a TLS
        handshake with the target's name where it speaks TLS. When the network's resolver lies,
        this is the true address, what a user who changed resolver reaches; the analysis reports
        it beside the network's DNS verdict (and a valid handshake makes a plain resolver's
        answer a control). Not the target's progress: the flow's own attempts are."""
        extra: list[Address] = []
        for source, lookup in self._other_lookups:
            observation = await lookup
            for a in observation.details.addresses:
                if a not in self._network_answers and all(a != seen for seen, _ in extra):
                    extra.append((a, source))
        if not extra:
            return
        target, context = self.target, self.plan.context
        pairs = [(a, s, p) for a, s in extra[: self.plan.max_addresses] for p in target.ports]
        connects = await asyncio.gather(
            *(
                self.check(tcp.connect(a, p, context), differential=True, address_source=s)
                for a, s, p in pairs
            )
        )
        if target.kind is TargetKind.HTTPS or target.protocol is Speaks.TLS:
            port = target.ports[0]
            await asyncio.gather(
                *(
                    self.check(
                        tls.handshake(a, p, target.host, context),
                        differential=True,
                        address_source=s,
                    )
                    for (a, s, p), obs in zip(pairs, connects, strict=True)
                    if obs.ok and p == port
                )
            )

    async def connect(self, addresses: list[Address], group: asyncio.TaskGroup) -> list[Endpoint]:
        """A TCP connect to every address on every port of the target, all at once; the
        endpoints that accepted. Each gets a repeat (`attempt` 2) in `group`, beside the flow's
        next steps: one connect per run cannot tell a path that drops some SYNs or some
        connections from a clean one (see connect_twice)."""
        pairs = [(a, source, port) for a, source in addresses for port in self.target.ports]
        connects = await asyncio.gather(
            *(self.connect_twice(address, port, source, group) for address, source, port in pairs)
        )
        return [pair for pair, obs in zip(pairs, connects, strict=True) if obs.ok]

    async def connect_twice(
        self, address: str, port: int, source: str, group: asyncio.TaskGroup
    ) -> Observation[TcpConnect]:
        """The flow's connect to one endpoint and, at the same moment, its repeat: a second plain
        connect (its own source port, so its own SYNs). The flow goes on with the first; the
        repeat ends in `group` and is not the target's progress: the analysis reads the two
        attempts' failures and connect times together (intermittent interference).

        The pair holds one slot of the limiter, released when both have ended: the repeat is
        part of the connect step. Started one after the other, or each in a slot of its own,
        a blackholed endpoint cost its target two connect timeouts in a row, or waited for a
        slot the other blackholed connects held (200 blackholed targets at a 2 s connect
        timeout took 5.8 s: benchmarks/run_benchmark.py, blackhole)."""
        context = self.plan.context

        async def again() -> None:
            repeat = tcp.connect(address, port, context)
            await self.settle(repeat, differential=True, address_source=source, attempt=2)

        await self.limiter.acquire()
        pending = again()
        try:
            repeat = group.create_task(pending)
        except BaseException:  # the group is ending: no repeat, and the slot is free again
            pending.close()
            self.limiter.release()
            raise
        repeat.add_done_callback(lambda _task: self.limiter.release())
        return await self.settle(tcp.connect(address, port, context), address_source=source)

    async def protocol_probe(self, open_pairs: list[Endpoint], port: int) -> None:
        """On 80 and 443, where Iran's protocol allowlist applies, one flow of non-HTTP/TLS
        bytes to the first open address: dropped after the first data means an allowlist. The
        record says what the endpoint speaks (the catalog's word): for a raw endpoint those
        bytes stand for its own traffic, for the others they are the other half of an A/B test
        whose first half is the endpoint's own TLS handshake or HTTP request."""
        if port not in PROTOCOL_PROBE_PORTS:
            return
        speaks = self.target.protocol
        for address, source, open_port in open_pairs:
            if open_port == port:
                await self.check(
                    tcp.protocol_probe(address, port, self.plan.context),
                    differential=True,
                    address_source=source,
                    speaks=None if speaks is None else speaks.value,
                )
                return

    async def handshakes(
        self, open_pairs: list[Endpoint], port: int, hold: tls.HeldConnection | None = None
    ) -> list[Handshake]:
        """A TLS handshake with the target's name as SNI to every address open on `port`.

        hold: the first address's handshake offers what the HTTP check speaks (tls.HTTP1_ALPN)
        and, when it verifies, leaves its connection in `hold` for the target's HTTP request
        (fetch(..., hold=)); the caller releases it. The others offer a browser's ALPN."""
        target, context = self.target, self.plan.context
        candidates = [(a, s) for a, s, p in open_pairs if p == port]
        observations = await asyncio.gather(
            *(
                self.check(
                    tls.handshake(a, port, target.host, context)
                    if hold is None or i
                    else tls.handshake(
                        a, port, target.host, context, alpn=tls.HTTP1_ALPN, hold=hold
                    ),
                    address_source=s,
                )
                for i, (a, s) in enumerate(candidates)
            )
        )
        return list(zip(candidates, observations, strict=True))

    async def sni_differentials(self, handshakes: list[Handshake], port: int) -> None:
        """The A/B control of every handshake that looks interfered with (cut or stalled), each
        offering the ALPN list its handshake offered, so that the two differ in the SNI alone."""
        await asyncio.gather(
            *(
                self.sni_differential(a, s, port, obs.details.alpn_offered or tls.BROWSER_ALPN)
                for (a, s), obs in handshakes
                if obs.failure in INTERFERENCE_FAILURES
            )
        )

    async def fetch(
        self, open_pairs: list[Endpoint], port: int, hold: tls.HeldConnection | None = None
    ) -> Fetched | None:
        """One HTTP request on `port`, to the first address that accepted a connection there; a
        transfer target's body is read within the transfer bounds (bytes and seconds).

        hold: a connection handshakes(..., hold=) verified and kept, offered to the request (it
        rides it only when it was made to the same address, SNI and SSL context and is still
        open, silent and fresh; else the request dials its own). An empty one is not offered."""
        offer = hold if hold is not None and hold.held else None
        for address, source, open_port in open_pairs:
            if open_port == port:
                # Before the check: waiting for aiohttp to load is no part of the fetch.
                session = await self.sessions.http()
                url, fetch, annotations = self._fetch_call(session, address, port, offer)
                observation = await self.check(fetch, address_source=source, **annotations)
                return Fetched(observation, url, address, source)
        return None

    def _fetch_call(
        self,
        session: http.Session,
        address: str,
        port: int,
        held: tls.HeldConnection | None = None,
    ) -> tuple[str, Awaitable[Observation[HttpTransaction]], dict[str, Any]]:
        """The target's URL on `port`, its fetch from `address` (not started) and the fetch's
        annotations."""
        from probe.checks import http  # loaded: `session` is its

        context = self.plan.context
        transfer = self.target.transfer
        url = self.target.url_for_port(port)
        fetch = http.fetch(
            url,
            context,
            address=address,
            method=self.target.method,
            session=session,
            redirects=self.redirects(url),
            max_body_bytes=context.transfer_bytes if transfer else None,
            read_seconds=context.transfer_seconds if transfer else None,
            held=held,
        )
        return url, fetch, {"transfer": True} if transfer else {}

    def redirects(self, url: str) -> http.RedirectPolicy:
        """The fetch's redirect policy: a host a redirect names is looked up through the
        configured resolvers, each lookup stored as a DNS measurement of this target."""
        from probe.checks import http  # loaded: a fetch asks for it

        async def addresses(host: str) -> list[str]:
            context = self.plan.context
            for spec in self.plan.resolvers:
                # Not under the limiter: the fetch asking holds a slot already.
                doh = await self._doh_session(spec)
                observation = await resolve(host, spec, context, doh_session=doh)
                details = dataclasses.replace(observation.details, redirect_from=url)
                self.record(dataclasses.replace(observation, details=details))
                if details.addresses:
                    return list(details.addresses[: self.plan.max_addresses])
            return []

        return http.RedirectPolicy(resolve=addresses)

    async def sni_differential(
        self, address: str, source: str, port: int, alpn: Sequence[str] = tls.BROWSER_ALPN
    ) -> None:
        """The A/B control of a handshake: the same address and ALPN offer, the harmless SNI.
        Completing the handshake (even with a name mismatch) while the target SNI was reset or
        stalled proves SNI-based filtering."""
        name = self.plan.harmless_name(self.target.host)
        await self.check(
            tls.handshake(address, port, name, self.plan.context, alpn=alpn),
            differential=True,
            differential_kind=DifferentialKind.SNI,
            target_sni=self.target.host,
            address_source=source,
        )

    async def host_differential(self, fetched: Fetched) -> None:
        """The A/B control of a plain-HTTP request: the same address and URL with a harmless
        Host header."""
        session = await self.sessions.http()
        from probe.checks import http  # loaded: `session` is its

        fetch = http.fetch(
            fetched.url,
            self.plan.context,
            address=fetched.address,
            method=self.target.method,
            host_header=self.plan.harmless_name(self.target.host),
            session=session,
            redirects=self.redirects(fetched.url),
        )
        await self.check(
            fetch,
            differential=True,
            differential_kind=DifferentialKind.HOST,
            target_host=self.target.host,
            address_source=fetched.source,
        )


# A flow: the steps one kind of target takes, given its TargetRun and the task group that holds
# what may finish beside it (the resolvers still answering).
Flow = Callable[[TargetRun, asyncio.TaskGroup], Awaitable[None]]
