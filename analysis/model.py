"""The analysis-only records: the event detector's Event and the types analysis passes around.

An Event is what the detector makes of many verdicts over time (blocking that began or ended,
intermittent blocking, partial blocking, a change of technique). It is frozen: analysis only ever
derives new records from old ones. What analysis persists (Verdict, summaries) lives in
probe/records.py, below the store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

# An IP -> ASN lookup (an offline MaxMind database, when the user has one).
AsnLookup = Callable[[str], int | None]

# Event.technique of a technique_change event reads "<previous><sep><new>", e.g.
# "dns.bogon -> tls.sni_reset"; the report splits on this separator.
TECHNIQUE_CHANGE_SEPARATOR = " -> "


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
    runs:      the runs the event rests on: the runs of its probes that judged its targets ok or
               blocked during it, each counted once however many targets it judged
               (for technique_change: from the switch to the end of the blocking).
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
