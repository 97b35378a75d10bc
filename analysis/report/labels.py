"""The labels both renderings of a report use (HTML here, the terminal in probe.cli.render):
networks, times in UTC, the period, rates."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from analysis.report.model import Report


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


def period_text(report: Report) -> str:
    if report.first_hour is None:
        return "no verdicts"
    end = report.first_hour + timedelta(hours=report.hours)
    return f"{format_when(report.first_hour)} to {format_when(end)} UTC"


def rate_text(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.0%}"
