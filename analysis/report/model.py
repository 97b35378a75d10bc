"""What a report holds: per platform its state on each network, the newest verdict per target,
the events and the chart lanes (analysis.report.build makes one from the store)."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from analysis.export import VerdictRowSource
from analysis.model import Event
from probe.config import DetectorParams
from probe.model import Measurement, Run
from probe.records import PlatformSummary, Verdict, VerdictRow, VerdictTimes


class CellStatus(StrEnum):
    """What a chart cell (one lane, a stretch of hours) shows.

    blocked:      at least one blocked verdict (any share: a cell is shaded by its blocked share,
                  so a single blocked verdict among many ok ones is visible); on a network lane,
                  every target with evidence has a blocked verdict.
    partial:      network lanes only: some of the platform's targets have blocked verdicts,
                  others only ok ones.
    ok:           evidence, none of it blocked.
    down:         only down verdicts (the control failed too).
    inconclusive: only inconclusive verdicts (no working control).
    Hours without any verdict have no cell.
    """

    BLOCKED = "blocked"
    PARTIAL = "partial"
    OK = "ok"
    DOWN = "down"
    INCONCLUSIVE = "inconclusive"


class LaneKind(StrEnum):
    """One chart lane per target (a single network in scope) or per network (several)."""

    TARGET = "target"
    NETWORK = "network"


# Blocked and partial cells are shaded in this many steps of their blocked share: step 1 is a
# share in (0, 1/4], step 4 one in (3/4, 1].
SHADE_LEVELS = 4


def shade_level(blocked: int, evidence: int) -> int:
    """The shade step (1..SHADE_LEVELS) of `blocked` among `evidence` ok + blocked verdicts;
    0 when nothing is blocked. Never 0 for a single blocked verdict, however many are ok."""
    if blocked <= 0 or evidence <= 0:
        return 0
    return min(SHADE_LEVELS, -(-blocked * SHADE_LEVELS // evidence))


@dataclass(frozen=True, slots=True)
class Cell:
    """Consecutive hours of one lane with the same status, technique and shade.

    start: hours from the report's first hour; hours: how many. blocked / evidence: the blocked
    and the ok + blocked verdicts over those hours; level: their shade (see shade_level).
    """

    start: int
    hours: int
    status: CellStatus
    technique: str | None
    blocked: int = 0
    evidence: int = 0
    level: int = 0

    @property
    def share(self) -> float | None:
        """The blocked share of the cell's evidence; None without evidence."""
        return self.blocked / self.evidence if self.evidence else None


@dataclass(frozen=True, slots=True)
class Lane:
    label: str
    cells: tuple[Cell, ...]


@dataclass(frozen=True, slots=True)
class NetworkLanes:
    """The target lanes of one platform on one network (drawn below a chart of network lanes,
    for the networks where an event was detected)."""

    asn: int | None
    label: str
    lanes: tuple[Lane, ...]


@dataclass(frozen=True, slots=True)
class CoverageLane:
    """How much was measured per hour of the chart, on one network or (asn None, label
    "all networks") on all: runs started, and distinct probes that started them. An hour with
    no run is no data, which says nothing about blocking."""

    label: str
    asn: int | None
    runs: tuple[int, ...]
    hosts: tuple[int, ...]

    @property
    def hours_without_runs(self) -> int:
        return sum(1 for count in self.runs if not count)


@dataclass(frozen=True, slots=True)
class Provenance:
    """What made the report: the software and rules versions of the runs and verdicts it reads,
    the probes, and the versions of the software that drew it."""

    software_versions: tuple[str, ...]
    rules_versions: tuple[str, ...]
    probes: tuple[str, ...]
    runs: int
    report_software: str
    report_rules: str


@dataclass(frozen=True, slots=True)
class NetworkState:
    """A platform's current state on one network: the summary of the newest run that judged it.

    hosts: distinct probes that reported ok or blocked for the platform from this network in the
    period.
    """

    asn: int | None
    as_name: str | None
    country: str | None
    run_id: str
    probe_id: str
    measured_at: datetime
    summary: PlatformSummary
    hosts: int


@dataclass(frozen=True, slots=True)
class TargetState:
    """A target's newest verdict on one network, with the OONI failure strings of the
    measurements it rests on (empty for ok verdicts): what actually failed.

    evidence: those measurements for the drill-down, at most EVIDENCE_PER_VERDICT of them
    (failed ones first) and none once the report's evidence budget is spent; evidence_total:
    how many it rests on in all.
    """

    verdict: Verdict
    failures: tuple[str, ...]
    evidence: tuple[Measurement, ...] = ()
    evidence_total: int = 0


@dataclass(frozen=True, slots=True)
class PlatformReport:
    """One platform: its state per network, latest verdict per (network, target), events, chart."""

    platform: str
    states: tuple[NetworkState, ...]
    targets: tuple[TargetState, ...]
    events: tuple[Event, ...]
    lane_kind: LaneKind
    lanes: tuple[Lane, ...]
    network_lanes: tuple[NetworkLanes, ...] = ()

    @property
    def networks(self) -> tuple[int | None, ...]:
        return tuple(state.asn for state in self.states)


@dataclass(frozen=True, slots=True)
class Report:
    """Everything a report shows. The chart spans hours [first_hour, first_hour + hours).

    since/until: the period asked for (None: unbounded). verdicts: how many were read.
    latest_measurements: filled only when the period holds no verdict (databases from before
    verdicts were stored): the newest measurement per endpoint, as `probe report` showed it then.
    coverage: runs and probes per hour, all networks first, then each network when several.
    evidence_withheld: latest verdicts whose measurements are left out of the drill-down because
    the report's budget of EVIDENCE_ROWS measurements was spent (ok verdicts go first).
    """

    generated_at: datetime
    since: datetime | None
    until: datetime | None
    first_hour: datetime | None
    hours: int
    verdicts: int
    networks: tuple[int | None, ...]
    hosts: int
    platforms: tuple[PlatformReport, ...]
    techniques: tuple[str, ...]
    params: DetectorParams
    latest_measurements: tuple[Measurement, ...] = ()
    coverage: tuple[CoverageLane, ...] = ()
    provenance: Provenance | None = None
    evidence_withheld: int = 0

    @property
    def events(self) -> tuple[Event, ...]:
        return tuple(event for platform in self.platforms for event in platform.events)


# The drill-down's bounds: a page stays a few megabytes whatever the database holds.
EVIDENCE_PER_VERDICT = 12
EVIDENCE_ROWS = 1500


class ReportSource(VerdictRowSource, Protocol):
    """What a report reads (verdicts, and each run's platform summaries): probe.store.Store
    satisfies it."""

    def platform_summaries(self, run_id: str) -> list[PlatformSummary]: ...

    def measurements(
        self,
        run_id: str | None = None,
        platform: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[Measurement]: ...

    def get_run(self, run_id: str) -> Run | None: ...

    def runs(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        asns: Collection[int] | None = None,
        newest_first: bool = False,
        limit: int | None = None,
    ) -> Iterator[Run]: ...

    def latest_status(self, platform: str | None = None) -> list[Measurement]: ...

    def verdict_times(
        self,
        *,
        platforms: Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        asns: Collection[int] | None = None,
    ) -> tuple[list[VerdictTimes], list[VerdictRow]] | None: ...
