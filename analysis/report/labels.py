"""The labels both renderings of a report use (HTML here, the terminal in probe.cli.render):
networks, times in UTC, the period, rates, what a measurement saw."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from analysis.report.model import Report
from probe.model import (
    Details,
    DnsQuery,
    HttpTransaction,
    ProtocolProbe,
    RawCapture,
    TcpConnect,
    TlsHandshake,
)


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


def measurement_facts(details: Details) -> list[str]:
    """What a measurement saw, in a few words per fact: DNS answers, the certificate, HTTP
    status and title, the A/B halves (plain, unescaped text: every rendering escapes it)."""
    match details:
        case DnsQuery():
            facts = [" ".join(details.addresses) or "no addresses"]
            facts += [f"rcode {details.rcode}"] if details.rcode else []
            if details.second_answer:
                arrived = " then ".join(
                    " ".join(r.addresses) or "(empty)" for r in details.responses
                )
                facts.append(f"answers raced: {arrived}")
            return facts
        case TlsHandshake():
            facts = [f"SNI {details.sni}"]
            if details.target_sni:
                facts[0] += f" (harmless, for {details.target_sni})"
            facts += [details.version] if details.version else []
            if details.certificates:
                leaf = details.certificates[0]
                facts.append(
                    f"certificate {leaf.subject or '?'} issued by {leaf.issuer or '?'}, "
                    f"sha256 {leaf.sha256[:16]}"
                )
                facts.append("verified" if details.verified else "not verified")
            return facts
        case HttpTransaction():
            facts = [] if details.status is None else [f"status {details.status}"]
            facts += [f'title "{details.title}"'] if details.title else []
            facts += [f"{details.body_length} bytes"] if details.status is not None else []
            facts += [f"redirected to {r.location}" for r in details.redirects]
            if details.target_host:
                facts.append(f"Host {details.host_header} (harmless, for {details.target_host})")
            if details.throughput_kbps is not None:
                facts.append(f"{details.throughput_kbps:.0f} kbit/s")
            return facts
        case ProtocolProbe():
            return [f"sent {details.payload_bytes} {details.payload} bytes"]
        case RawCapture():
            return [details.note] if details.note else []
        case TcpConnect():
            # The runner connects twice to each address and port (probe.flows): say which.
            return ["repeat connect"] if details.attempt > 1 else []
    return []
