"""The probe's records: what is tested (Target), what one check saw (Observation, with one typed
per-layer record as its `details`) and what is stored (Measurement), with the field's failure
vocabulary (OONI df-007) and the A/B kind as enums.

Network outcomes are data: a check returns an Observation whose `failure` is one of the OONI
strings below, or None on success. Exceptions are for bugs and bad configuration.

The per-layer records (DnsQuery, TcpConnect, ProtocolProbe, TlsHandshake, HttpTransaction,
RawCapture) are the measurement contract: probe.codec turns them into JSON and back (the store,
the helper protocol and the exports use it), their field names are the JSON keys, and
docs/details.md is generated from them (probe.codec.data_dictionary). The field comments below
are that dictionary's text: keep them one line each.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Generic, NamedTuple, TypeVar


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


# Older probes named some of these failures differently, and their documents keep those names
# (ooni/spec data-formats/df-007-errors.md, "legacy errors": ooni/probe-legacy's strings, each
# named after the Twisted exception it stood for). Stored as written; read by the verdict rules
# as the failure each one is (current_failure below). Only the unambiguous ones: a
# connect_error (t.i.e.ConnectError, any connect failure), dns_lookup_error (any lookup failure),
# connection_lost_error or response_never_received could each be several of today's failures and
# stay as they are, which the rules read as a failure of no known kind.
LEGACY_FAILURES: Mapping[str, Failure] = MappingProxyType(
    {
        "connection_refused_error": Failure.CONNECTION_REFUSED,  # t.i.e.ConnectionRefusedError
        "tcp_timed_out_error": Failure.GENERIC_TIMEOUT_ERROR,  # t.i.e.TCPTimedOutError
        "deferred_timeout_error": Failure.GENERIC_TIMEOUT_ERROR,  # t.i.d.TimeoutError
        "connection_done": Failure.EOF_ERROR,  # t.i.e.ConnectionDone: the peer closed
        "dns_name_error": Failure.DNS_NXDOMAIN_ERROR,  # t.n.e.DNSNameError: RCODE 3
        "dns_name_failure": Failure.DNS_SERVFAIL_ERROR,  # t.n.e.DNSServerError: RCODE 2
    }
)


def current_failure(failure: str | None) -> str | None:
    """A failure string in today's df-007 vocabulary: a legacy name as the failure it is, any
    other string as it is."""
    if failure is None:
        return None
    legacy = LEGACY_FAILURES.get(failure)
    return failure if legacy is None else str(legacy)


# OONI writes an unknown error as "unknown_failure: <text>" (df-007); that text comes from a
# dependency (aiohttp's parser messages, an exception's str) and changes when it is upgraded, which
# would split one failure into as many join keys as there are versions. Here `failure` is the bare
# UNKNOWN_FAILURE and the text goes to Observation.failure_detail. Rows written before that split
# carry the prefixed form; probe.codec.split_failure reads them back into the two fields.
UNKNOWN_FAILURE = "unknown_failure"
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


class DifferentialKind(StrEnum):
    """Why the runner made an extra measurement beside a target's own pipeline (the JSON key
    `differential_kind`): the harmless-name half of an A/B test, a protocol probe, or a capture."""

    SNI = "sni"  # a TLS handshake to the same address:port with a harmless SNI
    HOST = "host"  # a plain-HTTP request to the same address:port with a harmless Host header
    PROTOCOL = "protocol"  # a TCP flow whose first data is random bytes (protocol allowlist)
    RAW = "raw"  # a raw-packet capture (probe.rawnet): IP TTL / IP-ID evidence


class Role(StrEnum):
    """What a measurement is for (the exports' `role` column). Only `primary` measurements test
    the target itself: a failure count of interference reads those. The others are controls and
    evidence beside them, whose failures are expected or mean something else (a protocol probe's
    random bytes usually end in eof_error even on an open network)."""

    PRIMARY = "primary"  # the target's own check
    AB_CONTROL = "ab_control"  # the harmless-SNI or harmless-Host half of an A/B test
    PROTOCOL_PROBE = "protocol_probe"  # random bytes to the endpoint (protocol allowlisting)
    RAW_CAPTURE = "raw_capture"  # IP TTL / IP-ID packet evidence taken after the run
    REDIRECT_LOOKUP = "redirect_lookup"  # a redirect's host resolved before following it


_ROLE_OF_KIND = {
    DifferentialKind.SNI: Role.AB_CONTROL,
    DifferentialKind.HOST: Role.AB_CONTROL,
    DifferentialKind.PROTOCOL: Role.PROTOCOL_PROBE,
    DifferentialKind.RAW: Role.RAW_CAPTURE,
}


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


class Speaks(StrEnum):
    """What an endpoint's own traffic is (the catalog's `speaks`): what its app sends first.

    raw:  a protocol of the app's own that no DPI allowlist admits (WhatsApp's chat, Telegram's
          MTProto): a flow of bytes that are neither HTTP nor TLS stands for it.
    tls:  a TLS ClientHello with the endpoint's name as SNI (Facebook's API and MQTT endpoints).
    http: a plain-HTTP request.
    """

    RAW = "raw"
    TLS = "tls"
    HTTP = "http"


@dataclass(frozen=True, slots=True)
class Target:
    """One thing to test, from the catalog, config.toml or a test list.

    `speaks` is what the endpoint's own traffic is when the catalog says so; None takes the
    kind's (see `protocol`)."""

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
    # A large resource read for its goodput, within the transfer bounds ([http] transfer_bytes
    # and transfer_seconds), and compared with the control sites' transfers (throttling).
    transfer: bool = False
    speaks: Speaks | None = None

    @property
    def protocol(self) -> Speaks | None:
        """What the endpoint speaks: the catalog's word, else the kind's (https: tls, http: http,
        tcp: raw); None for a name that is only resolved."""
        if self.speaks is not None:
            return self.speaks
        return _KIND_SPEAKS.get(self.kind)

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


