"""What the verdicts read across the whole run rather than one target: the controls (a helper's
and the run's own DoH answers), IPv6 health, the control sites' download rate, and every A/B
half that got through, by (address, port), so that a harmless half recorded under another
target pairs as well.
"""

from __future__ import annotations

import statistics
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from analysis.controls import ControlEvidence, controls_from_measurements
from analysis.facts.attempts import (
    Attempt,
    Endpoint,
    address,
    endpoint,
    handshake_reached_server,
    is_plain_http,
    is_v6,
    strip_port,
)
from analysis.facts.connects import ConnectPattern, connect_pattern
from analysis.model import AsnLookup
from analysis.rules import TIMEOUT, UNKNOWN_AUTHORITY, UNREACHABLE
from probe.config import MIN_TRANSFER_BYTES
from probe.model import (
    DnsQuery,
    HttpTransaction,
    Layer,
    Measurement,
    Operation,
    Run,
    TcpConnect,
    TlsHandshake,
    current_failure,
)
from probe.names import normalise_host

# Throttling: a download must be long enough for its rate not to be dominated by latency (a
# short body reads slow on any line); the lab's 2 KB control pages read at gigabits.
MIN_THROTTLE_BYTES = MIN_TRANSFER_BYTES


def gives_rate(d: HttpTransaction, failure: str | None, operation: Operation | None) -> bool:
    """Whether a download's rate says something about the path: it was long enough, it was a
    transfer whose sample window ended while it was still arriving (a throttled transfer delivers
    little in its window, and that is the measurement), or it stalled mid-body until the http
    timeout."""
    if d.throughput_kbps is None:
        return False
    if failure is not None:
        return failure == TIMEOUT and operation is Operation.READ
    return d.body_length >= MIN_THROTTLE_BYTES or (d.transfer is True and d.body_truncated)


