"""The runner: targets x checks -> measurements, streamed to a sink as they complete.

Each target runs its own pipeline (DNS -> TCP -> TLS -> HTTP); every network operation takes a
slot of one semaphore, so the wall time of a run is bounded by its slowest targets, not by the
sum of targets. The control sites are measured first, alone: when every control has failed, the
network is down and no target is measured, so a dead network ends a run quickly and nothing in
it can be read as censorship. The targets are then taken by a pool of workers (CROWD_PER_SLOT
per semaphore slot), so a test list of any length holds a bounded number of targets in memory.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import weakref
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from probe.checks import CheckContext, Stopwatch, http, tcp, tls
from probe.checks.dns import resolve
from probe.codec import CodecError, decode_details
from probe.failures import describe
from probe.model import (
    Connectivity,
    Details,
    DifferentialKind,
    DnsQuery,
    HttpTransaction,
    Layer,
    Measurement,
    Observation,
    Operation,
    RawCapture,
    Target,
    TargetKind,
    TcpConnect,
)
from probe.resolvers import ResolverSpec

FLUSH_INTERVAL = 0.2  # seconds: how long a finished measurement may wait before it is committed

# How the writer retries a batch the store refused (the database locked by another process for
# longer than the store's own busy timeout: a `probe merge --into` it, a sqlite3 shell, a backup):
# after 0.5 s, then twice as long each time up to 8 s, for as long as the run measures and then
# for STORE_PATIENCE more seconds before what is still unsaved is reported as not stored.
RETRY_FIRST_DELAY = 0.5
RETRY_MAX_DELAY = 8.0
STORE_PATIENCE = 60.0
# A single measurement the store refused this many times while other batches were saved is a
# row the store cannot take (oversized, unencodable): it is reported, not retried for ever.
BAD_ROW_ATTEMPTS = 3

# Raw captures per run and layer: each runs a sniffer thread, and a handful of packets per
# technique is the evidence (a censor answers every blocked endpoint the same way).
RAW_EVIDENCE_BUDGET = 4
RAW_TCP_FAILURES = frozenset({"connection_refused", "connection_reset"})


class PacketEvidence(Protocol):
    """What the runner needs of probe.rawnet (the module satisfies it; tests pass a fake, since
    raw sockets need root)."""

    async def dns_packet_evidence(
        self,
        resolver_ip: str,
        port: int,
        qname: str,
        timeout: float,  # noqa: ASYNC109 (how long the capture listens: part of what it measures)
        window: float,
    ) -> dict[str, Any]: ...

    async def tcp_reset_evidence(
        self,
        address: str,
        port: int,
        payload: bytes | None,
        timeout: float,  # noqa: ASYNC109 (as above)
    ) -> dict[str, Any]: ...


def _rawnet() -> PacketEvidence:
    """probe.rawnet, imported when the first capture starts (it imports scapy only then)."""
    import probe.rawnet

    return probe.rawnet


# Targets measured at once per semaphore slot: enough to keep every slot busy while some targets
# wait on a timeout, few enough that memory is bounded whatever the length of the test list.
CROWD_PER_SLOT = 2

# Ports where a protocol allowlist has been seen (REFERENCE.md: "on ports 53/80/443 only flows
# whose first data looks like DNS/HTTP/TLS pass"); TCP to 53 is not in the catalog.
PROTOCOL_PROBE_PORTS = frozenset({80, 443})

# Failures that a censor's interference looks like (as opposed to a certificate problem): when a
# handshake or request to the target name ends so, the same address is tried with a harmless name.
# The same server completing with the harmless name proves the name is what was targeted
# (REFERENCE.md: "The same IP with a harmless SNI completes the handshake: an A/B test").
INTERFERENCE_FAILURES = frozenset(
    {"connection_reset", "generic_timeout_error", "eof_error", "connection_aborted"}
)


# Event loops whose default executor the runner has sized (see _size_lookup_threads).
_SIZED_LOOPS: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def _size_lookup_threads(concurrency: int) -> None:
    """Give the running loop a default executor as wide as the run's concurrency (never narrower
    than asyncio's own cap, 32), once per loop.

    The system resolver's getaddrinfo runs in that executor, which asyncio sizes min(32, CPUs + 4)
    (6 threads on two CPUs). A query the network drops holds its thread for the C library's own
    timeout (resolv.conf: 5 s x 2 attempts by default), long after the DNS check gave up, so a
    few dropped names starved every lookup queued behind them: those timed out in the queue and
    read as DNS blocking of names nobody blocked (found in the censorship lab, dns_drop).
    Threads are started only as lookups need them."""
    loop = asyncio.get_running_loop()
    if loop in _SIZED_LOOPS:
        return
    loop.set_default_executor(
        ThreadPoolExecutor(max_workers=max(concurrency, 32), thread_name_prefix="probe-lookup")
    )
    _SIZED_LOOPS.add(loop)


class MeasurementSink(Protocol):
    """Where finished measurements go (the store, in the CLI). Called with small batches."""

    def save_measurements(self, batch: Sequence[Measurement]) -> None: ...


@dataclass(frozen=True, slots=True)
class RunPlan:
    """What one run does and with what limits."""

    targets: Sequence[Target]
    controls: Sequence[Target]
    resolvers: Sequence[ResolverSpec]
    context: CheckContext = field(default_factory=CheckContext)
    concurrency: int = 256
    max_addresses: int = 4
    # The harmless name of the SNI and Host A/B tests: a name no censor has reason to target.
    differential_name: str = "example.com"
    # Raw-packet evidence (probe.rawnet: IP TTL / IP-ID of DNS answers and of TCP resets), when
    # the process may open raw sockets; at most RAW_EVIDENCE_BUDGET captures per run and layer.
    raw_evidence: bool = False
    # Who takes the captures: probe.rawnet unless given (a test's fake).
    rawnet: PacketEvidence | None = None
    # How long the end of a run keeps retrying measurements the store refused (seconds).
    store_patience: float = STORE_PATIENCE

    def packet_evidence(self) -> PacketEvidence:
        return self.rawnet if self.rawnet is not None else _rawnet()


@dataclass(frozen=True, slots=True)
class TargetResult:
    """How far one target got: the furthest layer that succeeded, and the first failure."""

    target: Target
    reached: Layer | None
    failure: str | None
    failed_layer: Layer | None
    measurements: int


@dataclass(slots=True)
class RunOutcome:
    """The result of a run, for the CLI to store and print."""

    connectivity: Connectivity = Connectivity.UNKNOWN
    results: list[TargetResult] = field(default_factory=list)
    controls: list[TargetResult] = field(default_factory=list)
    measurements: int = 0
    interrupted: bool = False
    # Measurements taken but not stored (the store refused them until the patience ran out),
    # and the store's reasons: a run with any is incomplete and says so.
    unsaved: int = 0
    store_errors: list[str] = field(default_factory=list)


Progress = Callable[[int, int], None]


@dataclass(slots=True)
class _Batch:
    measurements: list[Measurement]
    attempts: int = 0
    due: float = 0.0
    error: str = ""
    # How many saves had succeeded when this batch (or the one it was split from) first failed.
    mark: int | None = None


class _Writer:
    """Buffers measurements and saves them every FLUSH_INTERVAL (group commit) from a thread of
    its own, so that a store waiting for a lock never blocks the event loop (every check in
    flight would freeze and end as a false timeout).

    A batch the store refuses is retried with bounded backoff, never dropped: split in halves, so
    that one row the store cannot take is isolated and the rest saved. What is still unsaved when
    the patience runs out is counted in `lost`, with the store's reason.
    """

    def __init__(self, sink: MeasurementSink) -> None:
        self.sink = sink
        self.pending: list[Measurement] = []
        self.retry: list[_Batch] = []
        self.saved = 0
        self.successes = 0
        self.lost = 0
        self.reasons: list[str] = []
        self.stopping = False
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="probe-store")

    def add(self, measurement: Measurement) -> None:
        self.pending.append(measurement)

    async def run(self) -> None:
        while not self.stopping:
            await asyncio.sleep(FLUSH_INTERVAL)
            await self.flush()

    async def flush(self) -> None:
        """Save what is pending, then each refused batch whose backoff has passed."""
        if self.pending:
            batch, self.pending = _Batch(self.pending), []
            await self._save(batch)
        now = asyncio.get_running_loop().time()
        due = [b for b in self.retry if b.due <= now]
        self.retry = [b for b in self.retry if b.due > now]
        for batch in due:
            await self._save(batch)

    async def close(self, patience: float) -> None:
        """Save everything, retrying refused batches for up to `patience` seconds; what is left
        is counted as lost."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + patience
        try:
            await self.flush()
            while self.retry and loop.time() < deadline:
                wait = min(b.due for b in self.retry) - loop.time()
                await asyncio.sleep(max(0.0, min(wait, deadline - loop.time())))
                await self.flush()
        finally:
            for batch in self.retry:
                self._give_up(batch)
            self.retry = []
            self._thread.shutdown(wait=False)

    async def _save(self, batch: _Batch) -> None:
        loop = asyncio.get_running_loop()
        try:
            save = self.sink.save_measurements
            await loop.run_in_executor(self._thread, save, batch.measurements)
        except Exception as exc:  # any refusal: the batch is kept, and retried
            self._refused(batch, " ".join(str(exc).split()) or type(exc).__name__, loop.time())
        else:
            self.saved += len(batch.measurements)
            self.successes += 1

    def _refused(self, batch: _Batch, error: str, now: float) -> None:
        attempts = batch.attempts + 1
        delay = min(RETRY_FIRST_DELAY * 2 ** (attempts - 1), RETRY_MAX_DELAY)
        mark = self.successes if batch.mark is None else batch.mark
        rows = batch.measurements
        if len(rows) > 1:
            half = len(rows) // 2
            parts = [rows[:half], rows[half:]]
        else:
            # Refused again and again while other saves went through: the store cannot take it.
            if attempts >= BAD_ROW_ATTEMPTS and self.successes > mark:
                batch.error = error
                self._give_up(batch)
                return
            parts = [rows]
        for part in parts:
            self.retry.append(_Batch(part, attempts, now + delay, error, mark))

    def _give_up(self, batch: _Batch) -> None:
        self.lost += len(batch.measurements)
        if batch.error and batch.error not in self.reasons:
            self.reasons.append(batch.error)


