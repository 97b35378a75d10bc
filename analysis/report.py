"""The report: stored verdicts over a period -> a report model -> terminal tables or one HTML page.

`build_report` streams the period's verdicts once into the timeline (analysis.timeline), keeping
aside only the newest verdict of each (network, platform, target); the event detector
(analysis.events) runs on that timeline, and the current state of each platform on each network
is the platform summary stored with the newest run that judged it. The chart lanes are the same
hourly buckets the detector reads, coloured the way it reads them: a bucket is blocked when its
blocked share of ok + blocked verdicts is above the detector's reference value k (halfway
between mu0 and mu1: 0.35 by default), so the picture and the events agree.

`report_tables` renders the model for a terminal (rich); `render_html` as one self-contained page
(inline CSS and SVG, no script, no external resource) that opens anywhere, offline.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Protocol

from rich.console import RenderableType
from rich.markup import escape
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from analysis.events import DetectorParams, detect_events_in
from analysis.export import VerdictSource, select_verdicts
from analysis.model import TECHNIQUE_CHANGE_SEPARATOR, Event, EventKind
from analysis.summaries import summarise
from analysis.timeline import Series, Timeline, build_timeline, hour_of, hour_start
from probe.model import Measurement, Run
from probe.records import PlatformSummary, Status, Verdict

# --- the model --------------------------------------------------------------------------------


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


# --- building ---------------------------------------------------------------------------------


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
        names: list[str | None] = list(platforms) if platforms else [None]
        measurements = tuple(m for name in names for m in source.latest_status(platform=name))
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


# --- labels shared by both renderings ---------------------------------------------------------


def network_label(asn: int | None, as_name: str | None = None) -> str:
    """ "AS58224 TCI", "AS58224", or "unknown network"."""
    if asn is None:
        return "unknown network"
    return f"AS{asn} {as_name}" if as_name else f"AS{asn}"


def networks_label(networks: Sequence[int | None]) -> str:
    return ", ".join("AS?" if asn is None else f"AS{asn}" for asn in networks)


def format_when(when: datetime) -> str:
    """Minutes in UTC: what a table cell needs."""
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def _period_text(report: Report) -> str:
    if report.first_hour is None:
        return "no verdicts"
    end = report.first_hour + timedelta(hours=report.hours)
    return f"{format_when(report.first_hour)} to {format_when(end)} UTC"


def _rate_text(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.0%}"


# --- terminal ---------------------------------------------------------------------------------

_RICH_STYLE = {
    "ok": "green",
    "blocked": "bold red",
    "partial": "red",
    "down": "yellow",
    "inconclusive": "dim",
    "blocking": "bold red",
    "intermittent": "red",
    "technique_change": "magenta",
}


def _styled(status: str) -> str:
    style = _RICH_STYLE.get(status)
    return f"[{style}]{status}[/{style}]" if style else escape(status)


def report_tables(report: Report) -> list[RenderableType]:
    """The report for a terminal: a heading, then per platform its state, verdicts and events."""
    if not report.verdicts:
        return _measurement_tables(report)
    out: list[RenderableType] = [
        Text(
            f"Verdicts {_period_text(report)}: {report.verdicts:,} verdicts from "
            f"{report.hosts} host(s) on {len(report.networks)} network(s); "
            f"{len(report.events)} event(s)."
        )
    ]
    for platform in report.platforms:
        several = len(platform.states) > 1
        out.append(Rule(f"[bold]{escape(platform.platform)}[/bold]", align="left"))
        state = Table(title=f"{platform.platform}: current state (newest run per network)")
        for column in ("network", "status", "blocked", "techniques", "hosts", "as of (UTC)"):
            state.add_column(column, overflow="fold")
        state.add_column("detail", overflow="fold", ratio=1)
        for s in platform.states:
            state.add_row(
                escape(network_label(s.asn, s.as_name)) + (f" ({s.country})" if s.country else ""),
                _styled(s.summary.status),
                f"{s.summary.blocked}/{s.summary.total}",
                escape(", ".join(s.summary.techniques)) or "-",
                str(s.hosts),
                format_when(s.measured_at),
                escape(s.summary.detail),
            )
        out.append(state)

        targets = Table(title=f"{platform.platform}: latest verdict per target")
        columns = ["network"] if several else []
        columns += ["target", "verdict", "technique", "confidence", "failures", "measured (UTC)"]
        for column in columns:
            targets.add_column(column, overflow="fold")
        targets.add_column("why", overflow="fold", ratio=1)
        for target in platform.targets:
            v = target.verdict
            row = [network_label(v.asn)] if several else []
            row += [
                escape(v.target),
                _styled(v.status),
                escape(v.technique or "-"),
                v.confidence.value if v.confidence else "-",
                escape(", ".join(target.failures)) or "-",
                format_when(v.measured_at),
                escape(v.detail),
            ]
            targets.add_row(*row)
        out.append(targets)

        if not platform.events:
            out.append(Text(f"{platform.platform}: no events in the period."))
            continue
        events = Table(title=f"{platform.platform}: events")
        for column in ("kind", "network(s)", "technique", "onset (UTC)", "end (UTC)"):
            events.add_column(column, overflow="fold")
        events.add_column("targets", overflow="fold", ratio=1)
        for column in ("hosts", "rate"):
            events.add_column(column, justify="right")
        for e in platform.events:
            events.add_row(
                _styled(e.kind),
                networks_label(e.networks),
                escape(e.technique or "-"),
                format_when(e.onset),
                "ongoing" if e.end is None else format_when(e.end),
                escape(", ".join(e.targets)),
                str(e.hosts),
                _rate_text(e.rate),
            )
        out.append(events)
    return out


def _measurement_tables(report: Report) -> list[RenderableType]:
    """Databases without verdicts (or a period without any): the newest measurement per
    endpoint, the table `probe report` has always shown."""
    if not report.latest_measurements:
        return [Text("No measurements yet: run `probe run` first.")]
    table = Table(title="Latest status per platform and endpoint")
    for column in ("platform", "target", "layer", "endpoint", "result", "measured (UTC)"):
        table.add_column(column, overflow="fold")
    for m in report.latest_measurements:
        obs = m.observation
        result = "[green]ok[/green]" if obs.ok else f"[red]{escape(str(obs.failure))}[/red]"
        when = obs.started_at.strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(
            escape(m.platform),
            escape(m.target),
            obs.layer.value,
            escape(obs.endpoint),
            result,
            when,
        )
    note = Text(
        "No verdicts stored for this period (databases written before verdicts existed hold "
        "measurements only): showing the newest measurement per endpoint."
    )
    return [note, table]


# --- HTML -------------------------------------------------------------------------------------

STATUS_COLOURS: dict[str, str] = {
    CellStatus.OK: "#8bc34a",
    CellStatus.DOWN: "#ffca28",
    CellStatus.INCONCLUSIVE: "#b0bec5",
}
NO_DATA_COLOUR = "#f3f4f6"

# Blocked cells take their technique's colour: distinct hues, none of them the green, amber or
# grey of the other statuses. Assigned in sorted technique order, so one report is consistent.
TECHNIQUE_PALETTE: tuple[str, ...] = (
    "#d32f2f",
    "#7b1fa2",
    "#1565c0",
    "#e65100",
    "#c2185b",
    "#00838f",
    "#4e342e",
    "#283593",
    "#ad1457",
    "#6d4c41",
    "#512da8",
    "#bf360c",
)
UNNAMED_TECHNIQUE_COLOUR = "#212121"


def technique_colours(report: Report) -> dict[str, str]:
    """The colour of each technique in this report's charts and legend."""
    return {
        technique: TECHNIQUE_PALETTE[index % len(TECHNIQUE_PALETTE)]
        for index, technique in enumerate(report.techniques)
    }


