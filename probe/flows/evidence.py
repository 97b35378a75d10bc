"""A run's raw-packet evidence: which suspicious results get a capture of their packets (an
extra UDP DNS answer, a refused or reset connect), within a budget, taken after the measurements.

The captures come from the plan's packet-evidence taker (probe.rawnet, or a test's fake); their
IP TTL and IP-ID tell an injected packet from the server's own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from probe.checks import Stopwatch
from probe.codec import CodecError, decode_details
from probe.failures import describe
from probe.model import (
    Details,
    DifferentialKind,
    DnsQuery,
    Layer,
    Observation,
    RawCapture,
    TcpConnect,
)
from probe.plan import PacketEvidence, RunPlan

# Raw captures per run and layer: each runs a sniffer thread, and a handful of packets per
# technique is the evidence (a censor answers every blocked endpoint the same way).
RAW_EVIDENCE_BUDGET = 4
RAW_TCP_FAILURES = frozenset({"connection_refused", "connection_reset"})

_Capture = Callable[[], Awaitable[dict[str, Any]]]


class Measured(Protocol):
    """The target a capture belongs to (a flow's TargetRun): its plan, and where it records."""

    @property
    def plan(self) -> RunPlan: ...

    def record(self, observation: Observation[Details]) -> None: ...


def _raw_record(layer: Layer, evidence: dict[str, Any]) -> RawCapture:
    """probe.rawnet's evidence as the RawCapture record (through the codec, which checks it)."""
    try:
        record = decode_details(layer, {**evidence, "differential_kind": DifferentialKind.RAW})
    except CodecError as exc:
        return RawCapture(available=False, note=f"capture not recorded: {exc}")
    assert isinstance(record, RawCapture)
    return record


def _wanted(
    plan: RunPlan, rawnet: PacketEvidence, observation: Observation[Details]
) -> tuple[tuple[object, ...], _Capture] | None:
    """What to capture for `observation` (a key naming the endpoint, and the capture)."""
    details = observation.details
    context = plan.context
    if isinstance(details, DnsQuery) and details.second_answer:
        spec = next((r for r in plan.resolvers if r.spec == details.resolver), None)
        if spec is None or spec.transport != "udp" or not spec.address:
            return None
        resolver, port, query = spec.address, spec.port or 53, details.query
        timeout, window = context.timeouts.dns, context.dns_second_answer_window
        return (Layer.DNS, resolver, port, query), lambda: rawnet.dns_packet_evidence(
            resolver, port, query, timeout, window
        )
    if isinstance(details, TcpConnect) and observation.failure in RAW_TCP_FAILURES:
        address, tcp_port = details.address, details.port
        connect = context.timeouts.connect
        return (Layer.TCP, address, tcp_port), lambda: rawnet.tcp_reset_evidence(
            address, tcp_port, None, connect
        )
    return None


class RawEvidence:
    """The run's raw-packet captures, taken after the measurements so that a sniffer and scapy's
    start-up never perturb the timings they would explain. At most RAW_EVIDENCE_BUDGET per layer
    (refused connects to a forged address must not use up what DNS injection needs), two at once."""

    def __init__(self, rawnet: PacketEvidence) -> None:
        self.rawnet = rawnet
        self.left = {Layer.DNS: RAW_EVIDENCE_BUDGET, Layer.TCP: RAW_EVIDENCE_BUDGET}
        self.pending: list[tuple[Measured, Observation[Details], _Capture]] = []
        self.seen: set[tuple[object, ...]] = set()

    def consider(self, target: Measured, observation: Observation[Details]) -> None:
        """Queue a capture of the packets behind `observation` if it is suspicious, unless the
        layer's budget is spent or its endpoint (the address and port, or the resolver and name)
        was captured already: the same packets twice prove nothing new."""
        wanted = _wanted(target.plan, self.rawnet, observation)
        if wanted is None:
            return
        key, capture = wanted
        if key not in self.seen and self.left.get(observation.layer, 0) > 0:
            self.seen.add(key)
            self.left[observation.layer] -= 1
            self.pending.append((target, observation, capture))

    async def capture(self) -> None:
        slots = asyncio.Semaphore(2)

        async def one(
            target: Measured, observation: Observation[Details], capture: _Capture
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
            target.record(
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