_KIND_SPEAKS = {
    TargetKind.TCP: Speaks.RAW,
    TargetKind.HTTP: Speaks.HTTP,
    TargetKind.HTTPS: Speaks.TLS,
}


# -- the per-layer records (Observation.details) -------------------------------------------------

JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]


def _no_extra() -> Mapping[str, JsonValue]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    """One A, AAAA or CNAME record of an answer section."""

    type: str  # A, AAAA or CNAME
    value: str  # the address, or the CNAME's target
    ttl: int  # the record's TTL in seconds
    name: str  # the owner name, without the final dot


@dataclass(frozen=True, slots=True)
class DnsResponse:
    """A valid response to one query type, in arrival order."""

    received_ms: float  # since the query was sent
    rcode: str  # NOERROR, NXDOMAIN, ...
    addresses: tuple[str, ...]  # addresses of the query's type in the answer
    truncated: bool  # the TC flag (the answer is then retried over TCP)
    attempt: int | None = None  # UDP: which send (1 = first) this answers


@dataclass(frozen=True, slots=True)
class DnsUnexpected:
    """A reply that did not parse or did not match the query."""

    received_ms: float  # since the query was sent
    length: int  # bytes received
    reason: str | None  # why it is not a reply to the query
    query: str | None = None  # A or AAAA: which query it came to
    http_status: int | None = None  # DoH: the HTTP status, when not 200


@dataclass(frozen=True, slots=True)
class DnsPerType:
    """One value per query type (the JSON keys are "A" and "AAAA")."""

    a: str | None = None  # the A query's value
    aaaa: str | None = None  # the AAAA query's value


@dataclass(frozen=True, slots=True)
class DnsQuery:
    """Layer dns: one name resolved (A and AAAA) through one resolver."""

    query: str  # the name asked for
    resolver: str  # the resolver's canonical spec (also the endpoint)
    transport: str  # system, udp, tcp or doh
    rcode: str | None = None  # the rcode of the response whose records count
    addresses: tuple[str, ...] = ()  # the addresses a stub resolver would use (first response)
    answers: tuple[DnsAnswer, ...] = ()  # A, AAAA and CNAME records of the answers, deduplicated
    responses: tuple[DnsResponse, ...] = ()  # every valid response to the A query
    aaaa_responses: tuple[DnsResponse, ...] = ()  # every valid response to the AAAA query
    second_answer: bool = False  # UDP: more than one response to one query (injection's sign)
    per_type: DnsPerType = field(default_factory=DnsPerType)  # each type's failure (null: ok)
    rcodes: DnsPerType | None = None  # each type's rcode (resolvers spoken to directly)
    retried_over_tcp: bool = False  # a truncated UDP answer was asked again over TCP
    unexpected_responses: tuple[DnsUnexpected, ...] = ()  # replies that were no valid answer
    replies_capped: bool | None = None  # UDP: more replies came than are recorded per query
    primary: bool | None = None  # runner: the first configured resolver (false: a control)
    redirect_from: str | None = None  # runner: the URL whose redirect named this host


@dataclass(frozen=True, slots=True)
class TcpConnect:
    """Layer tcp: one TCP connect to an address and port."""

    address: str  # the IP address connected to
    port: int  # the TCP port
    address_source: str | None = None  # runner: the resolver that gave the address, or literal
    attempt: int = 1  # runner: 1 the flow's connect, 2 its repeat to the same address and port