_CSS = """
body{font-family:"DejaVu Sans",Arial,Helvetica,sans-serif;margin:24px auto;max-width:1360px;
color:#1f2933;padding:0 16px;font-size:14px;line-height:1.4}
h1{font-size:24px;margin:0 0 4px}
h2{font-size:20px;margin:32px 0 8px;border-bottom:2px solid #d9dee3;padding-bottom:4px}
h3{font-size:15px;margin:16px 0 6px;color:#3e4c59}
p.meta{color:#52606d;margin:0 0 12px}
table{border-collapse:collapse;margin:4px 0 12px;width:100%}
th,td{border:1px solid #d9dee3;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f0f4f8;font-weight:600}td.num{text-align:right}
td.detail{color:#52606d;font-size:12px}td.when{white-space:nowrap}
.s-ok{color:#2e7d32;font-weight:600}.s-blocked{color:#c62828;font-weight:700}
.s-partial{color:#c62828}.s-down{color:#b26a00}.s-inconclusive{color:#607d8b}
.legend{display:flex;flex-wrap:wrap;gap:6px 18px;margin:8px 0 16px;align-items:center}
.legend span{display:inline-flex;align-items:center;gap:6px}
svg.timeline{width:100%;height:auto;display:block;margin:4px 0 8px}
details{margin:8px 0}summary{cursor:pointer;color:#3e4c59;font-weight:600}
.note{color:#52606d;font-size:12px}
"""


