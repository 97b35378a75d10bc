"""OONI's df-xxx records -> our typed measurement records (probe.model), per routed target.

- df-002 queries: OONI writes one query per type (A, AAAA) per engine and resolver; ours is one
  DnsQuery per name and resolver covering both types, so the pair is joined. The engine names
  the transport (system/getaddrinfo: system; udp, tcp, doh: the resolver's spec as our config
  writes it). The system resolver is the primary; a DoH query (web_connectivity 0.5's
  x_doh) is not, which makes it an encrypted control resolver as in our own runs.
- df-005 tcp_connect -> TcpConnect; df-006 tls_handshakes -> TlsHandshake with each peer
  certificate decoded (subject, issuer, SANs, validity, DER SHA-256); df-001 requests ->
  HttpTransaction with the body's length, SHA-256, <title> and prefix.

Failure strings stay exactly as OONI wrote them, an older probe's legacy ones too (the verdict
rules read those as today's: probe.model.current_failure); only an "unknown_failure: <text>" is
split the way our records keep it (probe.codec.split_failure: the text goes to failure_detail),
and the OONI export writes it back whole. Times: the measurement's start plus the entry's `t0`
(or `t`), durations from `t - t0` where a probe recorded both.
"""

from __future__ import annotations

import hashlib
import uuid
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from cryptography import x509
from cryptography.x509.oid import NameOID

from probe import model
from probe.checks import format_endpoint
from probe.checks.http import page_title
from probe.codec import split_failure
from probe.model import Layer, Measurement, Observation, Operation
from probe.ooni import dataformat as df
from probe.ooni.document import OoniDocument
from probe.ooni.targets import Routed

# What is kept of a body: the same prefix our own HTTP check keeps (probe.config's default).
BODY_PREFIX_BYTES = 2048

_SYSTEM_ENGINES = frozenset({"system", "getaddrinfo", "golang_net_resolver", "go"})
_RCODE_OF_FAILURE = {
    None: "NOERROR",
    "dns_no_answer": "NOERROR",
    "dns_nxdomain_error": "NXDOMAIN",
    "dns_refused_error": "REFUSED",
    "dns_servfail_error": "SERVFAIL",
}
_DN_SHORT = {
    NameOID.COMMON_NAME: "CN",
    NameOID.COUNTRY_NAME: "C",
    NameOID.STATE_OR_PROVINCE_NAME: "ST",
    NameOID.LOCALITY_NAME: "L",
    NameOID.ORGANIZATION_NAME: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.DOMAIN_COMPONENT: "DC",
    NameOID.SERIAL_NUMBER: "serialNumber",
    NameOID.EMAIL_ADDRESS: "emailAddress",
}


def _when(document: OoniDocument, t0: float | None, t: float | None) -> datetime:
    offset = t0 if t0 is not None else t
    start = document.measurement_start_time
    if offset is None or not 0 <= offset < 86400:
        return start
    return start + timedelta(seconds=offset)


def _duration_ms(t0: float | None, t: float | None) -> float:
    if t0 is None or t is None or t < t0:
        return 0.0
    return round((t - t0) * 1000.0, 3)


# -- DNS -----------------------------------------------------------------------------------------


def _resolver(query: df.DnsQuery) -> tuple[str, str]:
    """(our resolver spec, transport) for an OONI query's engine and resolver_address."""
    engine = (query.engine or "system").lower()
    address = query.resolver_address or ""
    if engine in ("udp", "tcp") and address:
        spec = address if "://" in address else f"{engine}://{address}"
        return spec, engine
    if engine == "doh" and address:
        return address, "doh"
    return "system", "system"