@dataclass(frozen=True, slots=True)
class ProtocolProbe:
    """Layer tcp, differential_kind protocol: a connect, then bytes that are no known protocol."""

    address: str  # the IP address connected to
    port: int  # the TCP port
    payload: str = "random"  # what was sent
    payload_bytes: int = 0  # how many bytes were sent
    response_bytes: int = 0  # how many bytes came back, counted with the probe's address scrubbed
    differential_kind: DifferentialKind = DifferentialKind.PROTOCOL  # always protocol
    address_source: str | None = None  # runner: the resolver that gave the address, or literal
    speaks: str | None = None  # runner: what the endpoint's own traffic is (raw, tls, http)


@dataclass(frozen=True, slots=True)
class Certificate:
    """One certificate the server presented."""

    sha256: str  # of the DER encoding, hex
    subject: str = ""  # distinguished name, short attribute names
    issuer: str = ""  # distinguished name, short attribute names
    sans: tuple[str, ...] = ()  # DNS names and IP addresses; other kinds as "kind:value"
    not_before: str | None = None  # ISO 8601, UTC
    not_after: str | None = None  # ISO 8601, UTC


@dataclass(frozen=True, slots=True)
class TlsHandshake:
    """Layer tls: a TCP connect, then a TLS handshake with a chosen SNI.

    alpn_offered says what the ClientHello offered: a browser's ("h2", "http/1.1"), or
    ("http/1.1",) alone on the handshake whose connection then carried the target's HTTP request
    (the HTTP check speaks HTTP/1.1 only; see probe/checks/tls.py), so its `alpn` is what that
    offer allowed. Null on records written before it was recorded (they offered a browser's)."""

    address: str  # the IP address connected to
    port: int  # the TCP port
    sni: str  # the server name sent
    version: str | None = None  # the negotiated TLS version
    cipher: str | None = None  # the negotiated cipher suite
    alpn: str | None = None  # the protocol the server chose
    alpn_offered: tuple[str, ...] | None = None  # ALPN offered (http/1.1 alone: carries HTTP)
    certificates: tuple[Certificate, ...] = ()  # the chain presented, leaf first
    verified: bool = False  # the chain verified for the SNI
    verify_failure: str | None = None  # the ssl_* failure when the certificate was rejected
    connect_ms: float | None = None  # the TCP connect's duration
    handshake_ms: float | None = None  # the handshake's duration
    unverified_handshake_failure: str | None = None  # how the non-verifying retry ended
    differential_kind: DifferentialKind | None = None  # runner: sni for the harmless-SNI half
    target_sni: str | None = None  # runner: the target's name, on the harmless-SNI half
    address_source: str | None = None  # runner: the resolver that gave the address, or literal


@dataclass(frozen=True, slots=True)
class Redirect:
    """One redirect followed."""

    url: str  # the URL that answered with a redirect
    status: int  # its status (301, 302, 303, 307, 308)
    location: str  # its Location header


@dataclass(frozen=True, slots=True)
class HttpTimings:
    """The final request's phases, in milliseconds."""

    connect_ms: float | None = None  # connection set-up (TCP, TLS); null: a reused connection
    ttfb_ms: float | None = None  # request start to headers (with connect_ms when not null)
    total_ms: float | None = None  # the whole fetch, redirects included


@dataclass(frozen=True, slots=True)
class HttpTransaction:
    """Layer http: one HTTP(S) request, redirects followed, the body read up to a cap.

    reused_tls_connection: true when the first request rode the connection the target's TLS
    check had just verified (one handshake per target: that TLS record, with the same address,
    port and SNI, is this request's handshake); then that hop has no connect_ms and its ttfb_ms
    holds no connection set-up. False when such a connection was offered and could not be used
    (the request dialled its own); null when none was offered."""

    url: str  # the URL requested
    method: str = "GET"  # the request method
    address: str | None = None  # the IP the URL's host was pinned to
    host_header: str | None = None  # the Host header sent
    status: int | None = None  # the final response's status (null: no response)
    headers: tuple[tuple[str, str], ...] = ()  # the final response's headers, [name, value]
    body_length: int = 0  # body bytes read (capped), counted with the probe's address scrubbed
    body_truncated: bool = False  # the cap was reached with bytes still pending
    body_sha256: str | None = None  # of the bytes read with the probe's address scrubbed, hex
    title: str | None = None  # the page's <title>, whitespace collapsed
    body_prefix: str = ""  # the body's first bytes, decoded
    redirects: tuple[Redirect, ...] = ()  # the redirects followed, in order
    final_url: str | None = None  # the URL of the final response
    timings: HttpTimings = field(default_factory=HttpTimings)  # the final request's phases
    throughput_kbps: float | None = None  # the body's download rate, kbit/s
    reused_tls_connection: bool | None = None  # first request rode the TLS check's connection
    transfer: bool | None = None  # runner: a bulk transfer, read within the transfer bounds
    differential_kind: DifferentialKind | None = None  # runner: host for the harmless-Host half
    target_host: str | None = None  # runner: the target's name, on the harmless-Host half
    address_source: str | None = None  # runner: the resolver that gave the address, or literal


