"""The report's charts as inline SVG: a timeline per platform (one lane per target or per network,
each hour shaded by its blocked share) and the coverage chart (runs and probes per hour).

A chart is HTML rows (a label, then an SVG strip), so that labels are text the page lays out and
wraps, whatever its width: the strips have no viewBox, and their geometry is in percent of their
width, so they stretch without shrinking any text (legible at 700 px as at 1400). Colours are
presentation attributes, not styles, so the page's Content-Security-Policy needs no
'unsafe-inline'.
"""

from __future__ import annotations

import html
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

from analysis.report.labels import format_when
from analysis.report.model import (
    SHADE_LEVELS,
    Cell,
    CellStatus,
    CoverageLane,
    Lane,
    Report,
)
from analysis.timeline import hour_of
from probe.visible import visible

STATUS_COLOURS: dict[str, str] = {
    CellStatus.OK: "#8bc34a",
    CellStatus.DOWN: "#ffca28",
    CellStatus.INCONCLUSIVE: "#b0bec5",
}
NO_DATA_COLOUR = "#f3f4f6"
RUNS_COLOUR = "#52606d"
HOSTS_COLOUR = "#3f7cac"
NO_RUN_STRIPE = "#9aa5b1"

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

# How much of a technique's colour (over white) each shade step takes: step SHADE_LEVELS is the
# colour itself, step 1 (a blocked share up to 1/4) still far from the lane's grey and from ok.
_SHADE_STRENGTH = (0.0, 0.32, 0.55, 0.78, 1.0)
assert len(_SHADE_STRENGTH) == SHADE_LEVELS + 1

# Tick spacings the time axis may use, in hours: the first leaving room for every label on a
# strip as narrow as it gets at 700 px (about 560 px).
_TICK_STEPS = (1, 2, 3, 6, 12, 24, 48, 72, 168, 336, 720, 2160, 8760)
_NARROW_STRIP_PX = 560
# A cell is never drawn narrower than this share of the strip (one pixel at 700 px): a single
# blocked hour in a year stays visible.
_MIN_WIDTH_PERCENT = 0.18


def technique_colours(report: Report) -> dict[str, str]:
    """The colour of each technique in this report's charts and legend."""
    return {
        technique: TECHNIQUE_PALETTE[index % len(TECHNIQUE_PALETTE)]
        for index, technique in enumerate(report.techniques)
    }


def shade(colour: str, level: int) -> str:
    """`colour` at shade step `level` (1..SHADE_LEVELS): mixed with white."""
    strength = _SHADE_STRENGTH[max(1, min(level, SHADE_LEVELS))]
    value = colour.lstrip("#")
    channels = (int(value[i : i + 2], 16) for i in (0, 2, 4))
    mixed = (round(255 - (255 - c) * strength) for c in channels)
    return "#" + "".join(f"{c:02x}" for c in mixed)


def technique_colour(colours: dict[str, str], technique: str | None) -> str:
    return UNNAMED_TECHNIQUE_COLOUR if technique is None else colours[technique]


def cells_of(report: Report) -> Iterator[Cell]:
    for platform in report.platforms:
        for lane in platform.lanes:
            yield from lane.cells
        for group in platform.network_lanes:
            for lane in group.lanes:
                yield from lane.cells


def pattern_defs(report: Report, colours: dict[str, str]) -> str:
    """One hidden SVG holding the fill patterns the charts use: stripes for partial cells (per
    technique and shade) and the hatching of hours without any run."""
    partial = sorted(
        {(c.technique or "", c.level) for c in cells_of(report) if c.status is CellStatus.PARTIAL}
    )
    out = ['<svg class="defs" width="0" height="0" aria-hidden="true"><defs>']
    for technique, level in partial:
        fill = shade(technique_colour(colours, technique or None), level)
        out.append(
            f'<pattern id="{pattern_id(technique or None, level)}" width="6" height="6" '
            'patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
            f'<rect width="6" height="6" fill="#ffffff"/><rect width="3" height="6" '
            f'fill="{fill}"/></pattern>'
        )
    out.append(
        '<pattern id="no-run" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" fill="#ffffff"/>'
        f'<rect width="2" height="6" fill="{NO_RUN_STRIPE}"/></pattern>'
    )
    out.append("</defs></svg>")
    return "".join(out)


def pattern_id(technique: str | None, level: int) -> str:
    """An id for a partial-cell pattern: letters, digits and dashes only."""
    raw = f"partial-{technique or 'unknown'}-{level}"
    return "".join(c if c.isalnum() or c == "-" else "-" for c in raw)


