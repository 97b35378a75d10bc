"""Terminal rendering of runs, past runs and reports (rich tables and lines); no logic beyond
presentation. The report model and its HTML page live in analysis.report, which does not depend
on rich.

A run's default view is short: one line for where and when it measured, the platform table, and
one line per target that is not ok (`-v`: every target). Every string from outside the probe
(targets, AS names, failure text) is escaped before it reaches rich markup.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from rich import box
from rich.console import RenderableType
from rich.text import Text

from analysis.report.labels import (
    format_when,
    measurement_facts,
    network_label,
    networks_label,
    period_text,
    rate_text,
)
from analysis.report.model import Report
from analysis.rules import NETWORK_RESOLVER_BROKEN
from probe.cli.tables import Col, FittedTable
from probe.cli.terminal import plain, visible
from probe.helper.client import HelperUnavailable
from probe.helper.protocol import HelperResult
from probe.history import Judged, RunDetail, RunOverview
from probe.model import (
    Measurement,
    NetworkInfo,
    Run,
)
from probe.records import PlatformStatus, PlatformSummary, Status, Verdict

# Statuses of verdicts, platforms and chart cells, and event kinds.
_STATUS_STYLE = {
    Status.OK: "green",
    Status.BLOCKED: "bold red",
    Status.DOWN: "yellow",
    Status.INCONCLUSIVE: "dim",
    PlatformStatus.PARTIAL: "red",
    "blocking": "bold red",
    "intermittent": "red",
    "technique_change": "magenta",
}


def styled(status: str) -> str:
    """A status word in its colour (rich markup)."""
    style = _STATUS_STYLE.get(status, "")
    word = plain(status)
    return f"[{style}]{word}[/{style}]" if style else word


def network_text(network: NetworkInfo) -> str:
    """ "AS58224 Iran Telecommunication Company PJS (IR)", "AS58224", or "unknown network"
    (plain text: escape it before markup)."""
    label = network_label(network.asn, network.as_name)
    return f"{label} ({network.country})" if network.country else label


def unknown_network_reason(
    helper: HelperResult | HelperUnavailable | None, mmdb_configured: bool
) -> str:
    """Why a run's network is unknown, in words a volunteer can act on (plain text)."""
    if helper is None and not mmdb_configured:
        return "no test helper and no [network] mmdb files configured"
    if isinstance(helper, HelperUnavailable) and not mmdb_configured:
        return "the test helper was unavailable and no [network] mmdb files are configured"
    if isinstance(helper, HelperResult):
        return "neither the test helper nor the [network] mmdb files know this address"
    return "the [network] mmdb files do not know this machine's address (behind NAT?)"


def where_line(
    network: NetworkInfo,
    started_at: datetime,
    unknown_reason: str | None = None,
    vpn_reasons: Sequence[str] = (),
) -> str:
    """One line: when and from which network the run measured, and whether it looks like a VPN
    (rich markup, outside text escaped)."""
    where = plain(network_text(network))
    if network.asn is None:
        where = "an " + where
        if unknown_reason:
            where += f" ({plain(unknown_reason)})"
    line = f"Measured {format_when(started_at)} UTC from {where}"
    if network.resolver_asn is not None and network.resolver_asn != network.asn:
        line += f"; resolver in AS{network.resolver_asn}"
    if network.vpn_suspected:
        why = f" ({plain('; '.join(vpn_reasons))})" if vpn_reasons else ""
        line += f"; [yellow]VPN or proxy suspected[/yellow]{why}: results are flagged"
    return line + "."


def control_note(helper: HelperResult | HelperUnavailable | None) -> str:
    """What the verdicts of this run were compared with, in a sentence (plain text)."""
    if isinstance(helper, HelperResult):
        partial = "" if helper.complete else " (its batch was cut short by its deadline)"
        return f"Control: the test helper measured the same targets{partial}."
    if isinstance(helper, HelperUnavailable):
        return (
            f"Control: the test helper was unavailable ({helper.reason}); failures without "
            "a blockpage fingerprint or an A/B proof are inconclusive."
        )
    return (
        "Control: no test helper configured ([helper] url, token); failures without a "
        "blockpage fingerprint or an A/B proof are inconclusive."
    )