def dns_observations(
    document: OoniDocument, queries: Sequence[df.DnsQuery]
) -> list[Observation[model.DnsQuery]]:
    """One observation per (name, resolver), joining OONI's A and AAAA queries."""
    groups: dict[tuple[str, str], list[df.DnsQuery]] = {}
    for query in queries:
        spec, _ = _resolver(query)
        groups.setdefault((query.hostname.lower().rstrip("."), spec), []).append(query)
    observations = []
    for (name, spec), members in groups.items():
        transport = _resolver(members[0])[1]
        by_type = {q.query_type: q for q in members}
        addresses: list[str] = []
        answers: list[model.DnsAnswer] = []
        for q in members:
            for a in q.answers:
                if a.value is None or a.answer_type not in ("A", "AAAA", "CNAME"):
                    continue
                if a.answer_type != "CNAME" and a.value not in addresses:
                    addresses.append(a.value)
                answer = model.DnsAnswer(a.answer_type, a.value, max(0, a.ttl or 0), name)
                if answer not in answers:
                    answers.append(answer)
        # getaddrinfo engines write one "ANY" query for both types (df-002, since 2022-08-27).
        either = by_type.get("ANY")
        a_query, aaaa_query = by_type.get("A", either), by_type.get("AAAA", either)
        a_failure = a_query.failure if a_query is not None else None
        aaaa_failure = aaaa_query.failure if aaaa_query is not None else None
        failure = None if addresses else (a_failure or aaaa_failure or "dns_no_answer")
        failure, detail = split_failure(failure)
        first = min(members, key=lambda q: q.t0 if q.t0 is not None else (q.t or 0.0))
        last_t = max((q.t for q in members if q.t is not None), default=None)
        rcode_query = a_query or members[0]
        details = model.DnsQuery(
            query=name,
            resolver=spec,
            transport=transport,
            rcode=_RCODE_OF_FAILURE.get(rcode_query.failure),
            addresses=tuple(addresses),
            answers=tuple(answers),
            per_type=model.DnsPerType(a=a_failure, aaaa=aaaa_failure),
            primary=transport == "system",
        )
        system = transport == "system"
        observations.append(
            Observation(
                layer=Layer.DNS,
                endpoint=spec,
                started_at=_when(document, first.t0, first.t),
                duration_ms=_duration_ms(first.t0, last_t),
                details=details,
                failure=failure,
                failed_operation=(
                    None
                    if failure is None
                    else Operation.RESOLVE
                    if system
                    else Operation.DNS_ROUND_TRIP
                ),
                failure_detail=detail,
            )
        )
    return observations


# -- TCP -----------------------------------------------------------------------------------------


def tcp_observation(
    document: OoniDocument, connect: df.TcpConnect
) -> Observation[model.TcpConnect]:
    failure, detail = split_failure(connect.failure)
    if failure is None and not connect.success:
        failure = "unknown_failure"
    return Observation(
        layer=Layer.TCP,
        endpoint=format_endpoint(connect.ip, connect.port),
        started_at=_when(document, connect.t0, connect.t),
        duration_ms=_duration_ms(connect.t0, connect.t),
        details=model.TcpConnect(connect.ip, connect.port),
        failure=failure,
        failed_operation=Operation.CONNECT if failure else None,
        failure_detail=detail,
    )


# -- TLS -----------------------------------------------------------------------------------------


def _name(name: x509.Name) -> str:
    parts = []
    for rdn in name.rdns:
        for attribute in rdn:
            label = _DN_SHORT.get(attribute.oid, attribute.oid.dotted_string)
            value = attribute.value
            parts.append(f"{label}={value if isinstance(value, str) else value.hex()}")
    return ", ".join(parts)


@lru_cache(maxsize=4096)
def certificate_of(der: bytes) -> model.Certificate:
    """Our record of one DER certificate; one that does not parse keeps its digest only.

    Cached: the same chains come back in measurement after measurement (a service's servers
    present one certificate), and decoding one costs more than the rest of its handshake."""
    digest = hashlib.sha256(der).hexdigest()
    try:
        with warnings.catch_warnings():
            # Some real chains carry RFC 5280 violations (a negative serial) cryptography
            # warns about; the certificate is still what the server presented.
            warnings.simplefilter("ignore")
            cert = x509.load_der_x509_certificate(der)
        subject, issuer = _name(cert.subject), _name(cert.issuer)
        not_before = cert.not_valid_before_utc.astimezone(UTC).isoformat()
        not_after = cert.not_valid_after_utc.astimezone(UTC).isoformat()
    except ValueError:
        return model.Certificate(digest)
    sans: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (x509.ExtensionNotFound, ValueError):
        extension = None
    if extension is not None:
        for entry in extension.value:
            if isinstance(entry, x509.DNSName):
                sans.append(entry.value)
            elif isinstance(entry, x509.IPAddress):
                sans.append(str(entry.value))
            else:
                sans.append(f"{type(entry).__name__}:{entry.value}")
    return model.Certificate(digest, subject, issuer, tuple(sans), not_before, not_after)


def _address_port(address: str | None) -> tuple[str, int]:
    if not address:
        return "", 443
    host, _, port = address.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return host, int(port) if port.isdigit() else 443


