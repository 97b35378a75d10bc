"""The probe's records: what is tested (Target), what one check saw (Observation) and what is stored
(Measurement), with the field's failure vocabulary (OONI df-007) as enums.

Network outcomes are data: a check returns an Observation whose `failure` is one of the OONI
strings below, or None on success. Exceptions are for bugs and bad configuration.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class Failure(StrEnum):
    """OONI failure strings (df-007). Keep the values exact: researchers join on them."""

    CONNECTION_REFUSED = "connection_refused"
    CONNECTION_RESET = "connection_reset"
    CONNECTION_ABORTED = "connection_aborted"
    EOF_ERROR = "eof_error"
    GENERIC_TIMEOUT_ERROR = "generic_timeout_error"
    HOST_UNREACHABLE = "host_unreachable"
    NETWORK_UNREACHABLE = "network_unreachable"
    NETWORK_DOWN = "network_down"
    DNS_NXDOMAIN_ERROR = "dns_nxdomain_error"
    DNS_NO_ANSWER = "dns_no_answer"
    DNS_BOGON_ERROR = "dns_bogon_error"
    DNS_REFUSED_ERROR = "dns_refused_error"
    DNS_SERVFAIL_ERROR = "dns_servfail_error"
    DNS_SERVER_MISBEHAVING = "dns_server_misbehaving"
    DNS_TEMPORARY_FAILURE = "dns_temporary_failure"
    SSL_INVALID_HOSTNAME = "ssl_invalid_hostname"
    SSL_UNKNOWN_AUTHORITY = "ssl_unknown_authority"
    SSL_INVALID_CERTIFICATE = "ssl_invalid_certificate"
    SSL_FAILED_HANDSHAKE = "ssl_failed_handshake"


UNKNOWN_FAILURE_PREFIX = "unknown_failure: "


class Operation(StrEnum):
    """The operation that failed (OONI `failed_operation`)."""

    RESOLVE = "resolve"
    CONNECT = "connect"
    TLS_HANDSHAKE = "tls_handshake"
    HTTP_ROUND_TRIP = "http_round_trip"
    DNS_ROUND_TRIP = "dns_round_trip"
    READ = "read"
    WRITE = "write"
    TOP_LEVEL = "top_level"


class Layer(StrEnum):
    """The layer a measurement tested."""

    DNS = "dns"
    TCP = "tcp"
    TLS = "tls"
    HTTP = "http"


class TargetKind(StrEnum):
    """What the runner does with a target.

    dns:   resolve the host only.
    tcp:   resolve, then TCP connect to every address on every port.
    http:  resolve, connect, then a plain-HTTP request on every port (Telegram DCs: POST, 80 + 443).
    https: resolve, connect, TLS handshake with SNI, then an HTTPS request.
    """

    DNS = "dns"
    TCP = "tcp"
    HTTP = "http"
    HTTPS = "https"


@dataclass(frozen=True, slots=True)
class Target:
    """One thing to test, from the catalog, config.toml or a test list."""

    platform: str
    name: str
    kind: TargetKind
    host: str
    ports: tuple[int, ...] = ()
    path: str = "/"
    method: str = "GET"
    control: bool = False
    source: str = "catalog"
    group: str | None = None

    @property
    def url(self) -> str | None:
        """The URL requested for http/https targets (default port omitted)."""
        if self.kind not in (TargetKind.HTTP, TargetKind.HTTPS):
            return None
        return self.url_for_port(self.ports[0] if self.ports else None)

    def url_for_port(self, port: int | None) -> str:
        scheme = "https" if self.kind is TargetKind.HTTPS else "http"
        default = 443 if scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        netloc = host if port in (None, default) else f"{host}:{port}"
        return f"{scheme}://{netloc}{self.path}"


@dataclass(frozen=True, slots=True)
class Observation:
    """What one check saw. `failure` is an OONI string or None; `details` is JSON-serialisable."""

    layer: Layer
    endpoint: str
    started_at: datetime
    duration_ms: float
    failure: str | None = None
    failed_operation: Operation | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.failure is None


@dataclass(frozen=True, slots=True)
class Measurement:
    """An observation attributed to a run, a platform and a target: the stored unit."""

    run_id: str
    platform: str
    target: str
    observation: Observation
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def layer(self) -> Layer:
        return self.observation.layer

    @property
    def failure(self) -> str | None:
        return self.observation.failure


@dataclass(frozen=True, slots=True)
class NetworkInfo:
    """What is known of the probe's network. Never holds the probe's own IP address."""

    asn: int | None = None
    as_name: str | None = None
    country: str | None = None
    resolver_asn: int | None = None
    resolver_as_name: str | None = None
    resolver_country: str | None = None
    vpn_suspected: bool | None = None
    source: str = "unknown"


class Connectivity(StrEnum):
    """Whether the run's control sites showed a working network."""

    OK = "ok"
    NONE = "none"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Run:
    """One execution of the probe."""

    id: str
    probe_id: str
    started_at: datetime
    software_version: str
    config_digest: str
    network: NetworkInfo = field(default_factory=NetworkInfo)
    finished_at: datetime | None = None
    connectivity: Connectivity = Connectivity.UNKNOWN
    interrupted: bool = False


def utcnow() -> datetime:
    """The current time, UTC-aware."""
    return datetime.now(UTC)


def new_run_id() -> str:
    return uuid.uuid4().hex
