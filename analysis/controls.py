"""Control evidence: what an uncensored vantage saw for the same names, endpoints and URLs.

Two sources feed it. (a) The run's own answers from encrypted resolvers (DoH, not the probe's
primary resolver): they say what a name resolves to when nobody on the path can rewrite the
answer. (b) A test helper's answer, measured from an uncensored network with the same checks and
the same records as the probe's own measurements (OONI's test helper plays this role), which
probe.helper.protocol validated into typed records: a control that lies about its shape never
gets here. Without a working control the verdict rules say "inconclusive", never "blocked".
The helper's own A/B halves (differential_kind sni/host) are left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from probe.model import (
    Details,
    DifferentialKind,
    DnsQuery,
    HttpTransaction,
    Measurement,
    Observation,
    Operation,
    ProtocolProbe,
    TcpConnect,
    TlsHandshake,
)
from probe.names import normalise_host, normalise_url

HELPER_SOURCE = "helper"


@dataclass(frozen=True, slots=True)
class ControlDns:
    """What a control resolver answered for `host`. `failure` None means addresses came back."""

    host: str
    source: str
    addresses: tuple[str, ...]
    failure: str | None
    rcode: str | None = None


@dataclass(frozen=True, slots=True)
class ControlConnect:
    """A control TCP connect to address:port, made for `host` (None when unknown)."""

    address: str
    port: int
    host: str | None
    failure: str | None
    source: str = HELPER_SOURCE


@dataclass(frozen=True, slots=True)
class ControlTls:
    """A control TLS handshake. `failure` None means it completed and verified for `sni`."""

    address: str
    port: int
    sni: str
    failure: str | None
    verified: bool
    leaf_issuer: str | None
    leaf_sha256: str | None
    source: str = HELPER_SOURCE


@dataclass(frozen=True, slots=True)
class ControlHttp:
    """A control HTTP response for `url` (status None: no response)."""

    url: str
    status: int | None
    body_length: int
    title: str | None
    headers: tuple[tuple[str, str], ...]
    failure: str | None
    throughput_kbps: float | None = None
    source: str = HELPER_SOURCE
    ttfb_ms: float | None = None


@dataclass(frozen=True, slots=True)
class ControlProbe:
    """A control protocol probe (random first data) to address:port: did the server answer?"""

    address: str
    port: int
    payload: str
    failure: str | None
    source: str = HELPER_SOURCE


@dataclass(frozen=True, slots=True)
class ControlEvidence:
    """Everything the controls saw, with lookups by host, endpoint and URL."""

    dns: tuple[ControlDns, ...] = ()
    tcp: tuple[ControlConnect, ...] = ()
    tls: tuple[ControlTls, ...] = ()
    http: tuple[ControlHttp, ...] = ()
    probes: tuple[ControlProbe, ...] = ()
    # (platform, target) pairs the helper measured.
    targets: frozenset[tuple[str, str]] = frozenset()

    def dns_for(self, host: str) -> tuple[ControlDns, ...]:
        name = normalise_host(host)
        return tuple(d for d in self.dns if d.host == name)

    def addresses_for(self, host: str) -> frozenset[str]:
        return frozenset(a for d in self.dns_for(host) for a in d.addresses)

    def tcp_for(self, address: str, port: int) -> tuple[ControlConnect, ...]:
        return tuple(c for c in self.tcp if c.address == address and c.port == port)

    def tcp_for_host(self, host: str, port: int) -> tuple[ControlConnect, ...]:
        name = normalise_host(host)
        return tuple(c for c in self.tcp if c.host == name and c.port == port)

    def tls_for(self, sni: str) -> tuple[ControlTls, ...]:
        name = normalise_host(sni)
        return tuple(t for t in self.tls if t.sni == name)

    def http_for(self, url: str) -> tuple[ControlHttp, ...]:
        key = normalise_url(url)
        return tuple(h for h in self.http if normalise_url(h.url) == key)

    def probes_for(self, address: str, port: int) -> tuple[ControlProbe, ...]:
        return tuple(p for p in self.probes if p.address == address and p.port == port)

    def covers(self, platform: str, target: str) -> bool:
        return (platform, target) in self.targets

    def merged(self, other: ControlEvidence) -> ControlEvidence:
        return ControlEvidence(
            dns=(*self.dns, *other.dns),
            tcp=(*self.tcp, *other.tcp),
            tls=(*self.tls, *other.tls),
            http=(*self.http, *other.http),
            probes=(*self.probes, *other.probes),
            targets=self.targets | other.targets,
        )

    @property
    def empty(self) -> bool:
        return not (self.dns or self.tcp or self.tls or self.http or self.probes)


# -- the run's own encrypted resolvers ----------------------------------------------------------


def is_control_resolver(details: DnsQuery) -> bool:
    """Whether a DNS measurement's resolver serves as a control: one the runner marked
    non-primary ("primary": false) that speaks DoH; without the mark, any DoH resolver. DoH is
    the control because nobody on the path can rewrite its answers."""
    return details.transport == "doh" and details.primary is not True


def controls_from_measurements(measurements: Iterable[Measurement]) -> ControlEvidence:
    """Control DNS answers from the run's own DoH measurements.

    A DoH exchange that failed in transport (timeout, reset: the censor may block the DoH server
    itself) is no control at all and is left out; one that completed counts, NXDOMAIN included
    (then the name does not exist, which makes a failing site down, not blocked)."""
    found = []
    for m in measurements:
        obs = m.observation
        details = obs.details
        if not isinstance(details, DnsQuery) or not is_control_resolver(details):
            continue
        if details.rcode is None and not details.addresses:
            continue
        found.append(
            ControlDns(
                host=normalise_host(details.query),
                source=details.resolver or obs.endpoint,
                addresses=details.addresses,
                failure=obs.failure,
                rcode=details.rcode,
            )
        )
    return ControlEvidence(dns=tuple(found))


# -- the test helper's answer ------------------------------------------------------------------


def _is_ab_half(details: Details) -> bool:
    """The helper's own harmless-name A/B halves (and captures): not what the target looks like."""
    kind = getattr(details, "differential_kind", None)
    return kind is not None and kind is not DifferentialKind.PROTOCOL