@dataclass(frozen=True, slots=True)
class RawCapture:
    """Layer dns or tcp, differential_kind raw: the packets behind a suspicious result
    (probe.rawnet's DNS answers or TCP segments with their IP TTL and IP-ID)."""

    available: bool = False  # a capture could be taken
    failure: str | None = None  # what the capture's own exchange saw
    note: str | None = None  # a reader's summary, or why no capture was taken
    evidence: str | None = None  # dns_packets or tcp_packets
    differential_kind: DifferentialKind = DifferentialKind.RAW  # always raw
    # Everything else rawnet recorded (responses, segments, TTLs), as it recorded it.
    capture: Mapping[str, JsonValue] = field(default_factory=_no_extra)


Details = DnsQuery | TcpConnect | ProtocolProbe | TlsHandshake | HttpTransaction | RawCapture
DETAIL_RECORDS: tuple[type[Details], ...] = (
    DnsQuery,
    TcpConnect,
    ProtocolProbe,
    TlsHandshake,
    HttpTransaction,
    RawCapture,
)

D = TypeVar("D", bound=Details, covariant=True)


@dataclass(frozen=True, slots=True)
class Observation(Generic[D]):
    """What one check saw: `failure` is an OONI string or None, `details` the layer's record.

    `failure_detail` is free text (a parser's message, an unknown exception) kept beside the
    failure, never in it, so the join key `failure` is one of a closed set of strings.

    `probe_stall_ms`: how long the probe's own event loop was stalled while this check ran
    (probe.stall), None when it was not; a timeout across a stall is the probe's, not the
    network's."""

    layer: Layer
    endpoint: str
    started_at: datetime
    duration_ms: float
    details: D
    failure: str | None = None
    failed_operation: Operation | None = None
    failure_detail: str | None = None
    probe_stall_ms: float | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None

    @property
    def differential_kind(self) -> DifferentialKind | None:
        """The A/B kind of a runner's extra measurement, None for a target's own."""
        return getattr(self.details, "differential_kind", None)

    @property
    def role(self) -> Role:
        """What this measurement is for: the target's own check or one beside it."""
        return role_of(self.differential_kind, getattr(self.details, "redirect_from", None))


def role_of(kind: DifferentialKind | None, redirect_from: str | None) -> Role:
    """The role of a measurement whose details have differential_kind `kind` and (DnsQuery)
    redirect_from `redirect_from`: the one rule behind Observation.role and MeasurementRow."""
    if kind is not None:
        return _ROLE_OF_KIND[kind]
    if redirect_from is not None:
        return Role.REDIRECT_LOOKUP
    return Role.PRIMARY


@dataclass(frozen=True, slots=True)
class Measurement:
    """An observation attributed to a run, a platform and a target: the stored unit."""

    run_id: str
    platform: str
    target: str
    observation: Observation[Details]
    id: str = field(default_factory=lambda: new_measurement_id())

    @property
    def layer(self) -> Layer:
        return self.observation.layer

    @property
    def failure(self) -> str | None:
        return self.observation.failure


class MeasurementRow(NamedTuple):
    """A stored measurement's fields as a tuple, its details as the codec's JSON object of the
    record (what probe.codec.encode_details writes for it) and its role beside them: what an
    export of a million measurements streams instead of Measurements (the store can hand most
    rows over without making their records). probe.codec.measurement_row makes one of a
    Measurement."""

    id: str
    run_id: str
    platform: str
    target: str
    endpoint: str
    layer: Layer
    started_at: datetime
    duration_ms: float
    failure: str | None
    failed_operation: Operation | None
    failure_detail: str | None
    details: dict[str, JsonValue]  # shared between rows of one stored text: never changed
    role: Role


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


def to_the_second(when: datetime) -> datetime:
    """A wall-clock time as stored: to the second. Research needs no more, and a sub-second time
    is one more handle to match a shared row against an ISP's flow logs (durations, measured on
    the monotonic clock, stay precise)."""
    return when.replace(microsecond=0)


# Measurement ids: 32 hex digits like uuid4 hex, a random 64-bit prefix drawn once per process
# and then a counter. Unique across probes as uuid4 is (the prefix), and ordered as made within
# a process: what orders a run's measurements started in the same second, now that their
# wall-clock times are stored to the second.
_MEASUREMENT_PREFIX = uuid.uuid4().hex[:16]
_MEASUREMENT_COUNTER = itertools.count(1)


def new_measurement_id() -> str:
    """A new measurement id: later than every id this process made before."""
    return f"{_MEASUREMENT_PREFIX}{next(_MEASUREMENT_COUNTER):016x}"


def new_run_id() -> str:
    return uuid.uuid4().hex
