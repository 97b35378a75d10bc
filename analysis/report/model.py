"""What a report holds: per platform its state on each network, the newest verdict per target,
the events and the chart lanes (analysis.report.build makes one from the store)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from analysis.export import VerdictSource
from analysis.model import Event
from probe.config import DetectorParams
from probe.model import Measurement, Run
from probe.records import PlatformSummary, Verdict


class CellStatus(StrEnum):
    """What a chart cell (one lane, a stretch of hours) shows.

    blocked:      blocked share above the detector's reference k (all targets, on a network lane).
    partial:      network lanes only: some of the platform's targets blocked, others ok.
    ok:           evidence, not blocked.
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


@dataclass(frozen=True, slots=True)
class Cell:
    """Consecutive hours of one lane with the same status and technique.

    start: hours from the report's first hour; hours: how many.
    """

    start: int
    hours: int
    status: CellStatus
    technique: str | None


@dataclass(frozen=True, slots=True)
class Lane:
    label: str
    cells: tuple[Cell, ...]


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
    measurements it rests on (empty for ok verdicts): what actually failed."""

    verdict: Verdict
    failures: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PlatformReport:
    """One platform: its state per network, latest verdict per (network, target), events, chart."""

    platform: str
    states: tuple[NetworkState, ...]
    targets: tuple[TargetState, ...]
    events: tuple[Event, ...]
    lane_kind: LaneKind
    lanes: tuple[Lane, ...]

    @property
    def networks(self) -> tuple[int | None, ...]:
        return tuple(state.asn for state in self.states)


@dataclass(frozen=True, slots=True)
class Report:
    """Everything a report shows. The chart spans hours [first_hour, first_hour + hours).

    since/until: the period asked for (None: unbounded). verdicts: how many were read.
    latest_measurements: filled only when the period holds no verdict (databases from before
    verdicts were stored): the newest measurement per endpoint, as `probe report` showed it then.
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

    @property
    def events(self) -> tuple[Event, ...]:
        return tuple(event for platform in self.platforms for event in platform.events)


class ReportSource(VerdictSource, Protocol):
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

    def latest_status(self, platform: str | None = None) -> list[Measurement]: ...
