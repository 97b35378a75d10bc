"""Terminal rendering of runs and reports (rich tables); no logic beyond presentation."""

from __future__ import annotations

from collections.abc import Sequence

from rich.markup import escape
from rich.table import Table

from probe.helper.client import HelperUnavailable
from probe.helper.protocol import HelperResult
from probe.records import PlatformStatus, PlatformSummary, Status, Verdict

_STATUS_STYLE = {
    Status.OK: "green",
    Status.BLOCKED: "bold red",
    Status.DOWN: "yellow",
    Status.INCONCLUSIVE: "dim",
    PlatformStatus.PARTIAL: "red",
}


def _styled(status: str) -> str:
    style = _STATUS_STYLE.get(status, "")  # type: ignore[call-overload]
    return f"[{style}]{status}[/{style}]" if style else status


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
            summary.platform,
            _styled(summary.status),
            f"{summary.blocked}/{summary.total}",
            ", ".join(summary.techniques) or "-",
            escape(summary.detail),
        )
    targets = Table(title="Verdicts per target")
    for column in ("platform", "target", "verdict", "technique", "confidence", "why"):
        targets.add_column(column, overflow="fold")
    for v in verdicts:
        targets.add_row(
            v.platform,
            escape(v.target),
            _styled(v.status),
            v.technique or "-",
            v.confidence.value if v.confidence else "-",
            escape(v.detail),
        )
    return [platforms, targets]


def no_connectivity_message(controls: int) -> str:
    return (
        f"No network connectivity: none of the {controls} control sites could be reached. "
        "Nothing in this run is reported as blocked."
    )
