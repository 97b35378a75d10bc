"""A report as one self-contained HTML page: an overview (platforms x networks, linked to the
sections), the coverage chart, per platform its state, timeline, events and latest verdicts with
the measurements they rest on, and a footer saying what made the report.

Inline CSS (allowed by its hash in a strict Content-Security-Policy) and SVG, no script, no
external resource: it opens anywhere, offline, and nothing in it can load or run anything. Every
string from the store (targets, AS names, failure text, DNS answers, certificate names, HTTP
titles) is outside input and is escaped.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence

from analysis.model import EventKind
from analysis.report.charts import (
    NO_DATA_COLOUR,
    STATUS_COLOURS,
    UNNAMED_TECHNIQUE_COLOUR,
    cells_of,
    coverage_chart,
    coverage_summary,
    pattern_defs,
    shade,
    swatch,
    technique_colours,
    timeline,
)
from analysis.report.charts import (
    escape_html as _e,
)
from analysis.report.labels import (
    format_when,
    measurement_facts,
    network_label,
    networks_label,
    period_text,
    rate_text,
)
from analysis.report.model import (
    EVIDENCE_PER_VERDICT,
    EVIDENCE_ROWS,
    SHADE_LEVELS,
    CellStatus,
    LaneKind,
    NetworkState,
    PlatformReport,
    Report,
    TargetState,
)
from probe.model import Measurement

# Probes listed by id in the footer; more are counted.
_LISTED_PROBES = 40

_CSS = """
body{font-family:"DejaVu Sans",Arial,Helvetica,sans-serif;margin:24px auto;max-width:1360px;
color:#1f2933;padding:0 16px;font-size:14px;line-height:1.4;overflow-wrap:break-word}
h1{font-size:24px;margin:0 0 4px}
h2{font-size:20px;margin:32px 0 8px;border-bottom:2px solid #d9dee3;padding-bottom:4px}
h3{font-size:15px;margin:16px 0 6px;color:#3e4c59}
p.meta{color:#52606d;margin:0 0 8px}
nav{margin:0 0 12px;display:flex;flex-wrap:wrap;gap:4px 14px}
a{color:#1d4ed8}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;margin:4px 0 12px;width:100%}
th,td{border:1px solid #d9dee3;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f0f4f8;font-weight:600}td.num{text-align:right}
td.detail{color:#52606d;font-size:12px}.when{white-space:nowrap}
table.overview td{text-align:center}table.overview td a{display:block;text-decoration:none;
color:inherit}table.overview small{display:block;color:#3e4c59}
.o-blocked{background:#fde0dc}.o-partial{background:#fdf0d5}.o-ok{background:#e6f4d7}
.o-down{background:#fff3c4}.o-inconclusive{background:#eceff1}.o-none{color:#9aa5b1}
.s-ok{color:#2e7d32;font-weight:600}.s-blocked{color:#c62828;font-weight:700}
.s-partial{color:#c62828}.s-down{color:#b26a00}.s-inconclusive{color:#607d8b}
.legend{display:flex;flex-wrap:wrap;gap:6px 18px;margin:8px 0 8px;align-items:center}
.legend span{display:inline-flex;align-items:center;gap:6px}
svg.defs{position:absolute;width:0;height:0;overflow:hidden}
.timeline{margin:4px 0 10px}
.timeline .row{display:grid;grid-template-columns:12em minmax(0,1fr);column-gap:8px;
align-items:center;margin-top:3px}
.timeline .label{font-size:12px;text-align:right;white-space:nowrap;overflow:hidden;
text-overflow:ellipsis}
.timeline svg{display:block;width:100%;height:16px}
.timeline svg.bars{height:36px;background:#ffffff;border-bottom:1px solid #cbd2d9}
.timeline .marks svg{height:14px}.timeline .axis svg{height:16px}
.coverage svg.strip{height:18px}
details{margin:6px 0}summary{cursor:pointer;color:#3e4c59;font-weight:600}
details.verdict{border:1px solid #d9dee3;border-left-width:4px;padding:3px 8px;margin:4px 0}
details.verdict summary{font-weight:400;color:#1f2933}
details.verdict.v-blocked{border-left-color:#c62828}details.verdict.v-ok{border-left-color:#8bc34a}
details.verdict.v-down{border-left-color:#ffca28}
details.verdict.v-inconclusive{border-left-color:#b0bec5}
details.verdict:target{outline:2px solid #1d4ed8}
dl.facts{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:2px 12px;margin:6px 0}
dl.facts dt{color:#52606d}dl.facts dd{margin:0}
ol.evidence{margin:4px 0 6px;padding-left:22px;font-size:13px}ol.evidence li{margin:2px 0}
code{font-family:"DejaVu Sans Mono",monospace;font-size:12px}
.note{color:#52606d;font-size:12px}
footer{margin-top:32px}
@media (max-width:820px){table.events,table.events tbody,table.events tr,table.events td{
display:block}table.events tr:first-child{display:none}table.events tr{border:1px solid #d9dee3;
margin:0 0 8px}table.events td{border:0;text-align:left}
table.events td::before{content:attr(data-label) ": ";color:#52606d;font-weight:600}}
@media (max-width:760px){
body{margin:12px auto;padding:0 10px}
.timeline .row{grid-template-columns:minmax(0,1fr);margin-top:2px}
.timeline .label{text-align:left}.timeline .axis .label,.timeline .marks .label{display:none}
dl.facts{grid-template-columns:minmax(0,1fr)}dl.facts dd{margin:0 0 4px}
}
"""

# Nothing may load or run: no script, no fetch, no form; only this stylesheet, by its hash.
_CSP = (
    "default-src 'none'; style-src 'sha256-"
    + base64.b64encode(hashlib.sha256(_CSS.encode()).digest()).decode()
    + "'; img-src 'none'; base-uri 'none'; form-action 'none'"
)


def render_html(report: Report) -> str:
    """The report as one self-contained HTML page."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        '<meta name="referrer" content="no-referrer">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>censorprobe report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>censorprobe report</h1>",
    ]
    if not report.verdicts:
        parts.append(_html_measurements(report))
        parts.append("</body></html>")
        return "\n".join(parts)
    colours = technique_colours(report)
    ids = _section_ids(report.platforms)
    parts.append(
        f'<p class="meta">{_e(period_text(report))} &middot; {report.verdicts:,} verdicts from '
        f"{report.hosts} host(s) on {len(report.networks)} network(s) &middot; "
        f"{len(report.events)} event(s) &middot; generated {_e(format_when(report.generated_at))}"
        " UTC</p>"
    )
    links = [("overview", "Overview"), ("coverage", "Coverage")]
    links += [(ids[p.platform], p.platform) for p in report.platforms]
    links.append(("about", "About this report"))
    parts.append(
        "<nav>" + "".join(f'<a href="#{i}">{_e(text)}</a>' for i, text in links) + "</nav>"
    )
    parts.append(pattern_defs(report, colours))
    parts.append(_html_overview(report, ids))
    parts.append(_html_coverage(report))
    parts.append('<section id="charts"><h2>Reading the timelines</h2>')
    parts.append(_html_legend(report, colours))
    parts.append(
        '<p class="note">Each lane is one target (one network in scope) or one network (several;'
        " the targets of a network an event names are drawn below it). A cell is one hour: "
        "shaded in the technique's colour as soon as it holds a blocked verdict, the darker the "
        "larger the blocked share of its ok + blocked verdicts, so a single blocked verdict "
        "shows; on a network lane, striped when only some of the platform's targets have "
        "blocked verdicts. Down and inconclusive verdicts are not evidence either way; grey "
        "hours hold no verdict (see the coverage chart for hours without runs). Whether a "
        "change is significant is the event detector's call (CUSUM, mu0 = "
        f"{report.params.mu0:g}, mu1 = {report.params.mu1:g}): numbered lines mark event "
        "onsets. Hover a cell for its counts.</p></section>"
    )
    for platform in report.platforms:
        parts.append(_html_platform(report, platform, colours, ids[platform.platform]))
    parts.append(_html_footer(report))
    parts.append("</body></html>")
    return "\n".join(parts)


def _slug(text: str) -> str:
    """Letters, digits and dashes only: safe in an id and in a #fragment."""
    return "".join(c if c.isascii() and (c.isalnum() or c == "-") else "-" for c in text.lower())


def _section_ids(platforms: Sequence[PlatformReport]) -> dict[str, str]:
    """A distinct section id per platform (platform names are outside input)."""
    ids: dict[str, str] = {}
    taken: set[str] = set()
    for index, platform in enumerate(platforms):
        candidate = f"platform-{_slug(platform.platform)}"
        if candidate in taken:
            candidate = f"{candidate}-{index}"
        taken.add(candidate)
        ids[platform.platform] = candidate
    return ids


def _state_id(section: str, asn: int | None) -> str:
    return f"{section}-as{'unknown' if asn is None else asn}"


def _html_overview(report: Report, ids: dict[str, str]) -> str:
    """Networks down, platforms across: each cell the platform's current state on the network
    (its newest run's summary), linked to that row of the platform's section."""
    states: dict[tuple[int | None, str], NetworkState] = {
        (s.asn, p.platform): s for p in report.platforms for s in p.states
    }
    names = {s.asn: s for p in report.platforms for s in p.states}
    out = [
        '<section id="overview"><h2>Overview: current state</h2>',
        '<div class="scroll"><table class="overview"><tr><th>network</th>',
    ]
    out += [f'<th><a href="#{ids[p.platform]}">{_e(p.platform)}</a></th>' for p in report.platforms]
    out.append("</tr>")
    for asn in report.networks:
        known = names.get(asn)
        label = network_label(asn, known.as_name if known else None)
        country = f" ({_e(known.country)})" if known and known.country else ""
        out.append(f"<tr><th>{_e(label)}{country}</th>")
        for platform in report.platforms:
            state = states.get((asn, platform.platform))
            if state is None:
                out.append('<td class="o-none">not measured</td>')
                continue
            summary = state.summary
            techniques = ", ".join(summary.techniques)
            tip = f"{platform.platform} on {label}: {summary.status}"
            tip += f" ({techniques})" if techniques else ""
            tip += f", as of {format_when(state.measured_at)} UTC"
            anchor = _state_id(ids[platform.platform], asn)
            out.append(
                f'<td class="o-{_e(summary.status)}"><a href="#{anchor}" title="{_e(tip)}">'
                f"{_e(summary.status)} {summary.blocked}/{summary.total}"
                + (f"<small>{_e(techniques)}</small>" if techniques else "")
                + "</a></td>"
            )
        out.append("</tr>")
    out.append("</table></div>")
    out.append(
        '<p class="note">Each cell: the platform\'s state in the newest run that judged it on '
        "that network, and how many of its targets were blocked; it links to the platform's "
        "section.</p></section>"
    )
    return "\n".join(out)


def _html_coverage(report: Report) -> str:
    out = ['<section id="coverage"><h2>Coverage: runs and hosts per hour</h2>']
    if not report.coverage:
        out.append('<p class="note">No runs recorded for this period.</p></section>')
        return "\n".join(out)
    out.append(
        '<div class="legend">'
        f"<span>{swatch('#52606d')}runs started in the hour</span>"
        f"<span>{swatch('#3f7cac')}distinct hosts (probes) that ran</span>"
        '<span><svg class="swatch" width="16" height="12" aria-hidden="true"><rect width="16" '
        'height="12" fill="url(#no-run)" stroke="#9aa5b1" stroke-width="0.5"/></svg>'
        "no run: no data (not ok)</span></div>"
    )
    out.append(coverage_chart(report))
    missing = [lane for lane in report.coverage if lane.hours_without_runs]
    if missing:
        out.append(
            '<p class="note">Hours without any run say nothing about blocking: '
            + "; ".join(_e(coverage_summary(lane)) for lane in missing)
            + ".</p>"
        )
    else:
        out.append('<p class="note">Every hour of the period has at least one run.</p>')
    out.append("</section>")
    return "\n".join(out)


def _html_legend(report: Report, colours: dict[str, str]) -> str:
    items = []
    for technique, colour in colours.items():
        items.append(
            f'<span data-technique="{_e(technique)}" data-colour="{colour}">{swatch(colour)}'
            f"blocked: {_e(technique)}</span>"
        )
    cells = list(cells_of(report))
    if any(c.technique is None and c.status is CellStatus.BLOCKED for c in cells):
        items.append(f"<span>{swatch(UNNAMED_TECHNIQUE_COLOUR)}blocked: technique unknown</span>")
    base = next(iter(colours.values()), UNNAMED_TECHNIQUE_COLOUR)
    steps = "".join(swatch(shade(base, level)) for level in range(1, SHADE_LEVELS + 1))
    items.append(
        f'<span class="shades">blocked share {steps} up to 25%, 50%, 75%, 100% of the '
        "hour's verdicts</span>"
    )
    if any(c.status is CellStatus.PARTIAL for c in cells):
        items.append(
            '<span><svg class="swatch" width="16" height="12" aria-hidden="true"><rect '
            'width="16" height="12" fill="#ffffff" stroke="#555555"/><path d="M0 12L8 0M8 12L16 '
            '0" stroke="#555555" stroke-width="3"/></svg>partial: only some targets (stripes in '
            "the technique's shade)</span>"
        )
    for status in (CellStatus.OK, CellStatus.DOWN, CellStatus.INCONCLUSIVE):
        items.append(
            f'<span data-status="{status}" data-colour="{STATUS_COLOURS[status]}">'
            f"{swatch(STATUS_COLOURS[status])}{status}</span>"
        )
    items.append(f"<span>{swatch(NO_DATA_COLOUR)}no verdict</span>")
    return f'<div class="legend">{"".join(items)}</div>'


def _html_platform(
    report: Report, platform: PlatformReport, colours: dict[str, str], section: str
) -> str:
    name = _e(platform.platform)
    verdict_ids = {
        (t.verdict.asn, t.verdict.target): f"{section}-v{index}"
        for index, t in enumerate(platform.targets)
    }
    parts = [f'<section id="{section}"><h2>{name}</h2>']
    parts.append('<h3>Current state (newest run per network)</h3><div class="scroll"><table><tr>')
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
            f'<tr id="{_state_id(section, s.asn)}"><td>{_e(network_label(s.asn, s.as_name))}'
            f'{country}</td><td class="s-{_e(s.summary.status)}">{_e(s.summary.status)}</td>'
            f'<td class="num">{s.summary.blocked}/{s.summary.total}</td>'
            f"<td>{_e(', '.join(s.summary.techniques) or '-')}</td>"
            f'<td class="num">{s.hosts}</td><td class="when">{_e(format_when(s.measured_at))}</td>'
            f'<td class="detail">{_e(s.summary.detail)}</td></tr>'
        )
    parts.append("</table></div>")
    lanes = "target" if platform.lane_kind is LaneKind.TARGET else "network"
    onsets = [event.onset for event in platform.events]
    parts.append(f"<h3>Timeline (one lane per {lanes})</h3>")
    parts.append(
        timeline(report, platform.lanes, colours, platform=platform.platform, onsets=onsets)
    )
    for group in platform.network_lanes:
        parts.append(
            f"<details open><summary>Targets on {_e(group.label)}</summary>"
            + timeline(
                report,
                group.lanes,
                colours,
                platform=platform.platform,
                onsets=onsets,
                network=group.asn,
            )
            + "</details>"
        )
    parts.append("<h3>Events</h3>")
    parts.append(_html_events(platform, verdict_ids))
    parts.append(f"<h3>Latest verdict per target ({len(platform.targets)})</h3>")
    parts.append(_html_targets(platform, verdict_ids))
    parts.append("</section>")
    return "\n".join(parts)


def _html_targets(platform: PlatformReport, verdict_ids: dict[tuple[int | None, str], str]) -> str:
    """The newest verdict per target, each folded (a <details> block opens without script) over
    why it was reached and the measurements it rests on."""
    several = len(platform.states) > 1
    rows = ['<div class="verdicts">']
    for target in platform.targets:
        v = target.verdict
        where = f" &middot; {_e(network_label(v.asn))}" if several else ""
        technique = f" &middot; {_e(v.technique)}" if v.technique else ""
        failures = f" &middot; {_e(', '.join(target.failures))}" if target.failures else ""
        rows.append(
            f'<details class="verdict v-{_e(v.status)}" id="{verdict_ids[(v.asn, v.target)]}">'
            f'<summary><span class="s-{_e(v.status)}">{_e(v.status)}</span> '
            f"<strong>{_e(v.target)}</strong>{where}{technique}{failures} &middot; "
            f'<span class="when">{_e(format_when(v.measured_at))}</span></summary>'
        )
        facts = [
            ("why", v.detail or "-"),
            ("rule", f"{v.rule_id} (rules {v.rules_version})"),
            ("confidence", v.confidence or "-"),
            ("run", f"{v.run_id} (probe {v.probe_id})"),
            ("measured", f"{format_when(v.measured_at)} UTC"),
        ]
        rows.append(
            '<dl class="facts">'
            + "".join(f"<dt>{_e(k)}</dt><dd>{_e(value)}</dd>" for k, value in facts)
            + "</dl>"
        )
        rows.append(_html_evidence(target))
        rows.append("</details>")
    rows.append("</div>")
    return "\n".join(rows)


def _html_evidence(target: TargetState) -> str:
    if not target.evidence_total:
        return '<p class="note">No measurements are recorded as this verdict\'s evidence.</p>'
    out = [f'<ol class="evidence" data-total="{target.evidence_total}">']
    out += [f"<li>{_html_measurement(m)}</li>" for m in target.evidence]
    out.append("</ol>")
    shown = len(target.evidence)
    if shown < target.evidence_total:
        out.append(
            f'<p class="note">{shown} of the {target.evidence_total} measurements it rests on are '
            f"shown (failed ones first; at most {EVIDENCE_PER_VERDICT} per verdict and "
            f"{EVIDENCE_ROWS:,} in the report); <code>probe show {_e(target.verdict.run_id[:12])}"
            "</code> lists them all.</p>"
        )
    return "".join(out)


def _html_measurement(measurement: Measurement) -> str:
    """One evidence measurement: layer, endpoint (and the A/B half it is), the outcome, and what
    it saw (DNS answers, certificate, HTTP status and title). All of it is outside input."""
    obs = measurement.observation
    kind = obs.differential_kind
    line = f"<code>{_e(obs.layer.value)}</code> {_e(obs.endpoint)}"
    line += f" [{_e(kind.value)} half]" if kind else ""
    if obs.failure is None:
        line += ' <span class="s-ok">ok</span>'
    else:
        line += f' <span class="s-blocked">{_e(obs.failure)}</span>'
        if obs.failed_operation is not None:
            line += f" ({_e(obs.failed_operation.value)})"
    seen = measurement_facts(obs.details)
    if obs.failure_detail:
        seen.append(obs.failure_detail)
    if seen:
        line += ": " + _e("; ".join(seen))
    return line + f' <span class="note">{obs.duration_ms:,.0f} ms</span>'


def _html_events(platform: PlatformReport, verdict_ids: dict[tuple[int | None, str], str]) -> str:
    if not platform.events:
        return '<p class="note">No events in the period.</p>'
    header = (
        "#",
        "kind",
        "network(s)",
        "technique",
        "onset (UTC)",
        "end (UTC)",
        "targets",
        "hosts",
        "rate",
        "detail",
    )
    rows = [
        '<div class="scroll"><table class="events"><tr>'
        + "".join(f"<th>{h}</th>" for h in header)
        + "</tr>"
    ]
    for number, e in enumerate(platform.events, 1):
        end = "ongoing" if e.end is None else format_when(e.end)
        kind_class = "blocked" if e.kind is EventKind.BLOCKING else e.kind
        targets = ", ".join(_target_link(target, e.networks, verdict_ids) for target in e.targets)
        cells = (
            ("num", str(number)),
            (f"s-{_e(kind_class)}", _e(e.kind)),
            ("", _e(networks_label(e.networks))),
            ("", _e(e.technique or "-")),
            ("when", _e(format_when(e.onset))),
            ("when", _e(end)),
            ("", targets),
            ("num", str(e.hosts)),
            ("num", _e(rate_text(e.rate))),
            ("detail", _e(e.detail)),
        )
        # Each cell names its column: below 820 px a row is drawn as a card (see _CSS).
        rows.append(
            "<tr>"
            + "".join(
                _labelled_cell(label, value, css)
                for (css, value), label in zip(cells, header, strict=True)
            )
            + "</tr>"
        )
    rows.append("</table></div>")
    return "\n".join(rows)


def _target_link(
    target: str, networks: Sequence[int | None], verdict_ids: dict[tuple[int | None, str], str]
) -> str:
    """A target of an event, linked to its latest verdict on the event's first network that
    has one."""
    anchor = next((verdict_ids[(a, target)] for a in networks if (a, target) in verdict_ids), None)
    return _e(target) if anchor is None else f'<a href="#{anchor}">{_e(target)}</a>'


def _labelled_cell(label: str, value: str, css: str) -> str:
    """A table cell (value already escaped) that names its column for the narrow layout."""
    attribute = f' class="{css}"' if css else ""
    return f'<td{attribute} data-label="{_e(label)}">{value}</td>'


def _short_ids(ids: Sequence[str]) -> list[str]:
    """Ids cut to their first 8 characters, or to as many more as it takes to tell them apart
    (ids of merged or imported probes need not be random hex)."""
    length = 8
    while len({i[:length] for i in ids}) < len(set(ids)) and length < max(map(len, ids)):
        length += 1
    return [i[:length] for i in ids]


def _html_footer(report: Report) -> str:
    facts: list[tuple[str, str]] = [("period", period_text(report))]
    facts.append(("networks", ", ".join(network_label(asn) for asn in report.networks) or "none"))
    provenance = report.provenance
    if provenance is not None:
        listed = ", ".join(_short_ids(provenance.probes)[:_LISTED_PROBES])
        more = len(provenance.probes) - _LISTED_PROBES
        listed += f" and {more} more" if more > 0 else ""
        facts += [
            ("runs", f"{provenance.runs:,} run(s) in the period"),
            ("probes", f"{len(provenance.probes)}: {listed}" if provenance.probes else "none"),
            ("software of the runs", ", ".join(provenance.software_versions) or "-"),
            ("rules of the verdicts", ", ".join(provenance.rules_versions) or "-"),
            (
                "report drawn by",
                f"censorprobe {provenance.report_software} (rules {provenance.report_rules})",
            ),
        ]
    p = report.params
    facts.append(
        (
            "event detector",
            f"CUSUM mu0 = {p.mu0:g}, mu1 = {p.mu1:g}, edd = {p.edd:g} (reference k = "
            f"{p.reference:.2f}); accumulators halved per {p.silence_halving_hours} h of silence",
        )
    )
    drill = (
        f"at most {EVIDENCE_PER_VERDICT} measurements per verdict and {EVIDENCE_ROWS:,} in the "
        "report (blocked verdicts first)"
    )
    if report.evidence_withheld:
        drill += f"; {report.evidence_withheld} verdict(s) shown with fewer than they rest on"
    facts.append(("drill-down", drill))
    facts.append(("generated", f"{format_when(report.generated_at)} UTC"))
    body = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts)
    return f'<footer id="about"><h2>About this report</h2><dl class="facts">{body}</dl></footer>'


def _html_measurements(report: Report) -> str:
    if not report.latest_measurements:
        return "<p>No measurements yet: run <code>probe run</code> first.</p>"
    rows = [
        "<p>No verdicts stored for this period (databases written before verdicts existed hold "
        'measurements only): the newest measurement per endpoint.</p><div class="scroll"><table>'
        "<tr>"
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
    rows.append("</table></div>")
    return "\n".join(rows)
