"""Cross-network controls: re-judge what one probe could not decide with what other networks saw.

A probe without a working control (no test helper, or a helper that failed elsewhere) leaves a
failing target inconclusive: blocked and down look alike from one network. Pooled in a collector,
measurements of the same target from other networks at about the same time are that control,
as OONI's web connectivity uses its control vantage (ooni/spec, nettests/ts-017): the same target
reached at the same layer elsewhere means the failure is this network's (blocked, an anomaly);
failing at that layer everywhere it was tried means the site is down.

Only verdicts of the rules in REJUDGED are re-judged (a dead network, a VPN or a missing
measurement says nothing a control could fix). The probe's own verdicts are never changed: the
derived ones go to their own table with their own rule ids (CROSS_RULES) and cite both this run's
measurements (evidence) and the other networks' (controls). No network I/O: the store is read.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from probe.model import Layer, Measurement
from probe.records import Confidence, CrossVerdict, Status, Verdict
from probe.store import Store
from probe.store.crossnet import (
    PeerMeasurement,
    peer_measurements,
    save_cross_verdicts,
    target_measurements,
    undecided_verdicts,
)

CROSS_RULES_VERSION = "cross.2026.1"
# The probe's rules whose inconclusive verdicts a control from elsewhere can decide (a lone
# endpoint failing with no control is one: another network reaching it is that control).
REJUDGED = frozenset({"control.missing", "endpoint.lone_failure", "unexplained"})
# Measurements elsewhere count as a control when they started within this long of the run.
DEFAULT_WINDOW = timedelta(hours=1)
# Ids of other networks' measurements a derived verdict cites (the first ones in time order).
MAX_CONTROLS_CITED = 20

# The runner's extra measurements (A/B halves, protocol probes, packet captures) are not attempts
# at the target itself: Observation.differential_kind is set on them (probe.model.DifferentialKind).
_LAYERS = (Layer.DNS, Layer.TCP, Layer.TLS, Layer.HTTP)
# Short technique names for the failure seen here ("tls.reset", "tcp.timeout").
_SHORT = {
    "generic_timeout_error": "timeout",
    "connection_reset": "reset",
    "connection_refused": "refused",
    "connection_aborted": "reset",
    "eof_error": "eof",
    "dns_nxdomain_error": "nxdomain",
    "dns_no_answer": "no_answer",
    "dns_refused_error": "refused",
    "dns_servfail_error": "servfail",
}


@dataclass(frozen=True, slots=True)
class CrossRule:
    """A cross-network rule: id (never renamed or reused), outcome, and what it means."""

    rule_id: str
    status: Status
    comment: str


REACHABLE_ELSEWHERE = CrossRule(
    "cross.reachable_elsewhere",
    Status.BLOCKED,
    "The target failed here and no control measured it, but the same target was reached at the"
    " same layer from another network within the window: the failure is this network's.",
)
FAILING_EVERYWHERE = CrossRule(
    "cross.failing_everywhere",
    Status.DOWN,
    "The target failed here and no control measured it, and it failed at the same layer on every"
    " other network that measured it within the window: the site is down, not blocked.",
)
CROSS_RULES = (REACHABLE_ELSEWHERE, FAILING_EVERYWHERE)


@dataclass(frozen=True, slots=True)
class CrossReport:
    """What one `probe analyse` pass did."""

    examined: int
    derived: tuple[CrossVerdict, ...]

    def count(self, status: Status) -> int:
        return sum(1 for item in self.derived if item.verdict.status is status)


def _own_attempts(measurements: Iterable[Measurement]) -> list[Measurement]:
    return [m for m in measurements if m.observation.differential_kind is None]


def failing_layer(measurements: Sequence[Measurement]) -> tuple[Layer, str] | None:
    """The first layer (DNS, TCP, TLS, HTTP) where every attempt failed, with its most common
    failure; None when no layer failed outright."""
    own = _own_attempts(measurements)
    for layer in _LAYERS:
        attempts = [m for m in own if m.layer is layer]
        if attempts and all(m.failure is not None for m in attempts):
            failures = Counter(m.failure for m in attempts if m.failure is not None)
            return layer, failures.most_common(1)[0][0]
    return None


def judge(
    verdict: Verdict, layer: Layer, failure: str, peers: Sequence[PeerMeasurement]
) -> CrossVerdict | None:
    """The derived verdict for `verdict` given other networks' attempts at `layer`, or None when
    no other network measured it."""
    attempts = [p for p in peers if p.measurement.observation.differential_kind is None]
    if not attempts:
        return None
    reached = [p for p in attempts if p.measurement.failure is None]
    rule = REACHABLE_ELSEWHERE if reached else FAILING_EVERYWHERE
    cited = (reached or attempts)[:MAX_CONTROLS_CITED]
    networks = sorted({p.asn for p in (reached or attempts)})
    where = ", ".join(f"AS{asn}" for asn in networks[:5]) + (
        " and more" if len(networks) > 5 else ""
    )
    technique = f"{layer}.{_SHORT.get(failure, failure.removesuffix('_error'))}"
    if rule is REACHABLE_ELSEWHERE:
        detail = f"{layer} failed here ({failure}) but succeeded from {where} at that time"
    else:
        detail = f"{layer} failed here ({failure}) and from {where} at that time"
    derived = replace(
        verdict,
        status=rule.status,
        technique=technique if rule.status is Status.BLOCKED else None,
        confidence=Confidence.ANOMALY if rule.status is Status.BLOCKED else None,
        rule_id=rule.rule_id,
        rules_version=CROSS_RULES_VERSION,
        detail=detail,
    )
    return CrossVerdict(derived, tuple(p.measurement.id for p in cited))


def analyse_across_networks(
    store: Store,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    window: timedelta = DEFAULT_WINDOW,
) -> CrossReport:
    """Re-judge the undecided verdicts of runs started in [since, until) with measurements from
    other networks within `window` of each run; store and return the derived verdicts."""
    examined = 0
    derived: list[CrossVerdict] = []
    for verdict in undecided_verdicts(store, REJUDGED, since, until):
        examined += 1
        if verdict.asn is None:
            continue  # an unknown network cannot be told apart from the others
        own = target_measurements(store, verdict.run_id, verdict.platform, verdict.target)
        failed = failing_layer(own)
        if failed is None:
            continue
        layer, failure = failed
        peers = peer_measurements(
            store,
            platform=verdict.platform,
            target=verdict.target,
            layer=layer,
            since=verdict.measured_at - window,
            until=verdict.measured_at + window,
            other_than_asn=verdict.asn,
        )
        result = judge(verdict, layer, failure, peers)
        if result is not None:
            derived.append(result)
    save_cross_verdicts(store, derived)
    return CrossReport(examined, tuple(derived))