def platform_table(summaries: Sequence[PlatformSummary]) -> FittedTable:
    """One row per platform: status, blocked share, techniques, detail."""
    table = FittedTable(
        [
            Col("platform", wrap=False),
            Col("status", wrap=False),
            Col("blocked", wrap=False, justify="right"),
            Col("techniques"),
            Col("detail"),
        ],
        title="Platforms",
    )
    for summary in summaries:
        table.add_row(
            plain(summary.platform),
            styled(summary.status),
            f"{summary.blocked}/{summary.total}",
            plain(", ".join(summary.techniques)) or "-",
            plain(summary.detail),
        )
    return table


def verdict_line(verdict: Verdict, *, why: bool = True) -> Text:
    """One target's verdict on one line: status, platform, target, technique, and (`why`) the
    rule's sentence."""
    how = verdict.technique or ""
    if verdict.confidence is not None:
        how = f"{how} ({verdict.confidence.value})" if how else verdict.confidence.value
    line = f"{styled(verdict.status)} {plain(verdict.platform)} {plain(verdict.target)}"
    line += f" {plain(how)}" if how else ""
    line += f": {plain(verdict.detail)}" if verdict.detail and why else ""
    return Text.from_markup(line)


def run_view(
    summaries: Sequence[PlatformSummary], verdicts: Sequence[Verdict], *, verbose: bool
) -> list[RenderableType]:
    """The platform table, then a line per target that is not ok (every target if verbose)."""
    shown = [v for v in verdicts if verbose or v.status is not Status.OK]
    out: list[RenderableType] = [platform_table(summaries)]
    if shown:
        out.extend(verdict_line(v) for v in shown)
    elif verdicts:
        out.append(Text(f"All {len(verdicts)} targets ok (-v lists them)."))
    return out


def runs_table(overviews: Sequence[RunOverview], *, uploads: bool = False) -> FittedTable:
    """`probe runs`: one row per run, newest first; with `uploads`, whether the collector has
    acknowledged each."""
    # No rules between columns and short headers: nine columns and a network name fit 80
    # (blk/ok/down/inc: the run's verdicts blocked, ok, down, inconclusive).
    # On a narrow terminal the upload column goes first, then connectivity, then VPN.
    columns = [
        Col("run", wrap=False),
        Col("started (UTC)"),  # date and time on two lines when narrow
        Col("network", longest=14),
        Col("conn.", wrap=False, drop=2),
        *(Col(label, wrap=False, justify="right") for label in ("blk", "ok", "down", "inc")),
        Col("VPN", wrap=False, drop=1),
        *([Col("up", wrap=False, drop=3)] if uploads else []),
    ]
    table = FittedTable(
        columns,
        title="Runs (newest first; `probe show RUN` for one)",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        show_edge=False,
        caption="blk/ok/down/inc: verdicts blocked, ok, down, inconclusive",
    )
    for o in overviews:
        run = o.run
        connectivity = run.connectivity.value + ("*" if run.interrupted else "")
        table.add_row(
            run.id[:8],
            format_when(run.started_at),
            plain(network_text(run.network)),
            connectivity,
            f"[bold red]{o.blocked}[/bold red]" if o.blocked else "0",
            str(o.ok),
            str(o.down),
            str(o.inconclusive),
            _vpn_text(run.network.vpn_suspected),
            *(["yes" if o.uploaded else "no"] if uploads else []),
        )
    if any(o.run.interrupted for o in overviews):
        table.caption = f"{table.caption}; * interrupted: the run kept what it had finished"
    return table