def tls_observation(
    document: OoniDocument, handshake: df.TlsHandshake, host: str
) -> Observation[model.TlsHandshake]:
    address, port = _address_port(handshake.address)
    failure, detail = split_failure(handshake.failure)
    rejected = (
        failure is not None and failure.startswith("ssl_") and bool(handshake.peer_certificates)
    )
    return Observation(
        layer=Layer.TLS,
        endpoint=format_endpoint(address, port) if address else (handshake.server_name or host),
        started_at=_when(document, handshake.t0, handshake.t),
        duration_ms=_duration_ms(handshake.t0, handshake.t),
        details=model.TlsHandshake(
            address=address,
            port=port,
            sni=handshake.server_name or host,
            version=handshake.tls_version,
            cipher=handshake.cipher_suite,
            alpn=handshake.negotiated_protocol or None,
            certificates=tuple(certificate_of(der) for der in handshake.peer_certificates),
            verified=failure is None and not handshake.no_tls_verify,
            verify_failure=failure if rejected else None,
        ),
        failure=failure,
        failed_operation=Operation.TLS_HANDSHAKE if failure else None,
        failure_detail=detail,
    )


# -- HTTP ----------------------------------------------------------------------------------------


def _charset(headers: df.Headers) -> str:
    for name, value in headers:
        if name.lower() == "content-type" and "charset=" in value.lower():
            charset = value.lower().split("charset=", 1)[1].split(";")[0].strip(" \"'")
            try:
                "".encode(charset)
            except LookupError:
                return "utf-8"
            return charset
    return "utf-8"


def http_observation(
    document: OoniDocument, transaction: df.HttpTransaction
) -> Observation[model.HttpTransaction]:
    request, response = transaction.request, transaction.response
    failure, detail = split_failure(transaction.failure)
    host_header = next((v for n, v in request.headers if n.lower() == "host"), None)
    body = response.body if response is not None else b""
    headers = response.headers if response is not None else ()
    charset = _charset(headers)
    duration = _duration_ms(transaction.t0, transaction.t)
    return Observation(
        layer=Layer.HTTP,
        endpoint=request.url,
        started_at=_when(document, transaction.t0, transaction.t),
        duration_ms=duration,
        details=model.HttpTransaction(
            url=request.url,
            method=request.method,
            host_header=host_header,
            status=response.code if response is not None else None,
            headers=headers,
            body_length=len(body),
            body_truncated=response.body_is_truncated if response is not None else False,
            body_sha256=hashlib.sha256(body).hexdigest() if response is not None else None,
            title=page_title(body, charset),
            body_prefix=body[:BODY_PREFIX_BYTES].decode(charset, errors="replace"),
            final_url=request.url,
            timings=model.HttpTimings(total_ms=duration or None),
        ),
        failure=failure,
        failed_operation=Operation.HTTP_ROUND_TRIP if failure else None,
        failure_detail=detail,
    )


# -- a document's measurements --------------------------------------------------------------------


def uuid5_hex(namespace: uuid.UUID, name: str) -> str:
    """`uuid.uuid5(namespace, name).hex` (RFC 4122 section 4.3: SHA-1 of the namespace and the
    name, version 5, variant 10) without building a UUID object, which cost more than the hash
    for the ~20 measurement ids of each imported document."""
    digest = bytearray(
        hashlib.sha1(namespace.bytes + name.encode("utf-8"), usedforsecurity=False).digest()[:16]
    )
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    return digest.hex()


def to_measurements(
    run_id: str, document: OoniDocument, routed: Sequence[Routed], namespace: uuid.UUID
) -> list[Measurement]:
    """Every routed observation as a Measurement of `run_id`, ids derived from the run's id and
    the measurement's position (the same document always gives the same ids)."""
    measurements: list[Measurement] = []
    for item in routed:
        target = item.target
        observations: list[Observation[model.Details]] = [
            *dns_observations(document, item.queries),
            *(tcp_observation(document, c) for c in item.tcp_connect),
            *(tls_observation(document, h, target.host) for h in item.tls_handshakes),
            *(http_observation(document, t) for t in item.requests),
        ]
        for observation in observations:
            index = len(measurements)
            measurements.append(
                Measurement(
                    run_id=run_id,
                    platform=target.platform,
                    target=target.name,
                    observation=observation,
                    id=uuid5_hex(namespace, f"{run_id}/{index}"),
                )
            )
    return measurements
