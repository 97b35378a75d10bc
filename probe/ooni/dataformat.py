"""OONI's data-format structures (ooni/spec `data-formats/`) as typed records, parsed from hostile
JSON with bounded sizes and one-line errors.

- df-002 DNS (`queries`): one query, its answers (A/AAAA/CNAME), the engine and resolver.
- df-005 TCP connect (`tcp_connect`): ip, port, status.success / status.failure.
- df-006 TLS handshake (`tls_handshakes`): SNI, version, cipher, ALPN, the peer certificates
  (DER, base64 in the document), failure.
- df-001 HTTP (`requests`): request and response with headers (a map, or `headers_list` pairs
  that keep duplicates and order) and bodies, which are a UTF-8 string or, when not valid UTF-8,
  `{"format": "base64", "data": ...}` (df-001 "MaybeBinaryData"; old probes used the same object
  for header values).

Failure strings are kept exactly as the document has them (df-007 and older probes' strings such
as "connect_error" or "ssl_error: ..."): researchers join on them. A field of the wrong type is a
FormatError naming its path, so the importer can count the document as malformed and go on.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Bounds on what one document may put in a record (hostile input): names and URLs, failure
# strings, list lengths, header counts. A value beyond them is a FormatError, never truncated
# silently into something that looks real.
MAX_TEXT = 8192
MAX_ITEMS = 4096
MAX_HEADERS = 512
MAX_CERTIFICATES = 32


class FormatError(ValueError):
    """A field of an OONI document has the wrong type or is out of bounds."""


def fail(where: str, message: str) -> FormatError:
    return FormatError(f"{where}: {message}")


# -- checked readers (None for a missing or null field) -------------------------------------------


def text(obj: Mapping[str, Any], key: str, where: str, limit: int = MAX_TEXT) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if type(value) is str and len(value) <= limit:
        return value
    if not isinstance(value, str):
        raise fail(f"{where}.{key}", f"expected a string, got {type(value).__name__}")
    raise fail(f"{where}.{key}", f"longer than {limit} characters")


def failure_string(obj: Mapping[str, Any], key: str, where: str) -> str | None:
    """A failure string exactly as written; `false` is "no failure" (measurement-kit probes
    wrote `"failure": false` in df-005 status objects)."""
    if obj.get(key) is False:
        return None
    return text(obj, key, where)


def integer(obj: Mapping[str, Any], key: str, where: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if type(value) is int and -(2**53) <= value <= 2**53:
        return value
    # bool is an int subclass: reject it explicitly (true is not a port).
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise fail(f"{where}.{key}", f"expected an integer, got {type(value).__name__}")
    number = int(value)
    if abs(number) > 2**53:
        raise fail(f"{where}.{key}", "integer out of range")
    return number


def number(obj: Mapping[str, Any], key: str, where: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if type(value) is float and -1e15 < value < 1e15:
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise fail(f"{where}.{key}", f"expected a number, got {type(value).__name__}")
    result = float(value)
    if result != result or abs(result) > 1e15:  # NaN or absurd
        raise fail(f"{where}.{key}", "number out of range")
    return result


def flag(obj: Mapping[str, Any], key: str, where: str) -> bool | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise fail(f"{where}.{key}", f"expected true or false, got {type(value).__name__}")
    return value


def mapping(obj: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any] | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise fail(f"{where}.{key}", f"expected an object, got {type(value).__name__}")
    if len(value) > MAX_ITEMS:
        raise fail(f"{where}.{key}", f"more than {MAX_ITEMS} entries")
    return value


def items(obj: Mapping[str, Any], key: str, where: str, limit: int = MAX_ITEMS) -> Sequence[Any]:
    """A list field; a missing or null list is empty (OONI writes null for "none")."""
    value = obj.get(key)
    if value is None:
        return ()
    if not isinstance(value, list):
        raise fail(f"{where}.{key}", f"expected a list, got {type(value).__name__}")
    if len(value) > limit:
        raise fail(f"{where}.{key}", f"more than {limit} entries")
    return value


def entry(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise fail(where, f"expected an object, got {type(value).__name__}")
    return value


def binary(value: Any, where: str) -> bytes:
    """df-001 MaybeBinaryData: a string (its UTF-8 bytes) or {"format": "base64", "data": ...}.

    Base64 with missing padding is accepted (some probes wrote it so; ooni/backend fastpath
    fixture web_connectivity_b64_incorrect); any other invalid base64 is a FormatError."""
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, dict):
        if value.get("format") != "base64" or not isinstance(value.get("data"), str):
            raise fail(where, 'expected a string or {"format": "base64", "data": "..."}')
        data: str = value["data"]
        try:
            return base64.b64decode(data + "=" * (-len(data) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise fail(where, "invalid base64 data") from None
    raise fail(where, f"expected a string or base64 object, got {type(value).__name__}")


def binary_text(value: Any, where: str, limit: int = MAX_TEXT) -> str:
    """A MaybeBinaryData header value as text (undecodable bytes replaced, bounded)."""
    if type(value) is str and len(value) <= limit:
        return value
    raw = binary(value, where)
    if len(raw) > limit:
        raise fail(where, f"longer than {limit} bytes")
    return raw.decode("utf-8", "replace")


# -- df-002 DNS ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    """One answer record: `value` is the ipv4, ipv6 or hostname field, by answer_type."""

    answer_type: str
    value: str | None
    ttl: int | None = None
    asn: int | None = None


@dataclass(frozen=True, slots=True)
class DnsQuery:
    """df-002: one lookup of `hostname` for `query_type` by `engine` (system, getaddrinfo, udp,
    tcp, doh, ...) at `resolver_address`; `failure` as the document has it."""

    hostname: str
    query_type: str
    engine: str | None
    resolver_address: str | None
    failure: str | None
    answers: tuple[DnsAnswer, ...]
    t: float | None = None
    t0: float | None = None
    transaction_id: int | None = None

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(
            a.value for a in self.answers if a.answer_type in ("A", "AAAA") and a.value is not None
        )


_ANSWER_FIELD = {"A": "ipv4", "AAAA": "ipv6", "CNAME": "hostname", "NS": "hostname"}


def parse_query(value: Any, where: str) -> DnsQuery:
    obj = entry(value, where)
    answers = []
    for i, item in enumerate(items(obj, "answers", where)):
        here = f"{where}.answers[{i}]"
        answer = entry(item, here)
        kind = text(answer, "answer_type", here, 16) or ""
        field = _ANSWER_FIELD.get(kind)
        answers.append(
            DnsAnswer(
                answer_type=kind,
                value=text(answer, field, here, 1024) if field else None,
                ttl=integer(answer, "ttl", here),
                asn=integer(answer, "asn", here),
            )
        )
    return DnsQuery(
        hostname=text(obj, "hostname", where, 1024) or "",
        query_type=text(obj, "query_type", where, 16) or "A",
        engine=text(obj, "engine", where, 64),
        resolver_address=text(obj, "resolver_address", where, 1024),
        failure=failure_string(obj, "failure", where),
        answers=tuple(answers),
        t=number(obj, "t", where),
        t0=number(obj, "t0", where),
        transaction_id=integer(obj, "transaction_id", where),
    )


# -- df-005 TCP connect -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TcpConnect:
    """df-005: a connect to ip:port; `success` from status.success (or no failure)."""

    ip: str
    port: int
    success: bool
    failure: str | None
    t: float | None = None
    t0: float | None = None
    transaction_id: int | None = None


def parse_tcp_connect(value: Any, where: str) -> TcpConnect:
    obj = entry(value, where)
    status = mapping(obj, "status", where) or {}
    reason = failure_string(status, "failure", f"{where}.status")
    success = flag(status, "success", f"{where}.status")
    port = integer(obj, "port", where)
    if port is None or not 0 <= port <= 65535:
        raise fail(f"{where}.port", "expected a port number")
    return TcpConnect(
        ip=text(obj, "ip", where, 64) or "",
        port=port,
        success=success if success is not None else reason is None,
        failure=reason,
        t=number(obj, "t", where),
        t0=number(obj, "t0", where),
        transaction_id=integer(obj, "transaction_id", where),
    )


# -- df-006 TLS handshake -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TlsHandshake:
    """df-006: a handshake with `server_name` (SNI) to `address` ("ip:port", absent in older
    probes); `peer_certificates` are DER, leaf first."""

    address: str | None
    server_name: str | None
    failure: str | None
    tls_version: str | None
    cipher_suite: str | None
    negotiated_protocol: str | None
    no_tls_verify: bool
    peer_certificates: tuple[bytes, ...]
    t: float | None = None
    t0: float | None = None
    transaction_id: int | None = None


def parse_tls_handshake(value: Any, where: str) -> TlsHandshake:
    obj = entry(value, where)
    certificates = tuple(
        binary(item, f"{where}.peer_certificates[{i}]")
        for i, item in enumerate(items(obj, "peer_certificates", where, MAX_CERTIFICATES))
    )
    return TlsHandshake(
        address=text(obj, "address", where, 1024),
        server_name=text(obj, "server_name", where, 1024),
        failure=failure_string(obj, "failure", where),
        tls_version=text(obj, "tls_version", where, 64),
        cipher_suite=text(obj, "cipher_suite", where, 128),
        negotiated_protocol=text(obj, "negotiated_protocol", where, 64),
        no_tls_verify=bool(flag(obj, "no_tls_verify", where)),
        peer_certificates=certificates,
        t=number(obj, "t", where),
        t0=number(obj, "t0", where),
        transaction_id=integer(obj, "transaction_id", where),
    )


# -- df-001 HTTP --------------------------------------------------------------------------------

Headers = tuple[tuple[str, str], ...]


def parse_headers(obj: Mapping[str, Any], where: str) -> Headers:
    """`headers_list` ([[name, value], ...]: order and duplicates kept) when present, else the
    `headers` map (a value may itself be a list of values, or a base64 object)."""
    pairs: list[tuple[str, str]] = []
    listed = obj.get("headers_list")
    if listed is not None:
        for i, item in enumerate(items(obj, "headers_list", where, MAX_HEADERS)):
            here = f"{where}.headers_list[{i}]"
            if not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], str):
                raise fail(here, "expected a [name, value] pair")
            if len(item[0]) > 1024:
                raise fail(here, "header name longer than 1024 characters")
            pairs.append((item[0], binary_text(item[1], here)))
        return tuple(pairs)
    headers = mapping(obj, "headers", where) or {}
    if len(headers) > MAX_HEADERS:
        raise fail(f"{where}.headers", f"more than {MAX_HEADERS} headers")
    for name, raw in headers.items():
        if len(name) > 1024:
            raise fail(f"{where}.headers", "header name longer than 1024 characters")
        values = raw if isinstance(raw, list) else [raw]
        for value in values[:MAX_HEADERS]:
            pairs.append((name, binary_text(value, f"{where}.headers[{name!r}]")))
    return tuple(pairs)


@dataclass(frozen=True, slots=True)
class HttpRequest:
    url: str
    method: str
    headers: Headers
    body: bytes


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """`code` None: no response line (OONI writes 0 or -1 for none). `body` is what the probe
    kept, `body_is_truncated` whether it kept less than the server sent."""

    code: int | None
    headers: Headers
    body: bytes
    body_is_truncated: bool

    @property
    def body_sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


@dataclass(frozen=True, slots=True)
class HttpTransaction:
    """df-001: one request, its response (None when nothing came back) and the failure."""

    request: HttpRequest
    response: HttpResponse | None
    failure: str | None
    t: float | None = None
    t0: float | None = None
    transaction_id: int | None = None


def parse_transaction(value: Any, where: str) -> HttpTransaction:
    obj = entry(value, where)
    req = mapping(obj, "request", where) or {}
    here = f"{where}.request"
    request = HttpRequest(
        url=text(req, "url", here) or "",
        method=text(req, "method", here, 32) or "GET",
        headers=parse_headers(req, here),
        body=binary(req.get("body"), f"{here}.body"),
    )
    res = mapping(obj, "response", where)
    response = None
    if res is not None:
        here = f"{where}.response"
        code = integer(res, "code", here)
        response = HttpResponse(
            code=code if code is not None and code > 0 else None,
            headers=parse_headers(res, here),
            body=binary(res.get("body"), f"{here}.body"),
            body_is_truncated=bool(flag(res, "body_is_truncated", here)),
        )
        if response.code is None and not response.headers and not response.body:
            response = None
    return HttpTransaction(
        request=request,
        response=response,
        failure=failure_string(obj, "failure", where),
        t=number(obj, "t", where),
        t0=number(obj, "t0", where),
        transaction_id=integer(obj, "transaction_id", where),
    )


# -- the four lists of a test_keys object -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NetworkObservations:
    """The df-xxx lists of one document's test_keys, in the document's order."""

    queries: tuple[DnsQuery, ...]
    tcp_connect: tuple[TcpConnect, ...]
    tls_handshakes: tuple[TlsHandshake, ...]
    requests: tuple[HttpTransaction, ...]


def parse_observations(test_keys: Mapping[str, Any]) -> NetworkObservations:
    where = "test_keys"
    return NetworkObservations(
        queries=tuple(
            parse_query(v, f"{where}.queries[{i}]")
            for i, v in enumerate(items(test_keys, "queries", where))
        ),
        tcp_connect=tuple(
            parse_tcp_connect(v, f"{where}.tcp_connect[{i}]")
            for i, v in enumerate(items(test_keys, "tcp_connect", where))
        ),
        tls_handshakes=tuple(
            parse_tls_handshake(v, f"{where}.tls_handshakes[{i}]")
            for i, v in enumerate(items(test_keys, "tls_handshakes", where))
        ),
        requests=tuple(
            parse_transaction(v, f"{where}.requests[{i}]")
            for i, v in enumerate(items(test_keys, "requests", where))
        ),
    )
