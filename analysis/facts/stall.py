"""Stall facts: which layers of a target were measured while the probe itself was stalled
(probe.stall: its event loop did not run, on an overloaded or paused machine). A timeout, a slow
connect, a slow download or a silent flow measured across such a stall is the probe's, not the
network's (the probe.stalled rule)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from analysis.facts.attempts import Attempt, Split
from probe.model import Details


@dataclass(frozen=True, slots=True)
class StallFacts:
    layers: tuple[str, ...]  # "dns", "tcp", "protocol", "tls", "http": each with a stalled attempt
    longest_ms: float | None  # the longest stall any of the target's attempts overlapped


def stall_facts(s: Split) -> StallFacts:
    """The target's own attempts (its resolvers, connects, protocol probes, handshakes and
    requests with its own name) that overlapped a stall. The harmless halves of the A/B tests
    and the control resolvers are left out: a stall there makes the A/B test or the control
    fail, which never reads as blocking."""
    groups: tuple[tuple[str, Sequence[Attempt[Details]]], ...] = (
        ("dns", s.dns),
        ("tcp", s.tcp),
        ("protocol", s.probes),
        ("tls", s.tls),
        ("http", s.http),
    )
    layers: list[str] = []
    longest: float | None = None
    for layer, attempts in groups:
        stalls = [
            a.m.observation.probe_stall_ms
            for a in attempts
            if a.m.observation.probe_stall_ms is not None
        ]
        if stalls:
            layers.append(layer)
            longest = max(stalls) if longest is None else max(longest, *stalls)
    return StallFacts(tuple(layers), longest)
