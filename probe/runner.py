"""The runner: targets x flows -> measurements, streamed to a sink as they complete.

Each target runs the flow of its kind (probe/flows: DNS -> TCP -> TLS -> HTTP as far as the kind
goes); every network operation takes a slot of one semaphore, so the wall time of a run is
bounded by its slowest targets, not by the sum of targets. The control sites are measured first,
alone: when every control has failed, the network is down and no target is measured, so a dead
network ends a run quickly and nothing in it can be read as censorship. The targets are then
taken by a pool of workers (CROWD_PER_SLOT per semaphore slot), so a test list of any length
holds a bounded number of targets in memory.
"""

from __future__ import annotations

import asyncio
import dataclasses
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from probe.checks.sessions import RunSessions
from probe.flows import TargetResult, TargetRun, flow_for
from probe.flows.evidence import RawEvidence
from probe.garbage import fewer_collections
from probe.model import Connectivity, Layer, Measurement, Speaks, Target
from probe.plan import RunPlan
from probe.stall import StallMarking, StallMonitor

__all__ = [
    "CROWD_PER_SLOT",
    "MeasurementSink",
    "Progress",
    "RunOutcome",
    "RunPlan",
    "TargetResult",
    "execute",
]

FLUSH_INTERVAL = 0.2  # seconds: how long a finished measurement may wait before it is committed

# How the writer retries a batch the store refused (the database locked by another process for
# longer than the store's own busy timeout: a `probe merge --into` it, a sqlite3 shell, a backup):
# after 0.5 s, then twice as long each time up to 8 s, for as long as the run measures and then
# for the plan's store_patience more seconds before what is still unsaved is reported as not
# stored.
RETRY_FIRST_DELAY = 0.5
RETRY_MAX_DELAY = 8.0
# A single measurement the store refused this many times while other batches were saved is a
# row the store cannot take (oversized, unencodable): it is reported, not retried for ever.
BAD_ROW_ATTEMPTS = 3

# Targets measured at once per semaphore slot: enough to keep every slot busy while some targets
# wait on a timeout, few enough that memory is bounded whatever the length of the test list.
CROWD_PER_SLOT = 2

# The cyclic garbage collector's first-generation threshold while a run measures (CPython's
# default is 700 allocations). A run allocates a few short-lived objects per socket event and
# almost no cycles, and with the default every 700th allocation started a collection, whose
# survivors soon forced full collections over every module and the plan: 13% of the probe's CPU
# on the loopback run benchmark (gc.callbacks timing: 1.1 s of 7.7 CPU-s), 0.2 s with this
# threshold and the start-up objects frozen (benchmarks/run_benchmark.py).
RUN_GC_THRESHOLD = 10_000

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
    # Targets whose measuring raised an unexpected error (a bug in the probe, not a network
    # outcome): "name: error" each. The other targets are measured and judged as usual.
    failed_targets: list[str] = field(default_factory=list)
    # The probe's own stalls (probe.stall): how many, and their seconds in all. Measurements
    # that overlapped one carry probe_stall_ms.
    stalls: int = 0
    stalled_seconds: float = 0.0


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
    with fewer_collections(RUN_GC_THRESHOLD):
        return await _execute(plan, run_id, sink, outcome, progress)


async def _execute(
    plan: RunPlan,
    run_id: str,
    sink: MeasurementSink,
    outcome: RunOutcome | None,
    progress: Progress | None,
) -> RunOutcome:
    outcome = outcome if outcome is not None else RunOutcome()
    _size_lookup_threads(plan.concurrency)
    limiter = asyncio.Semaphore(plan.concurrency)
    writer = _Writer(sink)
    stalls = StallMonitor()
    recorder = StallMarking(writer, stalls)
    total = len(plan.targets) + len(plan.controls)
    done = 0
    raw = RawEvidence(plan.rawnet) if plan.rawnet is not None else None
    # Filled in as each target finishes (a TargetResult is small; a TargetRun, its flow and
    # its task exist only while the target is measured).
    results: list[TargetResult | None] = [None] * len(plan.targets)
    controls: list[TargetResult | None] = [None] * len(plan.controls)

    async def measure(
        target: Target, into: list[TargetResult | None], index: int, with_raw: bool
    ) -> None:
        nonlocal done
        target_run = TargetRun(
            target, plan, limiter, recorder, run_id, sessions, raw if with_raw else None
        )
        try:
            await target_run.run(flow_for(target.kind))
        except Exception as error:  # one target's bug must not end the run
            outcome.failed_targets.append(f"{target.name}: {_error_line(error)}")
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

    # One HTTP session for every fetch of the run (each fetch still opens its own connection),
    # one DoH session for every lookup (its connections kept and reused): aiohttp loads in a
    # thread from here on, while the first checks run (probe/checks/sessions.py).
    sessions = RunSessions(plan.context)
    sessions.start()
    flusher = asyncio.create_task(writer.run())
    watcher = asyncio.create_task(stalls.watch())
    try:
        # Controls first, alone: with the crowd beside them they would queue for the same
        # semaphore slots and uplink, and a run whose own load starved its controls would read
        # as "no connectivity". A control counts as reached only past DNS: a resolver that
        # answers while nothing can be connected to is not a working network.
        if plan.controls:
            async with asyncio.TaskGroup() as group:
                for index, control in enumerate(plan.controls):
                    group.create_task(measure(control, controls, index, False))
            reached = [r for r in controls if r is not None]
            ok = any(r.reached not in (None, Layer.DNS) for r in reached)
            outcome.connectivity = Connectivity.OK if ok else Connectivity.NONE
            plan = dataclasses.replace(plan, differential_names=passed_names(reached))
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
        watcher.cancel()
        outcome.stalls, outcome.stalled_seconds = stalls.count, round(stalls.seconds, 3)
        await sessions.close()
        writer.stopping = True
        await asyncio.wait([flusher])  # a save in its thread is finished, never abandoned
        await writer.close(plan.store_patience)
        outcome.measurements = writer.saved
        outcome.unsaved = writer.lost
        outcome.store_errors = writer.reasons
        outcome.results = _filled(results, plan.targets)
        outcome.controls = _filled(controls, plan.controls)
    return outcome


def passed_names(controls: Sequence[TargetResult]) -> tuple[str, ...]:
    """The control sites whose TLS handshake with their own name completed, in catalog order:
    names this network demonstrably lets through, the harmless half of the run's A/B tests (a
    fixed name such as example.com fails them under an SNI allowlist that omits it)."""
    names = (
        r.target.host
        for r in controls
        if r.target.protocol is Speaks.TLS and r.reached in (Layer.TLS, Layer.HTTP)
    )
    return tuple(dict.fromkeys(n.lower().rstrip(".") for n in names))


def _filled(results: list[TargetResult | None], targets: Sequence[Target]) -> list[TargetResult]:
    """Each target's result; a target never started (no connectivity, interrupted) reached
    nothing."""
    return [
        r if r is not None else TargetResult(t, None, None, None, 0)
        for r, t in zip(results, targets, strict=True)
    ]


def _error_line(error: BaseException) -> str:
    """One short line for an unexpected error; an ExceptionGroup by its first leaf."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    text = " ".join(str(error).split())[:160]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