def render_html(report: Report) -> str:
    """The report as one self-contained HTML page."""
    colours = technique_colours(report)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>censorprobe report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>censorprobe report</h1>",
    ]
    if not report.verdicts:
        parts.append(_html_measurements(report))
        parts.append("</body></html>")
        return "\n".join(parts)
    params = report.params
    parts.append(
        f'<p class="meta">{_e(_period_text(report))} &middot; {report.verdicts:,} verdicts from '
        f"{report.hosts} host(s) on {len(report.networks)} network(s) &middot; "
        f"{len(report.events)} event(s) &middot; generated {_e(format_when(report.generated_at))}"
        " UTC</p>"
    )
    parts.append(_html_legend(report, colours))
    parts.append(
        '<p class="note">Each lane is one target (one network in scope) or one network (several).'
        f" A cell is one hour: blocked when the blocked share of its ok + blocked verdicts is "
        f"above {params.reference:.2f} (the event detector's reference, between mu0 = "
        f"{params.mu0:g} and mu1 = {params.mu1:g}); on a network lane, partial when only some of "
        "the platform's targets are. Down and inconclusive verdicts are not evidence either way. "
        "Numbered lines mark event onsets.</p>"
    )
    for platform in report.platforms:
        parts.append(_html_platform(report, platform, colours))
    parts.append("</body></html>")
    return "\n".join(parts)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _swatch(fill: str, pattern: bool = False) -> str:
    if pattern:
        return (
            '<svg width="16" height="12" aria-hidden="true"><rect width="16" height="12" '
            f'fill="#ffffff" stroke="{fill}"/><path d="M0 12L8 0M8 12L16 0" stroke="{fill}" '
            'stroke-width="3"/></svg>'
        )
    return (
        f'<svg width="16" height="12" aria-hidden="true"><rect class="swatch" width="16" '
        f'height="12" fill="{fill}"/></svg>'
    )


def _html_legend(report: Report, colours: dict[str, str]) -> str:
    items = []
    for technique, colour in colours.items():
        items.append(
            f'<span data-technique="{_e(technique)}" data-colour="{colour}">{_swatch(colour)}'
            f"blocked: {_e(technique)}</span>"
        )
    if any(c.technique is None and c.status is CellStatus.BLOCKED for c in _cells(report)):
        items.append(f"<span>{_swatch(UNNAMED_TECHNIQUE_COLOUR)}blocked: technique unknown</span>")
    if any(c.status is CellStatus.PARTIAL for c in _cells(report)):
        items.append(
            f"<span>{_swatch('#555555', pattern=True)}partial (stripes in the technique's "
            "colour)</span>"
        )
    for status in (CellStatus.OK, CellStatus.DOWN, CellStatus.INCONCLUSIVE):
        items.append(
            f'<span data-status="{status}" data-colour="{STATUS_COLOURS[status]}">'
            f"{_swatch(STATUS_COLOURS[status])}{status}</span>"
        )
    items.append(f"<span>{_swatch(NO_DATA_COLOUR)}no verdict</span>")
    return f'<div class="legend">{"".join(items)}</div>'


def _cells(report: Report) -> Iterator[Cell]:
    for platform in report.platforms:
        for lane in platform.lanes:
            yield from lane.cells


