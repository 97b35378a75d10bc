"""The analysis records shared by the verdict engine, the timeline and the event detector.

A Verdict is one target's outcome in one run of one probe; an Event is what the detector makes of
many verdicts over time (blocking that began or ended, intermittent blocking, partial blocking, a
change of technique). Both are frozen: analysis only ever derives new records from old ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

_ZERO = timedelta(0)

# An IP -> ASN lookup (an offline MaxMind database, when the user has one).
AsnLookup = Callable[[str], int | None]

# Event.technique of a technique_change event reads "<previous><sep><new>", e.g.
# "dns.bogon -> tls.sni_reset"; the report splits on this separator.
TECHNIQUE_CHANGE_SEPARATOR = " -> "


class Status(StrEnum):
    """A verdict's outcome for one target in one run.

    ok:           reachable, as the control saw it.
    blocked:      interference seen here and not at the control.
    down:         failing at the control too: the site is down, not blocked.
    inconclusive: no working control, or too little evidence: never counted as blocked.
    """

    OK = "ok"
    BLOCKED = "blocked"
    DOWN = "down"
    INCONCLUSIVE = "inconclusive"


class Confidence(StrEnum):
    """How sure a blocked verdict is: a matched blockpage fingerprint is confirmed, any other
    difference from the control is an anomaly (OONI's distinction)."""

    CONFIRMED = "confirmed"
    ANOMALY = "anomaly"


@dataclass(frozen=True, slots=True)
class Verdict:
    """One target's outcome in one run of one probe, with the rule that decided it.

    measured_at is the run's start, UTC-aware. technique names how blocking was done
    ("dns.bogon", "tcp.timeout", "tls.sni_reset", "http.blockpage", "throttling"); evidence
    holds the ids of the measurements the rule read.
    """

    run_id: str
    probe_id: str
    measured_at: datetime
    asn: int | None
    country: str | None
    platform: str
    target: str
    status: Status
    technique: str | None
    confidence: Confidence | None
    rule_id: str
    rules_version: str
    evidence: tuple[str, ...]
    detail: str = ""

    def __post_init__(self) -> None:
        if self.measured_at.utcoffset() != _ZERO:
            raise ValueError(f"Verdict.measured_at must be UTC-aware, got {self.measured_at!r}")


class EventKind(StrEnum):
    """What the detector saw happen to a platform on a network.

    blocking:         blocking began (and ended, unless ongoing) on every target observed.
    intermittent:     blocking that comes and goes (e.g. only in the evenings): one event with
                      its blocked rate rather than many short ones.
    partial:          some targets blocked while the platform's other targets stayed ok
                      (e.g. 2 of 6 Telegram data centres).
    technique_change: within ongoing blocking, the dominant technique changed.
    """

    BLOCKING = "blocking"
    INTERMITTENT = "intermittent"
    PARTIAL = "partial"
    TECHNIQUE_CHANGE = "technique_change"


@dataclass(frozen=True, slots=True)
class Event:
    """A change over time, with its scope.

    asn:       the network when the event is confined to one; None when it spans several
               (then `networks` lists them). An entry of `networks` is None for verdicts whose
               ASN was unknown.
    technique: the dominant technique at onset; for technique_change "<previous> -> <new>"
               (TECHNIQUE_CHANGE_SEPARATOR).
    onset:     when it began (start of the first hourly bucket of the evidence).
    end:       when it ended (start of the first bucket back to ok); None while ongoing. A
               technique_change is a moment: end == onset.
    targets:   the targets affected; hosts: distinct probe ids that agree; networks: the ASNs.
    rate:      share of runs blocked during the event (intermittent events; None otherwise).
    runs:      ok + blocked verdicts in scope during the event (for technique_change: from the
               switch to the end of the blocking).
    """

    kind: EventKind
    platform: str
    asn: int | None
    technique: str | None
    onset: datetime
    end: datetime | None
    targets: tuple[str, ...]
    hosts: int
    networks: tuple[int | None, ...]
    rate: float | None
    runs: int
    detail: str