@dataclass(slots=True)
class _Collector:
    dns: list[ControlDns]
    tcp: list[ControlConnect]
    tls: list[ControlTls]
    http: list[ControlHttp]
    probes: list[ControlProbe]

    def add(self, observation: Observation[Details], host: str | None) -> None:
        details, failure = observation.details, observation.failure
        if _is_ab_half(details):
            return
        if isinstance(details, DnsQuery):
            self.dns.append(
                ControlDns(
                    normalise_host(details.query),
                    HELPER_SOURCE,
                    details.addresses,
                    failure,
                    details.rcode,
                )
            )
        elif isinstance(details, ProtocolProbe):
            self.probes.append(
                ControlProbe(details.address, details.port, details.payload, failure)
            )
        elif isinstance(details, TcpConnect):
            self.tcp.append(ControlConnect(details.address, details.port, host, failure))
        elif isinstance(details, TlsHandshake):
            leaf = details.certificates[0] if details.certificates else None
            self.tls.append(
                ControlTls(
                    details.address,
                    details.port,
                    normalise_host(details.sni),
                    failure,
                    details.verified,
                    (leaf.issuer or None) if leaf else None,
                    (leaf.sha256 or None) if leaf else None,
                )
            )
            # A handshake starts with a connect: a TLS record is also TCP evidence for the
            # endpoint.
            connect_failure = failure if observation.failed_operation is Operation.CONNECT else None
            self.tcp.append(ControlConnect(details.address, details.port, host, connect_failure))
        elif isinstance(details, HttpTransaction):
            self.http.append(
                ControlHttp(
                    details.url,
                    details.status,
                    details.body_length,
                    details.title,
                    details.headers,
                    failure,
                    details.throughput_kbps,
                    ttfb_ms=details.timings.ttfb_ms,
                )
            )

    def evidence(self, covered: Iterable[tuple[str, str]]) -> ControlEvidence:
        return ControlEvidence(
            dns=tuple(self.dns),
            tcp=tuple(self.tcp),
            tls=tuple(self.tls),
            http=tuple(self.http),
            probes=tuple(self.probes),
            targets=frozenset(covered),
        )


class HelperTarget(Protocol):
    """One measured target of a helper response, as probe.helper's client returns it."""

    @property
    def platform(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def host(self) -> str | None: ...
    @property
    def measurements(self) -> Sequence[Observation[Details]]: ...


def controls_from_helper_targets(targets: Iterable[HelperTarget]) -> ControlEvidence:
    """ControlEvidence from a helper response that probe.helper.protocol validated (its
    parse_response is the one validation of the helper's answer)."""
    out = _Collector([], [], [], [], [])
    covered: set[tuple[str, str]] = set()
    for item in targets:
        host = normalise_host(item.host) if item.host else None
        for observation in item.measurements:
            out.add(observation, host)
        covered.add((item.platform, item.target))
    return out.evidence(covered)