# How far into a target's pipeline each layer is.
_DEPTH = {Layer.DNS: 0, Layer.TCP: 1, Layer.TLS: 2, Layer.HTTP: 3}


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


_Capture = Callable[[], Awaitable[dict[str, Any]]]
D = TypeVar("D", bound=Details)


def _raw_record(layer: Layer, evidence: dict[str, Any]) -> RawCapture:
    """probe.rawnet's evidence as the RawCapture record (through the codec, which checks it)."""
    try:
        record = decode_details(layer, {**evidence, "differential_kind": DifferentialKind.RAW})
    except CodecError as exc:
        return RawCapture(available=False, note=f"capture not recorded: {exc}")
    assert isinstance(record, RawCapture)
    return record


class _RawEvidence:
    """The run's raw-packet captures, taken after the measurements so that a sniffer and scapy's
    start-up never perturb the timings they would explain. At most RAW_EVIDENCE_BUDGET per layer
    (refused connects to a forged address must not use up what DNS injection needs), two at once."""

    def __init__(self) -> None:
        self.left = {Layer.DNS: RAW_EVIDENCE_BUDGET, Layer.TCP: RAW_EVIDENCE_BUDGET}
        self.pending: list[tuple[_TargetRun, Observation[Details], _Capture]] = []
        self.seen: set[tuple[object, ...]] = set()

    def want(
        self,
        target_run: _TargetRun,
        observation: Observation[Details],
        key: tuple[object, ...],
        capture: _Capture,
    ) -> None:
        """Queue `capture` unless the layer's budget is spent or `key` (the address and port, or
        the resolver and name) was captured already: the same packets twice prove nothing new."""
        if key not in self.seen and self.left.get(observation.layer, 0) > 0:
            self.seen.add(key)
            self.left[observation.layer] -= 1
            self.pending.append((target_run, observation, capture))

    async def capture(self) -> None:
        slots = asyncio.Semaphore(2)

        async def one(
            target_run: _TargetRun, observation: Observation[Details], capture: _Capture
        ) -> None:
            detail: str | None = None
            async with slots:
                watch = Stopwatch()
                try:
                    record = _raw_record(observation.layer, await capture())
                except Exception as exc:
                    # A capture that breaks (a scapy or kernel surprise) is recorded, and the
                    # run goes on to its verdicts with every measurement already stored.
                    failure, detail = describe(exc)
                    record = RawCapture(available=False, failure=failure, note=repr(exc))
            target_run.record(
                Observation(
                    layer=observation.layer,
                    endpoint=observation.endpoint,
                    started_at=watch.started_at,
                    duration_ms=watch.elapsed_ms(),
                    failure=record.failure,
                    failure_detail=detail,
                    details=record,
                )
            )

        pending, self.pending = self.pending, []
        async with asyncio.TaskGroup() as group:
            for item in pending:
                group.create_task(one(*item))


