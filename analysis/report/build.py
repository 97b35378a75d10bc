"""Building a report from the store: the period's verdicts streamed once into the timeline
(analysis.timeline), keeping aside only the newest verdict of each (network, platform, target);
the event detector (analysis.events) runs on that timeline, and the current state of each
platform on each network is the platform summary stored with the newest run that judged it.

The chart lanes are the same hourly buckets the detector reads, coloured the way it reads them: a
bucket is blocked when its blocked share of ok + blocked verdicts is above the detector's
reference value k (halfway between mu0 and mu1: 0.35 by default), so the picture and the events
agree.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol

from analysis.events import detect_events_in
from analysis.export import select_verdicts
from analysis.model import TECHNIQUE_CHANGE_SEPARATOR
from analysis.report.labels import network_label
from analysis.report.model import (
    Cell,
    CellStatus,
    Lane,
    LaneKind,
    NetworkState,
    PlatformReport,
    Report,
    ReportSource,
    TargetState,
)
from analysis.summaries import summarise
from analysis.timeline import Series, Timeline, build_timeline, hour_of, hour_start
from probe.config import DetectorParams
from probe.model import Run
from probe.records import PlatformSummary, Status, Verdict


def build_report(
    source: ReportSource,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    platforms: Sequence[str] | None = None,
    asns: Collection[int] | None = None,
    params: DetectorParams | None = None,
    now: datetime | None = None,
) -> Report:
    """The report of verdicts measured in [since, until) on `platforms` and networks `asns`
    (all when None), with events detected using `params` (the [events] config table)."""
    params = params or DetectorParams()
    latest: dict[tuple[int | None, str, str], Verdict] = {}

    def keep_latest(verdicts: Iterable[Verdict]) -> Iterator[Verdict]:
        # One dict store per verdict: the stream itself is never held in memory.
        for verdict in verdicts:
            key = (verdict.asn, verdict.platform, verdict.target)
            previous = latest.get(key)
            if previous is None or verdict.measured_at >= previous.measured_at:
                latest[key] = verdict
            yield verdict

    stream = select_verdicts(source, since=since, until=until, platforms=platforms, asns=asns)
    timeline = build_timeline(keep_latest(stream))
    events = detect_events_in(timeline, params)
    generated_at = now or datetime.now(UTC)

    if not timeline.verdicts:
        # Only a report of everything falls back to the newest measurements (databases from
        # before verdicts existed): those ignore time and network, so a period or network that
        # matches no verdict shows nothing rather than other periods' or networks' data.
        names: list[str | None] = list(platforms) if platforms else [None]
        unbounded = since is None and until is None and asns is None
        measurements = (
            tuple(m for name in names for m in source.latest_status(platform=name))
            if unbounded
            else ()
        )
        return Report(
            generated_at=generated_at,
            since=since,
            until=until,
            first_hour=None,
            hours=0,
            verdicts=0,
            networks=(),
            hosts=0,
            platforms=(),
            techniques=(),
            params=params,
            latest_measurements=measurements,
        )

    first, stop = _span(timeline, since, until)
    failures = _failures(source, [v for v in latest.values() if v.status is not Status.OK])
    by_platform: dict[str, list[Verdict]] = {}
    for verdict in latest.values():
        by_platform.setdefault(verdict.platform, []).append(verdict)
    runs: dict[str, Run | None] = {}
    summaries: dict[str, list[PlatformSummary]] = {}
    platform_reports = []
    for platform in sorted(by_platform):
        newest = sorted(by_platform[platform], key=lambda v: (_asn_order(v.asn), v.target))
        networks = sorted({v.asn for v in newest}, key=_asn_order)
        states = tuple(
            _state(source, timeline, platform, asn, newest, runs, summaries) for asn in networks
        )
        if len(networks) == 1:
            lanes = tuple(
                Lane(series.target or "", _target_cells(series, first, stop, params))
                for series in timeline.targets(networks[0], platform)
            )
            kind = LaneKind.TARGET
        else:
            lanes = tuple(
                Lane(
                    network_label(asn, _as_name(states, asn)),
                    _network_cells(timeline.targets(asn, platform), first, stop, params),
                )
                for asn in networks
            )
            kind = LaneKind.NETWORK
        platform_reports.append(
            PlatformReport(
                platform=platform,
                states=states,
                targets=tuple(
                    TargetState(v, failures.get((v.run_id, v.platform, v.target), ()))
                    for v in newest
                ),
                events=tuple(e for e in events if e.platform == platform),
                lane_kind=kind,
                lanes=lanes,
            )
        )

    techniques: set[str] = set()
    for report in platform_reports:
        for lane in report.lanes:
            techniques.update(c.technique for c in lane.cells if c.technique is not None)
    for event in events:
        if event.technique is not None:
            techniques.update(event.technique.split(TECHNIQUE_CHANGE_SEPARATOR))
    all_networks = sorted({key[0] for key in timeline.series}, key=_asn_order)
    return Report(
        generated_at=generated_at,
        since=since,
        until=until,
        first_hour=hour_start(first),
        hours=stop - first,
        verdicts=timeline.verdicts,
        networks=tuple(all_networks),
        hosts=sum(len(timeline.probes(asn)) for asn in all_networks),
        platforms=tuple(platform_reports),
        techniques=tuple(sorted(techniques)),
        params=params,
    )


def _failures(
    source: ReportSource, verdicts: Sequence[Verdict]
) -> dict[tuple[str, str, str], tuple[str, ...]]:
    """Per (run, platform, target): the distinct failures of the measurements each verdict
    rests on (its evidence; all of the target's measurements in the run when it lists none).
    Reads one run at a time, and only the runs of these verdicts."""
    wanted: dict[str, dict[tuple[str, str], Verdict]] = {}
    for verdict in verdicts:
        wanted.setdefault(verdict.run_id, {})[(verdict.platform, verdict.target)] = verdict
    found: dict[tuple[str, str, str], dict[str, None]] = {}
    for run_id, of_run in wanted.items():
        for measurement in source.measurements(run_id=run_id):
            failure = measurement.observation.failure
            judged = of_run.get((measurement.platform, measurement.target))
            if failure is None or judged is None:
                continue
            if judged.evidence and measurement.id not in judged.evidence:
                continue
            key = (run_id, measurement.platform, measurement.target)
            found.setdefault(key, {})[failure] = None
    return {key: tuple(names) for key, names in found.items()}


def _asn_order(asn: int | None) -> tuple[bool, int]:
    return (asn is None, asn or 0)


def _span(timeline: Timeline, since: datetime | None, until: datetime | None) -> tuple[int, int]:
    """The chart's hours [first, stop): the period asked for, else the data's own span."""
    series = timeline.series.values()
    first = min(s.first_hour for s in series)
    stop = max(s.first_hour + len(s) for s in series)
    if since is not None:
        first = hour_of(since)
    if until is not None:
        stop = hour_of(until - timedelta(microseconds=1)) + 1
    return first, max(stop, first + 1)


def _as_name(states: Sequence[NetworkState], asn: int | None) -> str | None:
    return next((s.as_name for s in states if s.asn == asn), None)


def _state(
    source: ReportSource,
    timeline: Timeline,
    platform: str,
    asn: int | None,
    newest: Sequence[Verdict],
    runs: dict[str, Run | None],
    summaries: dict[str, list[PlatformSummary]],
) -> NetworkState:
    """The summary stored with the newest run that judged `platform` on network `asn`; when that
    run has none (verdicts written without summaries), one made from its verdicts."""
    mine = [v for v in newest if v.asn == asn]
    last = max(mine, key=lambda v: v.measured_at)
    if last.run_id not in summaries:
        summaries[last.run_id] = source.platform_summaries(last.run_id)
        runs[last.run_id] = source.get_run(last.run_id)
    summary = next((s for s in summaries[last.run_id] if s.platform == platform), None)
    if summary is None:
        (summary,) = summarise([v for v in mine if v.run_id == last.run_id], [])
    run = runs[last.run_id]
    hosts: set[str] = set()
    for series in timeline.targets(asn, platform):
        mask = 0
        for index in range(len(series)):
            mask |= series.ok_hosts[index] | series.blocked_hosts[index]
        hosts.update(series.hosts(mask))
    return NetworkState(
        asn=asn,
        as_name=run.network.as_name if run is not None else None,
        country=last.country,
        run_id=last.run_id,
        probe_id=last.probe_id,
        measured_at=last.measured_at,
        summary=summary,
        hosts=len(hosts),
    )


def _bucket_status(series: Series, index: int, reference: float) -> CellStatus | None:
    """A target's bucket as the detector reads it (blocked share above k is blocked)."""
    ok, blocked = series.ok[index], series.blocked[index]
    if ok + blocked:
        return CellStatus.BLOCKED if blocked / (ok + blocked) > reference else CellStatus.OK
    down, inconclusive = series.down[index], series.inconclusive[index]
    if down and down >= inconclusive:
        return CellStatus.DOWN
    if inconclusive:
        return CellStatus.INCONCLUSIVE
    return None


def _target_cells(
    series: Series, first: int, stop: int, params: DetectorParams
) -> tuple[Cell, ...]:
    def hour_cell(hour: int) -> tuple[CellStatus, str | None] | None:
        index = hour - series.first_hour
        if index < 0 or index >= len(series):
            return None
        status = _bucket_status(series, index, params.reference)
        if status is None:
            return None
        technique = series.dominant_technique(index) if status is CellStatus.BLOCKED else None
        return status, technique

    low = max(first, series.first_hour)
    high = min(stop, series.first_hour + len(series))
    return _runs(hour_cell, first, low, high)


def _network_cells(
    members: Sequence[Series], first: int, stop: int, params: DetectorParams
) -> tuple[Cell, ...]:
    """A network lane: blocked when every target with evidence is blocked, partial when some."""

    def hour_cell(hour: int) -> tuple[CellStatus, str | None] | None:
        statuses: Counter[CellStatus] = Counter()
        techniques: Counter[str] = Counter()
        for series in members:
            index = hour - series.first_hour
            if index < 0 or index >= len(series):
                continue
            status = _bucket_status(series, index, params.reference)
            if status is None:
                continue
            statuses[status] += 1
            if status is CellStatus.BLOCKED:
                technique = series.dominant_technique(index)
                if technique is not None:
                    techniques[technique] += 1
        blocked, ok = statuses[CellStatus.BLOCKED], statuses[CellStatus.OK]
        technique = min(techniques, key=lambda t: (-techniques[t], t)) if techniques else None
        if blocked:
            return (CellStatus.PARTIAL if ok else CellStatus.BLOCKED), technique
        if ok:
            return CellStatus.OK, None
        if (
            statuses[CellStatus.DOWN]
            and statuses[CellStatus.DOWN] >= statuses[CellStatus.INCONCLUSIVE]
        ):
            return CellStatus.DOWN, None
        if statuses[CellStatus.INCONCLUSIVE]:
            return CellStatus.INCONCLUSIVE, None
        return None

    low = max(first, min((s.first_hour for s in members), default=first))
    high = min(stop, max((s.first_hour + len(s) for s in members), default=first))
    return _runs(hour_cell, first, low, high)


def _runs(hour_cell: _HourCell, origin: int, first: int, stop: int) -> tuple[Cell, ...]:
    """The cells of hours [first, stop), consecutive equal hours as one (a month of hourly
    buckets is a few dozen shapes); cell starts count from hour `origin`."""
    cells: list[Cell] = []
    current: tuple[CellStatus, str | None] | None = None
    start = first
    for hour in range(first, stop + 1):
        value = hour_cell(hour) if hour < stop else None
        if value == current and hour < stop:
            continue
        if current is not None:
            cells.append(Cell(start - origin, hour - start, current[0], current[1]))
        current, start = value, hour
    return tuple(cells)


class _HourCell(Protocol):
    def __call__(self, hour: int, /) -> tuple[CellStatus, str | None] | None: ...