def _html_platform(report: Report, platform: PlatformReport, colours: dict[str, str]) -> str:
    name = _e(platform.platform)
    parts = [f'<section id="platform-{name}"><h2>{name}</h2>']
    parts.append("<h3>Current state (newest run per network)</h3><table><tr>")
    parts.append(
        "".join(
            f"<th>{c}</th>"
            for c in ("network", "status", "blocked", "techniques", "hosts", "as of (UTC)")
        )
        + "<th>detail</th></tr>"
    )
    for s in platform.states:
        country = f" ({_e(s.country)})" if s.country else ""
        parts.append(
            f"<tr><td>{_e(network_label(s.asn, s.as_name))}{country}</td>"
            f'<td class="s-{_e(s.summary.status)}">{_e(s.summary.status)}</td>'
            f'<td class="num">{s.summary.blocked}/{s.summary.total}</td>'
            f"<td>{_e(', '.join(s.summary.techniques) or '-')}</td>"
            f'<td class="num">{s.hosts}</td><td class="when">{_e(format_when(s.measured_at))}</td>'
            f'<td class="detail">{_e(s.summary.detail)}</td></tr>'
        )
    parts.append("</table>")
    lanes = "target" if platform.lane_kind is LaneKind.TARGET else "network"
    parts.append(f"<h3>Timeline (one lane per {lanes})</h3>")
    parts.append(_svg_chart(report, platform, colours))
    parts.append("<h3>Events</h3>")
    parts.append(_html_events(platform))
    parts.append(_html_targets(platform))
    parts.append("</section>")
    return "\n".join(parts)