class _TargetRun:
    """One target's pipeline; records what it measured and how far it got."""

    def __init__(
        self,
        target: Target,
        plan: RunPlan,
        limiter: asyncio.Semaphore,
        writer: _Writer,
        run_id: str,
    ) -> None:
        self.target = target
        self.plan = plan
        self.limiter = limiter
        self.writer = writer
        self.run_id = run_id
        self.count = 0
        self.reached: Layer | None = None
        self.failure: str | None = None
        self.failed_layer: Layer | None = None
        self.raw: _RawEvidence | None = None

    def _want_raw_evidence(self, observation: Observation[Details]) -> None:
        """Queue a capture of the packets behind a suspicious result (an extra UDP answer, a
        refused or reset connect): their IP TTL and IP-ID tell an injected packet from the
        server's."""
        if self.raw is not None and observation.differential_kind is None:
            wanted = self._raw_capture(observation)
            if wanted is not None:
                self.raw.want(self, observation, *wanted)

    def _raw_capture(
        self, observation: Observation[Details]
    ) -> tuple[tuple[object, ...], _Capture] | None:
        """What to capture for `observation` (a key naming the endpoint, and the capture)."""
        details = observation.details
        context = self.plan.context
        if isinstance(details, DnsQuery) and details.second_answer:
            spec = next((r for r in self.plan.resolvers if r.spec == details.resolver), None)
            if spec is None or spec.transport != "udp" or not spec.address:
                return None
            resolver, port, query = spec.address, spec.port or 53, details.query
            timeout, window = context.timeouts.dns, context.dns_second_answer_window
            return (
                Layer.DNS,
                resolver,
                port,
                query,
            ), lambda: self.plan.packet_evidence().dns_packet_evidence(
                resolver, port, query, timeout, window
            )
        if isinstance(details, TcpConnect) and observation.failure in RAW_TCP_FAILURES:
            address, tcp_port = details.address, details.port
            connect = context.timeouts.connect
            return (
                Layer.TCP,
                address,
                tcp_port,
            ), lambda: self.plan.packet_evidence().tcp_reset_evidence(
                address, tcp_port, None, connect
            )
        return None

    def record(self, observation: Observation[Details]) -> None:
        target = self.target
        self.writer.add(Measurement(self.run_id, target.platform, target.name, observation))
        self.count += 1

    async def _check(
        self, call: Awaitable[Observation[D]], *, differential: bool = False, **annotations: Any
    ) -> Observation[D]:
        """Run one check under the semaphore and record it, with the runner's `annotations` set
        on its record (address_source, primary, differential_kind, target_sni, target_host). A
        differential measurement (the harmless-name half of an A/B test) is stored but does not
        count as the target's progress."""
        async with self.limiter:
            observation = await call
        if annotations:
            details = dataclasses.replace(observation.details, **annotations)
            observation = dataclasses.replace(observation, details=details)
        self.record(observation)
        if differential:
            return observation
        self._want_raw_evidence(observation)
        if observation.ok:
            # The furthest layer: a resolver still answering beside the connects (see
            # _addresses) may finish after them, and must not pull the target back to DNS.
            if self.reached is None or _DEPTH[observation.layer] > _DEPTH[self.reached]:
                self.reached = observation.layer
        elif self.failure is None:
            self.failure, self.failed_layer = observation.failure, observation.layer
        return observation

    def result(self) -> TargetResult:
        return TargetResult(self.target, self.reached, self.failure, self.failed_layer, self.count)

    async def _addresses(self, group: asyncio.TaskGroup) -> list[tuple[str, str]]:
        """(address, which resolver gave it): the primary resolver's answers first; when it gives
        nothing, the other resolvers' answers, so IP-level reachability is measured even where
        DNS is tampered with.

        Every resolver is asked at once, and the pipeline goes on as soon as the first resolver in
        order with an answer has it: the others (a DoH control the censor may null-route, a UDP
        resolver listening for a second answer) finish in `group` beside the connects instead of
        holding every target back by up to a DNS timeout (found with benchmarks/lab_benchmark.py).
        """
        host = self.target.host
        if _is_ip(host):
            return [(host, "literal")]
        context = self.plan.context
        lookups = [
            group.create_task(self._check(resolve(host, spec, context), primary=i == 0))
            for i, spec in enumerate(self.plan.resolvers)
        ]
        for spec, lookup in zip(self.plan.resolvers, lookups, strict=True):
            observation = await lookup
            found = [(a, spec.spec) for a in observation.details.addresses]
            if found:
                return found[: self.plan.max_addresses]
        return []

    async def run(self) -> None:
        # The group holds the resolvers still answering while the pipeline goes on; leaving it
        # waits for them (and a cancelled run cancels them).
        async with asyncio.TaskGroup() as group:
            await self._pipeline(group)

    async def _pipeline(self, group: asyncio.TaskGroup) -> None:
        target, context = self.target, self.plan.context
        addresses = await self._addresses(group)
        if target.kind is TargetKind.DNS or not addresses:
            return
        pairs = [(address, source, port) for address, source in addresses for port in target.ports]
        connects = await asyncio.gather(
            *(
                self._check(tcp.connect(address, port, context), address_source=source)
                for address, source, port in pairs
            )
        )
        open_pairs = [pair for pair, obs in zip(pairs, connects, strict=True) if obs.ok]
        probes = [self._protocol_probe(open_pairs, port) for port in target.ports]
        if target.kind is TargetKind.TCP:
            await asyncio.gather(*probes)
        elif target.kind is TargetKind.HTTP:
            await asyncio.gather(*probes, *(self._fetch(open_pairs, port) for port in target.ports))
        elif target.kind is TargetKind.HTTPS:
            port = target.ports[0]
            candidates = [(a, s) for a, s, p in open_pairs if p == port]
            handshakes = await asyncio.gather(
                *(
                    self._check(tls.handshake(a, port, target.host, context), address_source=s)
                    for a, s in candidates
                )
            )
            verified = list(zip(candidates, handshakes, strict=True))
            good = [(a, s, port) for (a, s), obs in verified if obs.ok]
            await asyncio.gather(
                *probes,
                self._fetch(good, port),
                *(
                    self._sni_differential(a, s, port)
                    for (a, s), obs in verified
                    if obs.failure in INTERFERENCE_FAILURES
                ),
            )

    async def _fetch(self, open_pairs: list[tuple[str, str, int]], port: int) -> None:
        """One HTTP request per port, to the first address that accepted a connection there."""
        for address, source, open_port in open_pairs:
            if open_port == port:
                url = self.target.url_for_port(port)
                method = self.target.method
                fetch = http.fetch(
                    url,
                    self.plan.context,
                    address=address,
                    method=method,
                    redirects=self._redirects(url),
                )
                observation = await self._check(fetch, address_source=source)
                if self.target.kind is TargetKind.HTTP and _looks_interfered(observation):
                    await self._host_differential(url, address, source)
                return

    def _redirects(self, url: str) -> http.RedirectPolicy:
        """The fetch's redirect policy: a host a redirect names is looked up through the
        configured resolvers, each lookup stored as a DNS measurement of this target."""

        async def addresses(host: str) -> list[str]:
            context = self.plan.context
            for spec in self.plan.resolvers:
                # Not under the limiter: the fetch asking holds a slot already.
                observation = await resolve(host, spec, context)
                details = dataclasses.replace(observation.details, redirect_from=url)
                self.record(dataclasses.replace(observation, details=details))
                if details.addresses:
                    return list(details.addresses[: self.plan.max_addresses])
            return []

        return http.RedirectPolicy(resolve=addresses)

    async def _protocol_probe(self, open_pairs: list[tuple[str, str, int]], port: int) -> None:
        """On 80 and 443, where Iran's protocol allowlist applies, one flow of non-HTTP/TLS
        bytes to the first open address: dropped after the first data means an allowlist."""
        if port not in PROTOCOL_PROBE_PORTS:
            return
        for address, source, open_port in open_pairs:
            if open_port == port:
                await self._check(
                    tcp.protocol_probe(address, port, self.plan.context),
                    differential=True,
                    address_source=source,
                )
                return

    async def _sni_differential(self, address: str, source: str, port: int) -> None:
        """The same address, the harmless SNI: completing the handshake (even with a name
        mismatch) while the target SNI was reset or stalled proves SNI-based filtering."""
        name = self.plan.differential_name
        await self._check(
            tls.handshake(address, port, name, self.plan.context),
            differential=True,
            differential_kind=DifferentialKind.SNI,
            target_sni=self.target.host,
            address_source=source,
        )

    async def _host_differential(self, url: str, address: str, source: str) -> None:
        """The same address and URL with a harmless Host header (plain HTTP only)."""
        fetch = http.fetch(
            url,
            self.plan.context,
            address=address,
            method=self.target.method,
            host_header=self.plan.differential_name,
            redirects=self._redirects(url),
        )
        await self._check(
            fetch,
            differential=True,
            differential_kind=DifferentialKind.HOST,
            target_host=self.target.host,
            address_source=source,
        )