@dataclass(frozen=True, slots=True)
class RunIndex:
    run: Run
    controls: ControlEvidence
    asn_of: AsnLookup | None
    ipv6_broken: bool
    control_kbps: float | None
    # The control sites' transfers: the median time to their first byte (ms).
    control_ttfb_ms: float | None
    control_site_ids: tuple[str, ...]
    # (address, port) -> (sni, measurement id) of every handshake in the run that reached a server.
    tls_reached: Mapping[Endpoint, tuple[tuple[str, str], ...]]
    # (address, port) -> (host header, measurement id) of every HTTP request answered.
    http_answered: Mapping[Endpoint, tuple[tuple[str, str], ...]]
    # (address, port) -> ids of every measurement there that a server answered in HTTP or TLS
    # (a handshake that reached it, a response): what proves a protocol probe's silence.
    spoken: Mapping[Endpoint, tuple[str, ...]]
    # The network's resolver gave no address for any of the run's control sites: it is broken
    # (not censoring), so its failures say nothing about a target.
    network_dns_broken: bool = False
    # The run's control sites' connects (each endpoint twice): the baseline that tells a path
    # dropping a target's SYNs from a slow or lossy network.
    control_connects: ConnectPattern = field(default_factory=ConnectPattern)
    # Untrusted issuer -> the (names, addresses) of the run's own target handshakes rejected for a
    # certificate it signed (A/B halves left out: their names are the prober's, not the site's).
    untrusted_issuers: Mapping[str, tuple[frozenset[str], frozenset[str]]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    # Every handshake of the run's control sites validated (and there was one).
    control_sites_tls_valid: bool = False


def ipv6_broken_everywhere(measurements: Iterable[Measurement]) -> bool:
    """True when the run tried IPv6 connects and every one failed with host/network unreachable:
    the probe's LAN has no IPv6 (a known false positive of censorship measurement)."""
    failures: list[str | None] = []
    for m in measurements:
        obs = m.observation
        connect = m.layer is Layer.TCP or (
            m.layer is Layer.TLS and obs.failed_operation is Operation.CONNECT
        )
        if connect and is_v6(address(obs.details)):
            failures.append(current_failure(m.failure))
    return bool(failures) and all(f in UNREACHABLE for f in failures)


def network_resolver_broken(
    measurements: Iterable[Measurement], control_platforms: Collection[str]
) -> bool:
    """True when the run's control sites were looked up through the network's resolver (the
    runner's `primary` mark) and it gave an address for none of them: a broken resolver, which
    would fail every name alike, not a censor's choice of names."""
    answered: list[bool] = []
    for m in measurements:
        d = m.observation.details
        if (
            m.platform in control_platforms
            and isinstance(d, DnsQuery)
            and d.primary is True
            and d.redirect_from is None
        ):
            answered.append(bool(d.addresses))
    return bool(answered) and not any(answered)


def index_run(
    run: Run,
    measurements: Sequence[Measurement],
    controls: ControlEvidence | None,
    asn_of: AsnLookup | None,
    control_platforms: Collection[str],
) -> RunIndex:
    rates, rate_ids, first_bytes = [], [], []
    tls_reached: dict[Endpoint, list[tuple[str, str]]] = {}
    http_answered: dict[Endpoint, list[tuple[str, str]]] = {}
    spoken: dict[Endpoint, list[str]] = {}
    control_connects: list[Attempt[TcpConnect]] = []
    control_tls: list[bool] = []
    untrusted: dict[str, tuple[set[str], set[str]]] = {}
    for m in measurements:
        d = m.observation.details
        if m.platform in control_platforms and isinstance(d, TcpConnect):
            control_connects.append(Attempt(m, d))
        control_site = m.platform in control_platforms and m.failure is None
        # A short page arrives with its headers, so its "rate" measures the host's memory, not
        # the path: long downloads and transfers only.
        if control_site and isinstance(d, HttpTransaction) and d.throughput_kbps is not None:
            if gives_rate(d, None, None):
                rates.append(d.throughput_kbps)
                rate_ids.append(m.id)
            if d.transfer and d.timings.ttfb_ms is not None:
                first_bytes.append(d.timings.ttfb_ms)
        where = endpoint(d)
        if where is None:
            continue
        if isinstance(d, TlsHandshake):
            if m.platform in control_platforms:
                control_tls.append(m.failure is None and not d.verify_failure)
            elif m.observation.differential_kind is None and d.sni:
                issuer = untrusted_issuer(m.failure, d)
                if issuer is not None:
                    names, addresses = untrusted.setdefault(issuer, (set(), set()))
                    names.add(normalise_host(d.sni))
                    addresses.add(where[0])
        if (isinstance(d, TlsHandshake) and handshake_reached_server(m.failure, d)) or (
            isinstance(d, HttpTransaction) and d.status is not None
        ):
            spoken.setdefault(where, []).append(m.id)
        if isinstance(d, TlsHandshake) and handshake_reached_server(m.failure, d):
            if d.sni:
                tls_reached.setdefault(where, []).append((normalise_host(d.sni), m.id))
        elif (
            isinstance(d, HttpTransaction)
            and d.status is not None
            and is_plain_http(d)
            and d.host_header
        ):
            # Only plain-HTTP answers pair with a Host A/B test: an HTTPS answer on the same
            # address and port says nothing about a plain-HTTP request's Host header.
            http_answered.setdefault(where, []).append((strip_port(d.host_header), m.id))
    own = controls_from_measurements(measurements)
    return RunIndex(
        run=run,
        controls=own if controls is None else controls.merged(own),
        asn_of=asn_of,
        ipv6_broken=ipv6_broken_everywhere(measurements),
        control_kbps=round(statistics.median(rates), 1) if rates else None,
        control_ttfb_ms=round(statistics.median(first_bytes), 1) if first_bytes else None,
        control_site_ids=tuple(rate_ids),
        tls_reached=MappingProxyType({k: tuple(v) for k, v in tls_reached.items()}),
        http_answered=MappingProxyType({k: tuple(v) for k, v in http_answered.items()}),
        spoken=MappingProxyType({k: tuple(v) for k, v in spoken.items()}),
        network_dns_broken=network_resolver_broken(measurements, control_platforms),
        control_connects=connect_pattern(control_connects),
        untrusted_issuers=MappingProxyType(
            {k: (frozenset(n), frozenset(a)) for k, (n, a) in untrusted.items()}
        ),
        control_sites_tls_valid=bool(control_tls) and all(control_tls),
    )


def untrusted_issuer(failure: str | None, d: TlsHandshake) -> str | None:
    """The leaf's issuer when the handshake was rejected for a certificate from an authority the
    trust store does not know; None otherwise."""
    if UNKNOWN_AUTHORITY not in (failure, d.verify_failure) or not d.certificates:
        return None
    return d.certificates[0].issuer or None
