"""A report as one self-contained HTML page: inline CSS and SVG timeline charts, no script, no
external resource, so that it opens anywhere, offline."""

from __future__ import annotations

import html
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from analysis.model import EventKind
from analysis.report.labels import (
    format_when,
    network_label,
    networks_label,
    period_text,
    rate_text,
)
from analysis.report.model import Cell, CellStatus, LaneKind, PlatformReport, Report
from analysis.timeline import hour_of

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
        f'<p class="meta">{_e(period_text(report))} &middot; {report.verdicts:,} verdicts from '
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
            f'<td class="num">{e.hosts}</td><td class="num">{_e(rate_text(e.rate))}</td>'
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