def swatch(fill: str) -> str:
    return (
        '<svg class="swatch" width="16" height="12" aria-hidden="true"><rect width="16" '
        f'height="12" fill="{fill}" stroke="#9aa5b1" stroke-width="0.5"/></svg>'
    )


def timeline(
    report: Report,
    lanes: Sequence[Lane],
    colours: dict[str, str],
    *,
    platform: str,
    onsets: Sequence[datetime] = (),
    network: int | None = None,
) -> str:
    """One chart: a row per lane (its label, then its hours), an axis, and the numbered onsets
    of `onsets` (event 1 first) drawn over the lanes."""
    assert report.first_hour is not None
    hours = max(report.hours, 1)
    ticks = _axis(report.first_hour, hours)
    where = "" if network is None else f' data-network="{network}"'
    out = [f'<div class="timeline" data-platform="{_e(platform)}"{where}>']
    marks = [
        (number, (onset - report.first_hour) / timedelta(hours=1) / hours * 100)
        for number, onset in enumerate(onsets, 1)
        if 0 <= (onset - report.first_hour) / timedelta(hours=1) <= hours
    ]
    if marks:
        out.append('<div class="row marks"><span class="label">events</span><svg>')
        placed: list[float] = []
        for number, x in marks:
            nudge = sum(1 for p in placed if abs(p - x) < 2.5)  # keep close numbers apart
            placed.append(x)
            anchor = "end" if x > 97 else "start"
            out.append(
                f'<text x="{x:.3f}%" y="12" dx="{(3 + 12 * nudge) * (-1 if x > 97 else 1)}" '
                f'text-anchor="{anchor}" font-size="11" font-weight="bold" '
                f'fill="#111827">{number}</text>'
            )
        out.append("</svg></div>")
    grid = "".join(
        f'<line x1="{x:.3f}%" y1="0" x2="{x:.3f}%" y2="100%" stroke="#cbd2d9" stroke-width="1"/>'
        for x, _ in ticks
    )
    onset_lines = "".join(
        f'<line class="onset" x1="{x:.3f}%" y1="0" x2="{x:.3f}%" y2="100%" stroke="#111827" '
        'stroke-width="1.5" stroke-dasharray="3 2"/>'
        for _, x in marks
    )
    for lane in lanes:
        out.append(
            f'<div class="row"><span class="label" title="{_e(lane.label)}">{_e(lane.label)}'
            '</span><svg class="strip" shape-rendering="crispEdges">'
            f'<rect class="lane" width="100%" height="100%" fill="{NO_DATA_COLOUR}"/>{grid}'
        )
        out.extend(_cell(report, lane.label, cell, hours, colours) for cell in lane.cells)
        out.append(f"{onset_lines}</svg></div>")
    out.append(_axis_row(ticks))
    out.append("</div>")
    return "".join(out)


def _cell(report: Report, label: str, cell: Cell, hours: int, colours: dict[str, str]) -> str:
    assert report.first_hour is not None
    if cell.status is CellStatus.PARTIAL:
        fill = f"url(#{pattern_id(cell.technique, cell.level)})"
    elif cell.status is CellStatus.BLOCKED:
        fill = shade(technique_colour(colours, cell.technique), cell.level)
    else:
        fill = STATUS_COLOURS[cell.status]
    start = report.first_hour + timedelta(hours=cell.start)
    end = start + timedelta(hours=cell.hours)
    what = cell.status.value + (f" ({cell.technique})" if cell.technique else "")
    if cell.blocked:
        what += f", {cell.blocked} of {cell.evidence} verdicts blocked ({cell.share:.0%})"
    elif cell.evidence:
        what += f", {cell.evidence} verdicts"
    tip = f"{label}: {what}, {format_when(start)} to {format_when(end)} UTC"
    technique = f' data-technique="{_e(cell.technique)}"' if cell.technique else ""
    level = f' data-level="{cell.level}"' if cell.level else ""
    x = cell.start / hours * 100
    width = max(cell.hours / hours * 100, _MIN_WIDTH_PERCENT)
    return (
        f'<rect class="cell {cell.status}"{technique}{level} x="{x:.3f}%" width="{width:.3f}%" '
        f'height="100%" fill="{fill}"><title>{_e(tip)}</title></rect>'
    )


