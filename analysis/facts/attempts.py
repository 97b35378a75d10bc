"""A target's measurements, split by layer and A/B kind, each with its typed record; and the small
readers the layers share (the endpoint of an attempt, the dominant failure, a control's state).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar
from urllib.parse import urlsplit

from analysis.controls import is_control_resolver
from analysis.rules import CERTIFICATE_FAILURES
from probe.model import (
    Details,
    DifferentialKind,
    DnsQuery,
    HttpTransaction,
    Measurement,
    ProtocolProbe,
    TcpConnect,
    TlsHandshake,
    current_failure,
)
from probe.names import normalise_host

Endpoint = tuple[str, int]
R = TypeVar("R", bound=Details, covariant=True)


@dataclass(frozen=True, slots=True)
class Attempt(Generic[R]):
    """One measurement and its record, narrowed to the record's type."""

    m: Measurement
    d: R

    @property
    def id(self) -> str:
        return self.m.id

    @property
    def failure(self) -> str | None:
        """The failure in today's df-007 words (an imported legacy string as what it is)."""
        return current_failure(self.m.failure)

    @property
    def operation(self) -> str | None:
        op = self.m.observation.failed_operation
        return None if op is None else str(op)


@dataclass(slots=True)
class Split:
    """A target's attempts by layer; raw-packet captures are left out (evidence for a reader,
    not another attempt)."""

    dns: list[Attempt[DnsQuery]] = field(default_factory=list)
    dns_control: list[Attempt[DnsQuery]] = field(default_factory=list)
    tcp: list[Attempt[TcpConnect]] = field(default_factory=list)
    probes: list[Attempt[ProtocolProbe]] = field(default_factory=list)
    tls: list[Attempt[TlsHandshake]] = field(default_factory=list)
    tls_ab: list[Attempt[TlsHandshake]] = field(default_factory=list)
    http: list[Attempt[HttpTransaction]] = field(default_factory=list)
    http_ab: list[Attempt[HttpTransaction]] = field(default_factory=list)


def split(own: Iterable[Measurement]) -> Split:
    s = Split()
    for m in own:
        d = m.observation.details
        if isinstance(d, DnsQuery):
            if d.redirect_from is not None:
                continue  # a host a redirect named, not the target's own name
            (s.dns_control if is_control_resolver(d) else s.dns).append(Attempt(m, d))
        elif isinstance(d, ProtocolProbe):
            s.probes.append(Attempt(m, d))
        elif isinstance(d, TcpConnect):
            s.tcp.append(Attempt(m, d))
        elif isinstance(d, TlsHandshake):
            (s.tls if d.differential_kind is None else s.tls_ab).append(Attempt(m, d))
        elif isinstance(d, HttpTransaction):
            (s.http if d.differential_kind is None else s.http_ab).append(Attempt(m, d))
    return s


def url_port(url: str) -> int | None:
    try:
        parts = urlsplit(url)
        return parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        return None


def endpoint(d: Details) -> Endpoint | None:
    """The (address, port) an attempt went to; an HTTP request's port is its URL's."""
    if isinstance(d, TcpConnect | ProtocolProbe | TlsHandshake):
        return (d.address, d.port) if d.address else None
    if isinstance(d, HttpTransaction) and d.address:
        port = url_port(d.url)
        return None if port is None else (d.address, port)
    return None


def address(d: Details) -> str | None:
    """The IP address an attempt connected to (None for DNS and captures)."""
    if isinstance(d, TcpConnect | ProtocolProbe | TlsHandshake | HttpTransaction):
        return d.address or None
    return None


def is_plain_http(d: HttpTransaction) -> bool:
    return d.url.lower().startswith("http://")


def is_v6(address: str | None) -> bool:
    return address is not None and ":" in address


def strip_port(host_header: str) -> str:
    """The host of a Host header value ("example.com:8080", "[2001:db8::1]:80")."""
    try:
        hostname = urlsplit(f"//{host_header.strip()}").hostname
    except ValueError:
        hostname = None
    return normalise_host(hostname or host_header)


def handshake_reached_server(failure: str | None, d: TlsHandshake) -> bool:
    """The TLS handshake got the server's answer: it completed, or the certificate it presented
    was rejected (which still proves the ClientHello passed the path)."""
    return failure is None or failure in CERTIFICATE_FAILURES or bool(d.certificates)


def dominant(failures: Sequence[str]) -> str | None:
    """The most common failure; ties go to the one seen first."""
    if not failures:
        return None
    return Counter(failures).most_common(1)[0][0]


def dedup(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def control_state(results: Sequence[bool]) -> bool | None:
    """True when any control attempt succeeded, False when all failed, None when none exist."""
    if not results:
        return None
    return any(results)


def is_raw(m: Measurement) -> bool:
    return m.observation.differential_kind is DifferentialKind.RAW
