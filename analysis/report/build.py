"""Building a report from the store: the period's verdicts streamed once into the timeline
(analysis.timeline), keeping aside only the newest verdict of each (network, platform, target);
the event detector (analysis.events) runs on that timeline, and the current state of each
platform on each network is the platform summary stored with the newest run that judged it.

The chart lanes are the same hourly buckets the detector reads. A bucket holding any blocked
verdict is drawn blocked, shaded by its blocked share of ok + blocked verdicts (analysis.report.
model.shade_level): a threshold such as the detector's reference k would paint a target green
while its latest verdict says blocked. Whether a change is significant is the detector's call,
and the events say it.

Beside them: the runs and probes per hour (from the runs themselves, so an hour nobody measured
reads as no data, never as ok), the measurements the latest verdicts rest on (bounded: the
drill-down), and the provenance (software and rules versions, probes).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple, Protocol

from analysis.events import detect_events_in
from analysis.export import select_verdict_rows
from analysis.model import TECHNIQUE_CHANGE_SEPARATOR, Event
from analysis.report.labels import network_label
from analysis.report.model import (
    EVIDENCE_PER_VERDICT,
    EVIDENCE_ROWS,
    Cell,
    CellStatus,
    CoverageLane,
    Lane,
    LaneKind,
    NetworkLanes,
    NetworkState,
    PlatformReport,
    Provenance,
    Report,
    ReportSource,
    TargetState,
    shade_level,
)
from analysis.rules import RULES_VERSION
from analysis.summaries import summarise
from analysis.timeline import (
    Series,
    Timeline,
    build_timeline,
    hour_of,
    hour_start,
    timeline_of_groups,
)
from probe import __version__
from probe.config import DetectorParams
from probe.model import Measurement, Run
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
    derived: Iterable[Verdict] = (),
) -> Report:
    """The report of verdicts measured in [since, until) on `platforms` and networks `asns`
    (all when None), with events detected using `params` (the [events] config table).
    `derived`: the cross-network verdicts (analysis.crossnet) that stand for the probe's own."""
    params = params or DetectorParams()
    derived = list(derived)
    # Grouped in the database where it can (the timeline keeps counts per hour, and the newest
    # verdict of each (network, platform, target), which the report shows as a Verdict); else
    # rows, not Verdicts, one by one.
    grouped = (
        None
        if derived
        else source.verdict_times(platforms=platforms, since=since, until=until, asns=asns)
    )
    if grouped is not None:
        timeline = timeline_of_groups(*grouped)
    else:
        stream = select_verdict_rows(
            source, since=since, until=until, platforms=platforms, asns=asns, derived=derived
        )
        timeline = build_timeline(stream)
    latest = {
        key: series.newest.verdict()
        for key, series in timeline.series.items()
        if series.newest is not None
    }
    rules_versions = timeline.rules_versions
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
    evidence, withheld = _evidence(source, list(latest.values()))
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
        of_platform = tuple(e for e in events if e.platform == platform)
        network_lanes: tuple[NetworkLanes, ...] = ()
        if len(networks) == 1:
            lanes = _target_lanes(timeline, networks[0], platform, first, stop)
            kind = LaneKind.TARGET
        else:
            lanes = tuple(
                Lane(
                    network_label(asn, _as_name(states, asn)),
                    _network_cells(timeline.targets(asn, platform), first, stop),
                )
                for asn in networks
            )
            kind = LaneKind.NETWORK
            # Which targets a network lane's blocking is made of: drawn for the networks an
            # event names (the detector's findings), so the page stays bounded on big stores.
            network_lanes = tuple(
                NetworkLanes(
                    asn,
                    network_label(asn, _as_name(states, asn)),
                    _target_lanes(timeline, asn, platform, first, stop),
                )
                for asn in networks
                if _named_by_events(asn, of_platform)
            )
        platform_reports.append(
            PlatformReport(
                platform=platform,
                states=states,
                targets=tuple(
                    _target_state(v, evidence.get((v.run_id, v.platform, v.target))) for v in newest
                ),
                events=of_platform,
                lane_kind=kind,
                lanes=lanes,
                network_lanes=network_lanes,
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
    coverage, provenance = _coverage(source, since, until, asns, first, stop, all_networks)
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
        coverage=coverage,
        provenance=Provenance(
            software_versions=provenance.software_versions,
            rules_versions=tuple(sorted(rules_versions)),
            probes=provenance.probes,
            runs=provenance.runs,
            report_software=__version__,
            report_rules=RULES_VERSION,
        ),
        evidence_withheld=withheld,
    )


@dataclass(slots=True)
class _Gathered:
    """What one latest verdict rests on, as read: failure names, up to EVIDENCE_PER_VERDICT
    failed and as many other measurements, and how many there are in all."""

    failures: dict[str, None]
    failed: list[Measurement]
    other: list[Measurement]
    total: int = 0

    def kept(self) -> list[Measurement]:
        chosen = (self.failed + self.other)[:EVIDENCE_PER_VERDICT]
        return sorted(chosen, key=lambda m: (m.observation.started_at, m.id))


_KEEP_FIRST = {Status.BLOCKED: 0, Status.DOWN: 1, Status.INCONCLUSIVE: 2, Status.OK: 3}


def _evidence(
    source: ReportSource, verdicts: Sequence[Verdict]
) -> tuple[dict[tuple[str, str, str], tuple[tuple[str, ...], tuple[Measurement, ...], int]], int]:
    """Per (run, platform, target) of the latest verdicts: the distinct failures of the
    measurements each rests on (its evidence; all of the target's measurements in the run when
    it lists none; for verdicts other than ok), those measurements for the drill-down and their
    number. Reads one run at a time, and only the runs of these verdicts.

    The drill-down holds at most EVIDENCE_ROWS measurements, blocked verdicts served first,
    ok ones last; also returned: how many verdicts got fewer than they rest on (capped)."""
    wanted: dict[str, dict[tuple[str, str], tuple[Verdict, frozenset[str]]]] = {}
    for verdict in verdicts:
        of_run = wanted.setdefault(verdict.run_id, {})
        of_run[(verdict.platform, verdict.target)] = (verdict, frozenset(verdict.evidence))
    found: dict[tuple[str, str, str], _Gathered] = {}
    for run_id, of_run in wanted.items():
        for measurement in source.measurements(run_id=run_id):
            judged = of_run.get((measurement.platform, measurement.target))
            if judged is None:
                continue
            verdict, ids = judged
            if ids and measurement.id not in ids:
                continue
            key = (run_id, measurement.platform, measurement.target)
            gathered = found.get(key)
            if gathered is None:
                gathered = found[key] = _Gathered({}, [], [])
            gathered.total += 1
            failure = measurement.observation.failure
            if failure is None:
                if len(gathered.other) < EVIDENCE_PER_VERDICT:
                    gathered.other.append(measurement)
                continue
            if verdict.status is not Status.OK:
                gathered.failures[failure] = None
            if len(gathered.failed) < EVIDENCE_PER_VERDICT:
                gathered.failed.append(measurement)

    def priority(key: tuple[str, str, str]) -> tuple[int, str, str, str]:
        verdict = wanted[key[0]][(key[1], key[2])][0]
        return (_KEEP_FIRST[verdict.status], verdict.platform, verdict.target, key[0])

    budget, capped = EVIDENCE_ROWS, 0
    result = {}
    for key in sorted(found, key=priority):
        gathered = found[key]
        kept = gathered.kept()
        if len(kept) > budget:
            kept, capped = kept[:budget], capped + 1
        budget -= len(kept)
        result[key] = (tuple(gathered.failures), tuple(kept), gathered.total)
    return result, capped


def _target_state(
    verdict: Verdict, gathered: tuple[tuple[str, ...], tuple[Measurement, ...], int] | None
) -> TargetState:
    if gathered is None:
        return TargetState(verdict, ())
    failures, kept, total = gathered
    return TargetState(verdict, failures, kept, total)


class _CoverageFacts(NamedTuple):
    software_versions: tuple[str, ...]
    probes: tuple[str, ...]
    runs: int


def _coverage(
    source: ReportSource,
    since: datetime | None,
    until: datetime | None,
    asns: Collection[int] | None,
    first: int,
    stop: int,
    networks: Sequence[int | None],
) -> tuple[tuple[CoverageLane, ...], _CoverageFacts]:
    """Runs and distinct probes per hour of the chart (the runs themselves, not their verdicts:
    a run whose verdicts were all filtered out still measured), all networks first, then each
    network when there are several; and the software versions and probes of those runs."""
    hours = stop - first
    runs: dict[int | None, list[int]] = {}
    hosts: dict[int | None, dict[int, set[str]]] = {}
    everywhere = [0] * hours
    everyone: dict[int, set[str]] = {}
    software: set[str] = set()
    probes: set[str] = set()
    names: dict[int | None, str] = {}
    count = 0
    for run in source.runs(since=since, until=until, asns=asns):
        index = hour_of(run.started_at) - first
        if not 0 <= index < hours:
            continue
        asn = run.network.asn
        if asn not in runs:
            runs[asn], hosts[asn] = [0] * hours, {}
        runs[asn][index] += 1
        hosts[asn].setdefault(index, set()).add(run.probe_id)
        everywhere[index] += 1
        everyone.setdefault(index, set()).add(run.probe_id)
        software.add(run.software_version)
        probes.add(run.probe_id)
        if run.network.as_name:
            names[asn] = run.network.as_name  # oldest first: the newest name stays
        count += 1

    def lane(
        label: str, asn: int | None, per_hour: list[int], who: dict[int, set[str]]
    ) -> CoverageLane:
        return CoverageLane(
            label, asn, tuple(per_hour), tuple(len(who.get(i, ())) for i in range(hours))
        )

    lanes = [lane("all networks", None, everywhere, everyone)]
    shown = sorted(set(networks) | set(runs), key=_asn_order)
    if len(shown) > 1:
        lanes += [
            lane(
                network_label(asn, names.get(asn)),
                asn,
                runs.get(asn, [0] * hours),
                hosts.get(asn, {}),
            )
            for asn in shown
        ]
    facts = _CoverageFacts(tuple(sorted(software)), tuple(sorted(probes)), count)
    return tuple(lanes), facts


def _named_by_events(asn: int | None, events: Sequence[Event]) -> bool:
    return any(event.asn == asn or asn in event.networks for event in events)


def _target_lanes(
    timeline: Timeline, asn: int | None, platform: str, first: int, stop: int
) -> tuple[Lane, ...]:
    return tuple(
        Lane(series.target or "", _target_cells(series, first, stop))
        for series in timeline.targets(asn, platform)
    )


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


class _Hour(NamedTuple):
    """One hour of a lane: what it shows, and the counts its shade and tooltip come from."""

    status: CellStatus
    technique: str | None
    level: int
    blocked: int
    evidence: int


def _bucket(series: Series, index: int) -> _Hour | None:
    """A target's bucket: blocked as soon as it holds a blocked verdict, shaded by share."""
    ok, blocked = series.ok[index], series.blocked[index]
    if blocked:
        technique = series.dominant_technique(index)
        level = shade_level(blocked, ok + blocked)
        return _Hour(CellStatus.BLOCKED, technique, level, blocked, ok + blocked)
    if ok:
        return _Hour(CellStatus.OK, None, 0, 0, ok)
    down, inconclusive = series.down[index], series.inconclusive[index]
    if down and down >= inconclusive:
        return _Hour(CellStatus.DOWN, None, 0, 0, 0)
    if inconclusive:
        return _Hour(CellStatus.INCONCLUSIVE, None, 0, 0, 0)
    return None


def _target_cells(series: Series, first: int, stop: int) -> tuple[Cell, ...]:
    def hour_cell(hour: int) -> _Hour | None:
        index = hour - series.first_hour
        if index < 0 or index >= len(series):
            return None
        return _bucket(series, index)

    low = max(first, series.first_hour)
    high = min(stop, series.first_hour + len(series))
    return _runs(hour_cell, first, low, high)


def _network_cells(members: Sequence[Series], first: int, stop: int) -> tuple[Cell, ...]:
    """A network lane: blocked when every target with evidence has a blocked verdict, partial
    when only some have; shaded by the blocked share of all its targets' evidence."""

    def hour_cell(hour: int) -> _Hour | None:
        statuses: Counter[CellStatus] = Counter()
        techniques: Counter[str] = Counter()
        blocked = evidence = 0
        for series in members:
            index = hour - series.first_hour
            if index < 0 or index >= len(series):
                continue
            bucket = _bucket(series, index)
            if bucket is None:
                continue
            statuses[bucket.status] += 1
            blocked += bucket.blocked
            evidence += bucket.evidence
            if bucket.technique is not None:
                techniques[bucket.technique] += 1
        technique = min(techniques, key=lambda t: (-techniques[t], t)) if techniques else None
        if blocked:
            status = CellStatus.PARTIAL if statuses[CellStatus.OK] else CellStatus.BLOCKED
            return _Hour(status, technique, shade_level(blocked, evidence), blocked, evidence)
        if evidence:
            return _Hour(CellStatus.OK, None, 0, 0, evidence)
        down, inconclusive = statuses[CellStatus.DOWN], statuses[CellStatus.INCONCLUSIVE]
        if down and down >= inconclusive:
            return _Hour(CellStatus.DOWN, None, 0, 0, 0)
        if inconclusive:
            return _Hour(CellStatus.INCONCLUSIVE, None, 0, 0, 0)
        return None

    low = max(first, min((s.first_hour for s in members), default=first))
    high = min(stop, max((s.first_hour + len(s) for s in members), default=first))
    return _runs(hour_cell, first, low, high)


def _runs(hour_cell: _HourCell, origin: int, first: int, stop: int) -> tuple[Cell, ...]:
    """The cells of hours [first, stop), consecutive hours with the same status, technique and
    shade as one (a month of hourly buckets is a few dozen shapes), their counts summed; cell
    starts count from hour `origin`."""
    cells: list[Cell] = []
    current: tuple[CellStatus, str | None, int] | None = None
    start = blocked = evidence = 0
    for hour in range(first, stop + 1):
        value = hour_cell(hour) if hour < stop else None
        shape = None if value is None else (value.status, value.technique, value.level)
        if shape == current and hour < stop and value is not None:
            blocked += value.blocked
            evidence += value.evidence
            continue
        if current is not None:
            status, technique, level = current
            cells.append(
                Cell(start - origin, hour - start, status, technique, blocked, evidence, level)
            )
        current, start = shape, hour
        blocked = value.blocked if value is not None else 0
        evidence = value.evidence if value is not None else 0
    return tuple(cells)


class _HourCell(Protocol):
    def __call__(self, hour: int, /) -> _Hour | None: ...