def coverage_chart(report: Report) -> str:
    """Runs and probes per hour on all networks (bars), then runs per hour on each network;
    an hour with no run is hatched: no data, not ok."""
    assert report.first_hour is not None
    hours = max(report.hours, 1)
    ticks = _axis(report.first_hour, hours)
    out = ['<div class="timeline coverage">']
    total = report.coverage[0]
    rows: list[tuple[str, str, tuple[int, ...], tuple[int, ...], str]] = [
        ("runs per hour", total.label, total.runs, total.runs, RUNS_COLOUR),
        ("hosts per hour", total.label, total.hosts, total.runs, HOSTS_COLOUR),
    ]
    rows += [
        (lane.label, lane.label, lane.runs, lane.runs, RUNS_COLOUR) for lane in report.coverage[1:]
    ]
    for title, scope, values, runs, colour in rows:
        tall = title in ("runs per hour", "hosts per hour")
        height = 36 if tall else 18
        top = max(values, default=0) or 1
        kind = "runs" if title != "hosts per hour" else "hosts"
        out.append(
            f'<div class="row"><span class="label" title="{_e(title)}">{_e(title)}</span>'
            f'<svg class="{"bars" if tall else "strip"}" data-scope="{_e(scope)}" '
            f'data-kind="{kind}" shape-rendering="crispEdges">'
        )
        for start, length, value, ran in _stretches(values, runs):
            x = start / hours * 100
            width = max(length / hours * 100, _MIN_WIDTH_PERCENT)
            begin = report.first_hour + timedelta(hours=start)
            span = f"{format_when(begin)} to {format_when(begin + timedelta(hours=length))} UTC"
            if not ran:
                out.append(
                    f'<rect class="nodata" data-start="{start}" data-hours="{length}" '
                    f'x="{x:.3f}%" width="{width:.3f}%" height="100%" fill="url(#no-run)">'
                    f"<title>{_e(f'{scope}: no run, no data (not ok), {span}')}</title></rect>"
                )
                continue
            bar = max(2.0, value / top * height)
            out.append(
                f'<rect class="{kind}" data-start="{start}" data-hours="{length}" '
                f'data-count="{value}" x="{x:.3f}%" y="{height - bar:.1f}" width="{width:.3f}%" '
                f'height="{bar:.1f}" fill="{colour}">'
                f"<title>{_e(f'{scope}: {value} {kind} an hour, {span}')}</title></rect>"
            )
        out.append("</svg></div>")
    out.append(_axis_row(ticks))
    out.append("</div>")
    return "".join(out)


def _stretches(values: Sequence[int], runs: Sequence[int]) -> Iterator[tuple[int, int, int, bool]]:
    """(start, hours, value, any run) of consecutive hours with the same value and coverage."""
    start = 0
    for hour in range(1, len(values) + 1):
        if (
            hour < len(values)
            and values[hour] == values[start]
            and (bool(runs[hour]) == bool(runs[start]))
        ):
            continue
        yield start, hour - start, values[start], bool(runs[start])
        start = hour


def coverage_summary(lane: CoverageLane) -> str:
    missing = lane.hours_without_runs
    return f"{lane.label}: {missing} of {len(lane.runs)} hour(s) without any run"


def _axis(first: datetime, hours: int) -> list[tuple[float, str]]:
    """Tick positions (percent of the strip) and their labels."""
    step = next(
        (s for s in _TICK_STEPS if s / hours * _NARROW_STRIP_PX >= _tick_room(s)),
        _TICK_STEPS[-1],
    )
    return [
        (tick / hours * 100, (first + timedelta(hours=tick)).strftime(_tick_format(step)))
        for tick in _ticks(first, hours, step)
    ]


def _axis_row(ticks: Sequence[tuple[float, str]]) -> str:
    out = ['<div class="row axis"><span class="label"></span><svg>']
    for x, label in ticks:
        # Labels at the strip's edges would be cut in half: align them inwards.
        anchor = "end" if x > 92 else "start" if x < 8 else "middle"
        out.append(
            f'<text x="{x:.3f}%" y="13" font-size="11" text-anchor="{anchor}" '
            f'fill="#52606d">{_e(label)}</text>'
        )
    out.append("</svg></div>")
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
    """Pixels a tick label needs at 11 px: "Mar 01 12:00", "Mar 01" or "2024-03-01", plus a gap."""
    return {"%b %d %H:%M": 95.0, "%b %d": 55.0}.get(_tick_format(step), 80.0)


def escape_html(text: object) -> str:
    """Outside text (names, titles, details) as HTML: escaped, its control and bidi characters
    shown as escapes (probe.visible), as the terminal shows them."""
    return html.escape(visible(text), quote=True)


_e = escape_html
