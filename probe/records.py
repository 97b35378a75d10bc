"""What analysis persists: the records the store writes and reads back.

A Verdict is one target's outcome in one run of one probe; a PlatformSummary folds one run's
verdicts per platform. They live below both the store and analysis so that the store never
imports analysis (data flows one way: checks -> store -> analysis). Both are frozen: analysis
only ever derives new records from old ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import NamedTuple

_ZERO = timedelta(0)


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


class VerdictRow(NamedTuple):
    """A stored verdict's fields as a tuple, in Verdict's order: what a reader of a million
    verdicts (a report's timeline, the event detector) streams instead of Verdicts, ~5x cheaper
    to make than a frozen dataclass. The store checks a row as it checks a Verdict's, and
    `verdict()` turns the few a reader keeps into Verdicts."""

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

    @classmethod
    def of(cls, verdict: Verdict) -> VerdictRow:
        """The row of a Verdict."""
        return cls(
            verdict.run_id,
            verdict.probe_id,
            verdict.measured_at,
            verdict.asn,
            verdict.country,
            verdict.platform,
            verdict.target,
            verdict.status,
            verdict.technique,
            verdict.confidence,
            verdict.rule_id,
            verdict.rules_version,
            verdict.evidence,
            verdict.detail,
        )

    def verdict(self) -> Verdict:
        """This row as a Verdict (its checks run: measured_at must be UTC)."""
        return Verdict(*self)


class VerdictTimes(NamedTuple):
    """Stored verdicts that share their network, probe, platform, target, status, technique,
    rules version and country, as one row: when each was measured, and where the first of them
    stands in the verdicts' stream order (`order`: comparable between groups of one read). What
    a report's timeline reads of a million verdicts (probe.store.Store.verdict_times) instead
    of one row each."""

    asn: int | None
    probe_id: str
    platform: str
    target: str
    status: Status
    technique: str | None
    rules_version: str
    country: str | None
    order: tuple[int, str, str]
    times: list[datetime]  # one per verdict; equal times are one object


@dataclass(frozen=True, slots=True)
class CrossVerdict:
    """A verdict `probe analyse` derived for a target one probe could not decide, from
    measurements of the same target taken on other networks at about the same time.

    `verdict` carries the derived status with its own rule id (analysis.crossnet), the run's
    identity and its own measurement ids as evidence; `controls` holds the ids of the other
    networks' measurements it rests on. The probe's own verdict is kept as it was.
    """

    verdict: Verdict
    controls: tuple[str, ...]


class PlatformStatus(StrEnum):
    """A platform's (or group's) state in one run.

    partial: some targets (or group members) blocked while others are reachable.
    """

    OK = "ok"
    BLOCKED = "blocked"
    PARTIAL = "partial"
    DOWN = "down"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True, slots=True)
class GroupSummary:
    """A catalog group of one platform (e.g. Telegram's "dc")."""

    name: str
    status: PlatformStatus
    blocked: int
    total: int
    techniques: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PlatformSummary:
    """One platform in one run: its status, how it is blocked, and how many targets are."""

    platform: str
    status: PlatformStatus
    techniques: tuple[str, ...]
    blocked: int
    total: int
    groups: tuple[GroupSummary, ...] = ()
    suspicious: tuple[str, ...] = ()
    detail: str = ""
