"""Flows: one pipeline per target kind, the order in which its checks run.

    dns ..... resolve only
    tcp ..... resolve -> connect -> protocol probe (+ TLS handshake when it speaks TLS)
    http .... resolve -> connect -> protocol probe + HTTP request (+ harmless-Host A/B control)
    https ... resolve -> connect -> TLS handshake -> protocol probe + HTTP request
              (+ harmless-SNI A/B control)
    base .... what they share: TargetRun (checks under the run's semaphore, progress, records),
              addresses, connects, probes, the fetch and the A/B controls
    evidence  the run's raw-packet captures of suspicious results

The runner picks a target's flow with flow_for and runs it; flows know nothing of the store or
analysis, and take every dependency from the RunPlan.
"""

from __future__ import annotations

from typing import assert_never

from probe.flows import dns, http, https, tcp
from probe.flows.base import Flow, TargetResult, TargetRun
from probe.model import TargetKind


def flow_for(kind: TargetKind) -> Flow:
    """The flow of a kind of target (mypy checks that every kind has one)."""
    match kind:
        case TargetKind.DNS:
            return dns.measure
        case TargetKind.TCP:
            return tcp.measure
        case TargetKind.HTTP:
            return http.measure
        case TargetKind.HTTPS:
            return https.measure
        case _:
            assert_never(kind)


__all__ = ["Flow", "TargetResult", "TargetRun", "flow_for"]