def run_detail_view(detail: RunDetail, *, verbose: bool) -> list[RenderableType]:
    """`probe show`: the run, its platforms, each verdict and (not ok, or all when verbose) the
    measurements it rests on."""
    run = detail.run
    out: list[RenderableType] = [
        Text(f"run {run.id}"),
        where_line(run.network, run.started_at),
        Text(_run_facts(run, detail.measurements)),
    ]
    if detail.summaries:
        out.append(platform_table(detail.summaries))
    if not detail.verdicts:
        out.append(Text("No verdicts stored for this run."))
    # An ok target is one line (its sentence, always the same, and its evidence with -v).
    for judged in detail.verdicts:
        shown = verbose or judged.verdict.status is not Status.OK
        out.append(verdict_line(judged.verdict, why=shown))
        if shown:
            out.extend(_evidence(judged))
    return out


def evidence_line(measurement: Measurement) -> Text:
    """One measurement, indented under its verdict: layer, endpoint (and the A/B half it is),
    the outcome, and what it saw (DNS answers, certificate, HTTP status and title)."""
    obs = measurement.observation
    kind = obs.differential_kind
    line = f"    {obs.layer.value} {plain(obs.endpoint)}"
    line += plain(f" [{kind.value}]") if kind else ""  # escaped: "[harmless]" is no markup
    if obs.failure is None:
        line += " [green]ok[/green]"
    else:
        line += f" [red]{plain(obs.failure)}[/red]"
        if obs.failed_operation is not None:
            line += f" ({obs.failed_operation.value})"
    seen = [plain(fact) for fact in measurement_facts(obs.details)]
    if obs.failure_detail:
        seen.append(plain(obs.failure_detail))
    return Text.from_markup(line + (": " + "; ".join(seen) if seen else ""))


def _evidence(judged: Judged) -> list[RenderableType]:
    if not judged.evidence:
        return [Text("    (no measurements recorded as its evidence)")]
    return [evidence_line(m) for m in judged.evidence]


def _run_facts(run: Run, measurements: int) -> str:
    finished = f", finished {format_when(run.finished_at)} UTC" if run.finished_at else ""
    interrupted = ", interrupted" if run.interrupted else ""
    return (
        f"connectivity {run.connectivity.value}{interrupted}; {measurements} measurements"
        f"{finished}; probe {run.probe_id[:8]}, software {run.software_version}"
    )


def _vpn_text(suspected: bool | None) -> str:
    if suspected is None:
        return "?"
    return "[yellow]yes[/yellow]" if suspected else "no"


def resolver_broken_line(verdicts: Sequence[Verdict]) -> str | None:
    """One line when the network's own resolver failed for the run's control sites too (rule
    dns.network_resolver_broken), None otherwise (plain text)."""
    affected = sum(1 for v in verdicts if v.rule_id == NETWORK_RESOLVER_BROKEN)
    if not affected:
        return None
    return (
        "The network's resolver is broken: it failed for the run's control sites too, so DNS is "
        f"inconclusive for {affected} target(s) on this network (a broken resolver, not "
        "censorship; the other resolvers' answers were still measured)."
    )


def no_connectivity_message(controls: int) -> str:
    return (
        f"No network connectivity: none of the {controls} control sites could be reached. "
        "Nothing in this run is reported as blocked."
    )


