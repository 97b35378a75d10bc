"""Terminal rendering of runs and reports (rich tables); no logic beyond presentation. The
report model and its HTML page live in analysis.report, which does not depend on rich."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import RenderableType
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from analysis.report.labels import (
    format_when,
    network_label,
    networks_label,
    period_text,
    rate_text,
)
from analysis.report.model import Report
from probe.cli.terminal import plain, visible
from probe.helper.client import HelperUnavailable
from probe.helper.protocol import HelperResult
from probe.records import PlatformSummary, Verdict

# Statuses of verdicts, platforms and chart cells, and event kinds.
_STYLE = {
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
    style = _STYLE.get(status)
    return f"[{style}]{status}[/{style}]" if style else plain(status)


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


def verdict_tables(
    summaries: Sequence[PlatformSummary], verdicts: Sequence[Verdict]
) -> list[Table]:
    """A table of platforms, then one of every target's verdict."""
    platforms = Table(title="Platforms")
    for column in ("platform", "status", "blocked", "techniques", "detail"):
        platforms.add_column(column, overflow="fold")
    for summary in summaries:
        platforms.add_row(
            plain(summary.platform),
            _styled(summary.status),
            f"{summary.blocked}/{summary.total}",
            plain(", ".join(summary.techniques) or "-"),
            plain(summary.detail),
        )
    targets = Table(title="Verdicts per target")
    for column in ("platform", "target", "verdict", "technique", "confidence", "why"):
        targets.add_column(column, overflow="fold")
    for v in verdicts:
        targets.add_row(
            plain(v.platform),
            plain(v.target),
            _styled(v.status),
            plain(v.technique or "-"),
            v.confidence.value if v.confidence else "-",
            plain(v.detail),
        )
    return [platforms, targets]


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
        out.append(Rule(f"[bold]{plain(platform.platform)}[/bold]", align="left"))
        state = Table(title=f"{plain(platform.platform)}: current state (newest run per network)")
        for column in ("network", "status", "blocked", "techniques", "hosts", "as of (UTC)"):
            state.add_column(column, overflow="fold")
        state.add_column("detail", overflow="fold", ratio=1)
        for s in platform.states:
            state.add_row(
                plain(network_label(s.asn, s.as_name) + (f" ({s.country})" if s.country else "")),
                _styled(s.summary.status),
                f"{s.summary.blocked}/{s.summary.total}",
                plain(", ".join(s.summary.techniques)) or "-",
                str(s.hosts),
                format_when(s.measured_at),
                plain(s.summary.detail),
            )
        out.append(state)

        targets = Table(title=f"{plain(platform.platform)}: latest verdict per target")
        columns = ["network"] if several else []
        columns += ["target", "verdict", "technique", "confidence", "failures", "measured (UTC)"]
        for column in columns:
            targets.add_column(column, overflow="fold")
        targets.add_column("why", overflow="fold", ratio=1)
        for target in platform.targets:
            v = target.verdict
            row = [plain(network_label(v.asn))] if several else []
            row += [
                plain(v.target),
                _styled(v.status),
                plain(v.technique or "-"),
                v.confidence.value if v.confidence else "-",
                plain(", ".join(target.failures)) or "-",
                format_when(v.measured_at),
                plain(v.detail),
            ]
            targets.add_row(*row)
        out.append(targets)

        if not platform.events:
            out.append(Text(visible(f"{platform.platform}: no events in the period.")))
            continue
        events = Table(title=f"{plain(platform.platform)}: events")
        for column in ("kind", "network(s)", "technique", "onset (UTC)", "end (UTC)"):
            events.add_column(column, overflow="fold")
        events.add_column("targets", overflow="fold", ratio=1)
        for column in ("hosts", "rate"):
            events.add_column(column, justify="right")
        for e in platform.events:
            events.add_row(
                _styled(e.kind),
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
    table = Table(title="Latest status per platform and endpoint")
    for column in ("platform", "target", "layer", "endpoint", "result", "measured (UTC)"):
        table.add_column(column, overflow="fold")
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