def _looks_interfered(observation: Observation[HttpTransaction]) -> bool:
    """A plain-HTTP answer worth an A/B test: cut off before the response, or refused with a
    4xx/5xx status. A body cut mid-read is not: the request got its answer, and the verdict rules
    pair only failures before the response with a harmless Host (a throttled download would
    otherwise pay a second http timeout for nothing)."""
    if observation.failure is not None:
        return (
            observation.failure in INTERFERENCE_FAILURES
            and observation.failed_operation is not Operation.READ
        )
    status = observation.details.status
    return status is not None and status >= 400


async def execute(
    plan: RunPlan,
    run_id: str,
    sink: MeasurementSink,
    *,
    outcome: RunOutcome | None = None,
    progress: Progress | None = None,
) -> RunOutcome:
    """Measure every target and control of `plan`, streaming measurements to `sink`.

    `outcome` is filled in as the run goes, so a caller that passes its own still has the
    connectivity, results and count of saved measurements when the run is cancelled (Ctrl-C):
    every finished measurement is flushed to the sink before the cancellation propagates. What
    the sink still refused after `plan.store_patience` is counted in `outcome.unsaved`.
    """
    outcome = outcome if outcome is not None else RunOutcome()
    _size_lookup_threads(plan.concurrency)
    limiter = asyncio.Semaphore(plan.concurrency)
    writer = _Writer(sink)
    total = len(plan.targets) + len(plan.controls)
    done = 0
    raw = _RawEvidence() if plan.raw_evidence else None
    # Filled in as each target finishes (a TargetResult is small; a _TargetRun, its pipeline and
    # its task exist only while the target is measured).
    results: list[TargetResult | None] = [None] * len(plan.targets)
    controls: list[TargetResult | None] = [None] * len(plan.controls)

    async def measure(
        target: Target, into: list[TargetResult | None], index: int, with_raw: bool
    ) -> None:
        nonlocal done
        target_run = _TargetRun(target, plan, limiter, writer, run_id)
        target_run.raw = raw if with_raw else None
        try:
            await target_run.run()
        finally:
            into[index] = target_run.result()
            done += 1
            if progress is not None:
                progress(done, total)

    async def crowd(queue: Iterator[tuple[int, Target]]) -> None:
        # One of a bounded pool of workers taking the next target when the last is done: a
        # test list of 200,000 names must not become 200,000 waiting tasks (1.5 GB).
        for index, target in queue:
            await measure(target, results, index, True)

    flusher = asyncio.create_task(writer.run())
    try:
        # Controls first, alone: with the crowd beside them they would queue for the same
        # semaphore slots and uplink, and a run whose own load starved its controls would read
        # as "no connectivity". A control counts as reached only past DNS: a resolver that
        # answers while nothing can be connected to is not a working network.
        if plan.controls:
            async with asyncio.TaskGroup() as group:
                for index, control in enumerate(plan.controls):
                    group.create_task(measure(control, controls, index, False))
            reached = (r for r in controls if r is not None)
            ok = any(r.reached not in (None, Layer.DNS) for r in reached)
            outcome.connectivity = Connectivity.OK if ok else Connectivity.NONE
        if outcome.connectivity is not Connectivity.NONE and plan.targets:
            queue = iter(enumerate(plan.targets))
            workers = min(len(plan.targets), max(1, plan.concurrency) * CROWD_PER_SLOT)
            async with asyncio.TaskGroup() as group:
                for _ in range(workers):
                    group.create_task(crowd(queue))
        if raw is not None and outcome.connectivity is not Connectivity.NONE:
            await raw.capture()
    except asyncio.CancelledError:
        outcome.interrupted = True
        raise
    finally:
        writer.stopping = True
        await asyncio.wait([flusher])  # a save in its thread is finished, never abandoned
        await writer.close(plan.store_patience)
        outcome.measurements = writer.saved
        outcome.unsaved = writer.lost
        outcome.store_errors = writer.reasons
        outcome.results = _filled(results, plan.targets)
        outcome.controls = _filled(controls, plan.controls)
    return outcome


def _filled(results: list[TargetResult | None], targets: Sequence[Target]) -> list[TargetResult]:
    """Each target's result; a target never started (no connectivity, interrupted) reached
    nothing."""
    return [
        r if r is not None else TargetResult(t, None, None, None, 0)
        for r, t in zip(results, targets, strict=True)
    ]