def _html_targets(platform: PlatformReport) -> str:
    """The newest verdict per target, folded away (a <details> block opens without script)."""
    several = len(platform.states) > 1
    header = ["network"] if several else []
    header += ["target", "verdict", "technique", "confidence", "failures", "measured (UTC)", "why"]
    rows = [
        f"<details><summary>Latest verdict per target ({len(platform.targets)})</summary>",
        '<table class="targets"><tr>' + "".join(f"<th>{h}</th>" for h in header) + "</tr>",
    ]
    for target in platform.targets:
        v = target.verdict
        cells = [f"<td>{_e(network_label(v.asn))}</td>"] if several else []
        cells += [
            f"<td>{_e(v.target)}</td>",
            f'<td class="s-{_e(v.status)}">{_e(v.status)}</td>',
            f"<td>{_e(v.technique or '-')}</td>",
            f"<td>{_e(v.confidence or '-')}</td>",
            f"<td>{_e(', '.join(target.failures) or '-')}</td>",
            f'<td class="when">{_e(format_when(v.measured_at))}</td>',
            f'<td class="detail">{_e(v.detail)}</td>',
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    rows.append("</table></details>")
    return "\n".join(rows)


def _html_events(platform: PlatformReport) -> str:
    if not platform.events:
        return '<p class="note">No events in the period.</p>'
    header = (
        "#",
        "kind",
        "platform",
        "network(s)",
        "technique",
        "onset (UTC)",
        "end (UTC)",
        "targets",
        "hosts",
        "rate",
        "detail",
    )
    rows = ['<table class="events"><tr>' + "".join(f"<th>{h}</th>" for h in header) + "</tr>"]
    for number, e in enumerate(platform.events, 1):
        end = "ongoing" if e.end is None else format_when(e.end)
        kind_class = "blocked" if e.kind is EventKind.BLOCKING else e.kind
        rows.append(
            f'<tr><td class="num">{number}</td><td class="s-{_e(kind_class)}">{_e(e.kind)}</td>'
            f"<td>{_e(e.platform)}</td><td>{_e(networks_label(e.networks))}</td>"
            f'<td>{_e(e.technique or "-")}</td><td class="when">{_e(format_when(e.onset))}</td>'
            f'<td class="when">{_e(end)}</td><td>{_e(", ".join(e.targets))}</td>'
            f'<td class="num">{e.hosts}</td><td class="num">{_e(_rate_text(e.rate))}</td>'
            f'<td class="detail">{_e(e.detail)}</td></tr>'
        )
    rows.append("</table>")
    return "\n".join(rows)


# Chart geometry, in SVG user units (the chart scales to the page width).
_WIDTH = 1320
_LABEL_WIDTH = 200
_PLOT_WIDTH = _WIDTH - _LABEL_WIDTH - 12
_LANE_HEIGHT = 16
_LANE_GAP = 3
_TOP = 22
_BOTTOM = 26

# Tick spacings the time axis may use, in hours: the first giving at most _MAX_TICKS ticks.
_TICK_STEPS = (1, 2, 3, 6, 12, 24, 48, 72, 168, 336, 720, 2160, 8760)
_MAX_TICKS = 16


def _svg_chart(report: Report, platform: PlatformReport, colours: dict[str, str]) -> str:
    hours = max(report.hours, 1)
    scale = _PLOT_WIDTH / hours
    lanes = platform.lanes
    plot_top = _TOP
    plot_height = len(lanes) * (_LANE_HEIGHT + _LANE_GAP) - _LANE_GAP
    height = plot_top + plot_height + _BOTTOM
    x0 = _LABEL_WIDTH
    name = _e(platform.platform)
    out = [
        f'<svg class="timeline" data-platform="{name}" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {_WIDTH} {height}" width="{_WIDTH}" height="{height}" role="img" '
        f'aria-label="{name}: verdicts per hour" shape-rendering="crispEdges">'
    ]
    patterns = sorted(
        {c.technique for lane in lanes for c in lane.cells if c.status == "partial"},
        key=lambda t: t or "",
    )
    if patterns:
        out.append("<defs>")
        for technique in patterns:
            colour = _technique_colour(colours, technique)
            out.append(
                f'<pattern id="{_pattern_id(platform.platform, technique)}" width="6" height="6" '
                'patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
                f'<rect width="6" height="6" fill="#ffffff"/><rect width="3" height="6" '
                f'fill="{colour}"/></pattern>'
            )
        out.append("</defs>")
    assert report.first_hour is not None
    # Grid and tick labels first, so that cells are drawn over the grid lines.
    step = next(
        (s for s in _TICK_STEPS if s * scale >= _tick_room(s) and hours / s <= _MAX_TICKS),
        _TICK_STEPS[-1],
    )
    for tick in _ticks(report.first_hour, hours, step):
        x = x0 + tick * scale
        when = report.first_hour + timedelta(hours=tick)
        label = when.strftime(_tick_format(step))
        out.append(
            f'<line x1="{x:.2f}" y1="{plot_top - 4}" x2="{x:.2f}" '
            f'y2="{plot_top + plot_height + 4}" stroke="#cbd2d9" stroke-width="1"/>'
        )
        # Labels at the plot's edges would be cut in half: align them inwards.
        anchor = "middle"
        if tick * scale > _PLOT_WIDTH - 40:
            anchor = "end"
        elif tick * scale < 40:
            anchor = "start"
        out.append(
            f'<text x="{x:.2f}" y="{height - 8}" font-size="11" text-anchor="{anchor}" '
            f'fill="#52606d">{_e(label)}</text>'
        )
    for row, lane in enumerate(lanes):
        y = plot_top + row * (_LANE_HEIGHT + _LANE_GAP)
        out.append(
            f'<text x="{x0 - 8}" y="{y + _LANE_HEIGHT - 4}" font-size="12" text-anchor="end" '
            f'fill="#1f2933">{_e(_shorten(lane.label, 26))}<title>{_e(lane.label)}</title></text>'
        )
        out.append(
            f'<rect class="lane" x="{x0}" y="{y}" width="{_PLOT_WIDTH}" height="{_LANE_HEIGHT}" '
            f'fill="{NO_DATA_COLOUR}"/>'
        )
        for cell in lane.cells:
            if cell.status is CellStatus.PARTIAL:
                fill = f"url(#{_pattern_id(platform.platform, cell.technique)})"
            elif cell.status is CellStatus.BLOCKED:
                fill = _technique_colour(colours, cell.technique)
            else:
                fill = STATUS_COLOURS[cell.status]
            start = report.first_hour + timedelta(hours=cell.start)
            end = start + timedelta(hours=cell.hours)
            what = cell.status.value + (f" ({cell.technique})" if cell.technique else "")
            tip = f"{lane.label}: {what}, {format_when(start)} to {format_when(end)} UTC"
            technique = f' data-technique="{_e(cell.technique)}"' if cell.technique else ""
            out.append(
                f'<rect class="cell {cell.status}"{technique} x="{x0 + cell.start * scale:.2f}" '
                f'y="{y}" width="{max(cell.hours * scale, 1.0):.2f}" height="{_LANE_HEIGHT}" '
                f'fill="{fill}"><title>{_e(tip)}</title></rect>'
            )
    # Event onsets: a dashed line over the lanes and the event's number above them.
    placed: list[float] = []
    for number, event in enumerate(platform.events, 1):
        offset = (event.onset - report.first_hour) / timedelta(hours=1)
        if not 0 <= offset <= hours:
            continue
        x = x0 + offset * scale
        nudge = sum(1 for p in placed if abs(p - x) < 14)  # keep close labels apart
        placed.append(x)
        out.append(
            f'<line class="onset" x1="{x:.2f}" y1="{plot_top - 2}" x2="{x:.2f}" '
            f'y2="{plot_top + plot_height}" stroke="#111827" stroke-width="1.5" '
            'stroke-dasharray="3 2"/>'
        )
        out.append(
            f'<text x="{x + 3 + nudge * 12:.2f}" y="{plot_top - 8}" font-size="11" '
            f'font-weight="bold" fill="#111827">{number}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def _ticks(first: datetime, hours: int, step: int) -> list[int]:
    """Tick positions (hours from `first`): multiples of `step` hours since the epoch (whole
    days and hours, in UTC) up to a month; first days of months beyond."""
    if step < 720:
        return list(range((-hour_of(first)) % step, hours + 1, step))
    months = step // 720
    ticks: list[int] = []
    year, month = first.year, first.month
    while True:
        start = datetime(year, month, 1, tzinfo=UTC)
        offset = (start - first) // timedelta(hours=1)
        if offset > hours:
            return ticks
        if offset >= 0 and (year * 12 + month - 1) % months == 0:
            ticks.append(offset)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def _tick_format(step: int) -> str:
    """Hours within days, days within a month or so, dates (with the year) beyond."""
    if step < 24:
        return "%b %d %H:%M"
    return "%b %d" if step < 720 else "%Y-%m-%d"


def _tick_room(step: int) -> float:
    """Room a tick label needs (user units): "Mar 01 12:00", "Mar 01" or "2024-03-01", plus a gap
    wide enough for the labels at the plot's edges, which are aligned inwards."""
    return {"%b %d %H:%M": 120.0, "%b %d": 70.0}.get(_tick_format(step), 110.0)


def _technique_colour(colours: dict[str, str], technique: str | None) -> str:
    return UNNAMED_TECHNIQUE_COLOUR if technique is None else colours[technique]


def _pattern_id(platform: str, technique: str | None) -> str:
    """An id for a partial-cell pattern: letters, digits and dashes only."""
    raw = f"partial-{platform}-{technique or 'unknown'}"
    return "".join(c if c.isalnum() or c == "-" else "-" for c in raw)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _html_measurements(report: Report) -> str:
    if not report.latest_measurements:
        return "<p>No measurements yet: run <code>probe run</code> first.</p>"
    rows = [
        "<p>No verdicts stored for this period (databases written before verdicts existed hold "
        "measurements only): the newest measurement per endpoint.</p><table><tr>"
        + "".join(
            f"<th>{c}</th>"
            for c in ("platform", "target", "layer", "endpoint", "result", "measured (UTC)")
        )
        + "</tr>"
    ]
    for m in report.latest_measurements:
        obs = m.observation
        result = "ok" if obs.ok else str(obs.failure)
        css = "s-ok" if obs.ok else "s-blocked"
        rows.append(
            f"<tr><td>{_e(m.platform)}</td><td>{_e(m.target)}</td><td>{_e(obs.layer)}</td>"
            f'<td>{_e(obs.endpoint)}</td><td class="{css}">{_e(result)}</td>'
            f"<td>{_e(obs.started_at.strftime('%Y-%m-%d %H:%M:%S'))}</td></tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)