def report_tables(report: Report) -> list[RenderableType]:
    """The report for a terminal: a heading, then per platform its state, verdicts and events."""
    if not report.verdicts:
        return _measurement_tables(report)
    out: list[RenderableType] = [
        Text(
            f"Verdicts {period_text(report)}: {report.verdicts:,} verdicts from "
            f"{report.hosts} host(s) on {len(report.networks)} network(s); "
            f"{len(report.events)} event(s)."
        )
    ]
    for platform in report.platforms:
        several = len(platform.states) > 1
        # A heading, not a Rule: a rule spans the console, and a log's console is unbounded.
        out.append(Text(f"\n{visible(platform.platform)}", style="bold"))
        state = FittedTable(
            [
                Col("network", longest=20),
                Col("status", wrap=False),
                Col("blocked", wrap=False),
                Col("techniques"),
                Col("hosts", wrap=False, drop=2),
                Col("as of (UTC)", wrap=False, drop=1),
                Col("detail", drop=3),
            ],
            title=f"{plain(platform.platform)}: current state (newest run per network)",
        )
        for s in platform.states:
            state.add_row(
                plain(network_label(s.asn, s.as_name) + (f" ({s.country})" if s.country else "")),
                styled(s.summary.status),
                f"{s.summary.blocked}/{s.summary.total}",
                plain(", ".join(s.summary.techniques)) or "-",
                str(s.hosts),
                format_when(s.measured_at),
                plain(s.summary.detail),
            )
        out.append(state)

        # The least telling columns go first on a narrow terminal: the time (one run's targets
        # share it), the confidence, the failure strings, then "why", which then follows the
        # table; it is left empty for ok targets (their sentence is always the same).
        targets = FittedTable(
            [
                *([Col("network", wrap=False)] if several else []),
                Col("target", longest=28, grow=False),
                Col("verdict", wrap=False),
                Col("technique"),
                Col("confidence", wrap=False, drop=4),
                Col("failures", drop=3),
                Col("measured (UTC)", wrap=False, drop=5),
                Col("why", drop=1, spill=True),
            ],
            title=f"{plain(platform.platform)}: latest verdict per target",
            key=(0, 1) if several else (0,),
        )
        for target in platform.targets:
            v = target.verdict
            row = [plain(network_label(v.asn))] if several else []
            row += [
                plain(v.target),
                styled(v.status),
                plain(v.technique or "-"),
                v.confidence.value if v.confidence else "-",
                plain(", ".join(target.failures)) or "-",
                format_when(v.measured_at),
                "" if v.status is Status.OK else plain(v.detail),
            ]
            targets.add_row(*row)
        out.append(targets)

        if not platform.events:
            out.append(Text(visible(f"{platform.platform}: no events in the period.")))
            continue
        events = FittedTable(
            [
                Col("kind", wrap=False),
                Col("network(s)"),
                Col("technique"),
                Col("onset (UTC)", wrap=False),
                Col("end (UTC)", wrap=False),
                Col("targets"),
                Col("hosts", wrap=False, justify="right", drop=2),
                Col("rate", wrap=False, justify="right", drop=1),
            ],
            title=f"{plain(platform.platform)}: events",
        )
        for e in platform.events:
            events.add_row(
                styled(e.kind),
                plain(networks_label(e.networks)),
                plain(e.technique or "-"),
                format_when(e.onset),
                "ongoing" if e.end is None else format_when(e.end),
                plain(", ".join(e.targets)),
                str(e.hosts),
                rate_text(e.rate),
            )
        out.append(events)
    return out


def _measurement_tables(report: Report) -> list[RenderableType]:
    """Databases without verdicts (or a period without any): the newest measurement per
    endpoint, the table `probe report` has always shown."""
    if not report.latest_measurements:
        return [Text("No measurements yet: run `probe run` first.")]
    table = FittedTable(
        [
            Col("platform", wrap=False),
            Col("target", longest=28),
            Col("layer", wrap=False),
            Col("endpoint", longest=28),
            Col("result"),
            Col("measured (UTC)", wrap=False, drop=1),
        ],
        title="Latest status per platform and endpoint",
    )
    for m in report.latest_measurements:
        obs = m.observation
        result = "[green]ok[/green]" if obs.ok else f"[red]{plain(str(obs.failure))}[/red]"
        when = obs.started_at.strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(
            plain(m.platform),
            plain(m.target),
            obs.layer.value,
            plain(obs.endpoint),
            result,
            when,
        )
    note = Text(
        "No verdicts stored for this period (databases written before verdicts existed hold "
        "measurements only): showing the newest measurement per endpoint."
    )
    return [note, table]
