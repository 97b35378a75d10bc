"""The TLS check: a TCP connect, then a TLS handshake with a chosen SNI, recording what the server
presented (version, cipher, ALPN, certificate chain) and whether it verified.

A handshake that verifies is a success. A certificate that does not verify is an ssl_* failure,
and the check then makes one more, non-verifying, handshake to record the chain the server
presented: an unexpected chain is the evidence of TLS interception. A handshake cut by a reset,
a stall or a close is connection_reset / generic_timeout_error / eof_error: the shape of SNI
filtering (OONI, Iran: https://ooni.org/post/2020-iran-sni-blocking/; OONI's SNI test: https://github.com/ooni/spec/blob/master/nettests/ts-024-sni-blocking.md).

Certificates are parsed with the ssl module alone (`_ssl.Certificate.get_info`, CPython >= 3.10),
so the probe needs no X.509 library.

One handshake per HTTPS target: a handshake given a HeldConnection keeps its connection open when
it verifies, and the HTTP check (probe/checks/http.py) sends the target's request on it instead of
dialling and handshaking again. The HTTP check speaks HTTP/1.1 only (aiohttp has no h2), so that
one handshake offers what the request will speak, ALPN ("http/1.1",), where the others offer a
browser's ("h2", "http/1.1"); the record's `alpn_offered` says which. The trade-off: against a
server that would pick h2, that handshake records `alpn` http/1.1 and its ClientHello differs
from a browser's in its ALPN list (as the HTTP check's own handshake always did); the other
addresses' handshakes, the harmless-SNI controls of other handshakes and the rejected-certificate
retry of other handshakes keep a browser's offer. Everything else (failures, failed_operation,
the non-verifying retry, the certificate chain, the times) is measured as on any handshake.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import ssl
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from probe.checks import CheckContext, Stopwatch, format_endpoint
from probe.checks.tcp import close_quietly, require_ip_address
from probe.failures import describe
from probe.model import Certificate, Layer, Observation, Operation, TlsHandshake

# What a browser offers; a ClientHello without ALPN is one more trait a censor can key on.
BROWSER_ALPN: tuple[str, ...] = ("h2", "http/1.1")

# What an HTTP/1.1 client offers (RFC 7301 section 6 registers "http/1.1"): the ALPN list of the
# handshake whose connection carries the HTTP check's request.
HTTP1_ALPN: tuple[str, ...] = ("http/1.1",)

# asyncio's own handshake timeout raises ConnectionAbortedError (which would read as
# connection_aborted); keep it well behind our asyncio.timeout so that a stall is always ours.
_ASYNCIO_HANDSHAKE_SLACK = 5.0

# Derived contexts, built once per base context and ALPN list (building one copies the trust
# store, a few milliseconds with a system store).
_DERIVED: weakref.WeakKeyDictionary[
    ssl.SSLContext, dict[tuple[bool, tuple[str, ...]], ssl.SSLContext]
] = weakref.WeakKeyDictionary()

# Short names for the distinguished-name attributes that ssl reports by their long names.
_DN_SHORT_NAMES = {
    "commonName": "CN",
    "countryName": "C",
    "stateOrProvinceName": "ST",
    "localityName": "L",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "domainComponent": "DC",
    "serialNumber": "serialNumber",
    "emailAddress": "emailAddress",
}


def derive_context(
    base: ssl.SSLContext, alpn: Sequence[str], *, verify: bool = True
) -> ssl.SSLContext:
    """A client context like `base` (trust, verification, versions) offering `alpn`.

    `base` is shared (the HTTP check uses it too) and ALPN is a per-context setting in Python,
    so it is never mutated: offering h2 on aiohttp's context would make it speak HTTP/1.1 to a
    server that chose h2. Trust is copied from `base.get_ca_certs()`; a base whose trust is only a
    lazily read CA directory lists no certificates, and then gets the system default paths.
    With `verify=False` the copy accepts any certificate (to record an intercepting chain).
    """
    key = (verify, tuple(alpn))
    per_base = _DERIVED.setdefault(base, {})
    derived = per_base.get(key)
    if derived is not None:
        return derived
    derived = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    derived.options = base.options
    derived.minimum_version = base.minimum_version
    derived.maximum_version = base.maximum_version
    if verify and base.verify_mode != ssl.CERT_NONE:
        derived.verify_flags = base.verify_flags
        der_certs = base.get_ca_certs(binary_form=True)
        if der_certs:
            derived.load_verify_locations(cadata=b"".join(der_certs))
        else:
            derived.load_default_certs(ssl.Purpose.SERVER_AUTH)
        derived.check_hostname = base.check_hostname
        derived.verify_mode = base.verify_mode
    else:
        derived.check_hostname = False
        derived.verify_mode = ssl.CERT_NONE
    if alpn:
        derived.set_alpn_protocols(list(alpn))
    per_base[key] = derived
    return derived


def _distinguished_name(rdns: Any) -> str:
    parts = []
    for rdn in rdns or ():
        for name, value in rdn:
            parts.append(f"{_DN_SHORT_NAMES.get(name, name)}={value}")
    return ", ".join(parts)


def _cert_time(value: str | None) -> str | None:
    if not value:
        return None
    return datetime.fromtimestamp(ssl.cert_time_to_seconds(value), UTC).isoformat()


def _sans(entries: Any) -> tuple[str, ...]:
    # DNS names and IP addresses as plain strings (what analysis matches a host against);
    # rarer kinds keep their type so they cannot be mistaken for a host name.
    sans = []
    for kind, value in entries or ():
        sans.append(value if kind in ("DNS", "IP Address") else f"{kind}:{value}")
    return tuple(sans)


def describe_certificate(der: bytes, info: dict[str, Any] | None) -> Certificate:
    """The record of one certificate: its DER sha256 and, if known, its decoded fields."""
    info = info or {}
    return Certificate(
        sha256=hashlib.sha256(der).hexdigest(),
        subject=_distinguished_name(info.get("subject")),
        issuer=_distinguished_name(info.get("issuer")),
        sans=_sans(info.get("subjectAltName")),
        not_before=_cert_time(info.get("notBefore")),
        not_after=_cert_time(info.get("notAfter")),
    )


def presented_chain(ssl_object: ssl.SSLObject) -> tuple[Certificate, ...]:
    """The certificates the server sent, leaf first, whether or not they verified."""
    raw = getattr(ssl_object, "_sslobj", None)
    get_chain = getattr(raw, "get_unverified_chain", None)
    if get_chain is not None:
        return tuple(
            describe_certificate(ssl.PEM_cert_to_DER_cert(cert.public_bytes()), cert.get_info())
            for cert in get_chain() or ()
        )
    # Without the private chain API (other interpreters), the leaf alone, decoded only when
    # it verified (getpeercert() returns {} otherwise).
    leaf = ssl_object.getpeercert(binary_form=True)
    if not leaf:
        return ()
    return (describe_certificate(leaf, dict(ssl_object.getpeercert() or {})),)


@dataclass(slots=True)
class _Attempt:
    """The outcome of one connect + handshake."""

    failure: str | None = None
    failure_detail: str | None = None
    failed_operation: Operation | None = None
    certificate_rejected: bool = False
    session: dict[str, Any] = field(default_factory=dict)
    connect_ms: float | None = None
    handshake_ms: float | None = None


# How long a held connection stays offered. Servers close a connection that sends no request
# within their own timeout (Apache's RequestReadTimeout allows 20 s for the first header line,
# https://httpd.apache.org/docs/2.4/mod/mod_reqtimeout.html; nginx's client_header_timeout 60 s,
# https://nginx.org/en/docs/http/ngx_http_core_module.html#client_header_timeout); one held
# longer than this is not ridden, so a close racing the request cannot be recorded as a failure.
HELD_MAX_IDLE_SECONDS = 5.0


class HeldConnection:
    """A verified TLS connection that the TLS check left open for the HTTP check's request.

    The TLS check fills it (handshake(..., hold=)) when its handshake verifies; the HTTP check
    takes its transport at most once, and only for exactly the address, port, SNI and SSL
    context it was made with, while nothing has arrived on it (an HTTP/1.1 server speaks only
    when asked; an early close or byte means the server is not waiting for a request). Whoever
    made it calls release() when the fetch is over: a connection not taken is closed there, so
    none is left open; a taken one is the HTTP check's to close.
    """

    __slots__ = ("_kept_at", "_key", "_reader", "_writer", "max_idle", "taken")

    def __init__(self, max_idle: float = HELD_MAX_IDLE_SECONDS) -> None:
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._key: tuple[str, int, str] | None = None
        self._kept_at = 0.0
        self.max_idle = max_idle
        self.taken = False

    def _keep(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        address: str,
        port: int,
        sni: str,
    ) -> None:
        self._reader, self._writer = reader, writer
        self._key = (_normal_address(address), port, sni)
        self._kept_at = time.monotonic()

    @property
    def held(self) -> bool:
        """A verified connection is here, not yet taken."""
        return self._writer is not None and not self.taken

    def take(
        self, address: str, port: int, sni: str, context: ssl.SSLContext
    ) -> asyncio.Transport | None:
        """The connection's TLS transport, once, when it was made to `address`:`port` with SNI
        `sni` under `context` and is still open and silent; else None (dial a new one)."""
        reader, writer = self._reader, self._writer
        if reader is None or writer is None or self.taken:
            return None
        if self._key != (_normal_address(address), port, sni):
            return None
        # asyncio's SSL transport or uvloop's (which is no asyncio.Transport subclass, and
        # has the same methods).
        transport = cast(asyncio.Transport, writer.transport)
        if (
            transport.is_closing()
            # Held too long: the server may be closing it as the request goes out.
            or time.monotonic() - self._kept_at > self.max_idle
            or transport.get_extra_info("sslcontext") is not context
            or reader.exception() is not None
            or reader.at_eof()
            # Bytes already read into the stream would be lost to the next protocol.
            or len(getattr(reader, "_buffer", b"")) > 0
        ):
            return None
        self.taken = True
        return transport

    async def release(self) -> None:
        """Close the connection unless the HTTP check took it; idempotent."""
        writer, self._writer, self._reader = self._writer, None, None
        if writer is None:
            return
        if not self.taken:
            await close_quietly(writer)
        elif not writer.transport.is_closing():
            # The HTTP check closes what it takes (one request per connection); never leave one.
            writer.transport.abort()


def _normal_address(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address


async def _attempt(
    address: str,
    port: int,
    sni: str,
    context: ssl.SSLContext,
    ctx: CheckContext,
    hold: HeldConnection | None = None,
) -> _Attempt:
    attempt = _Attempt()
    t0 = time.monotonic()
    try:
        async with asyncio.timeout(ctx.timeouts.connect):
            reader, writer = await asyncio.open_connection(address, port)
    except Exception as exc:
        attempt.failure, attempt.failure_detail = describe(exc)
        attempt.failed_operation = Operation.CONNECT
        return attempt
    t1 = time.monotonic()
    attempt.connect_ms = round((t1 - t0) * 1000.0, 3)
    try:
        async with asyncio.timeout(ctx.timeouts.tls):
            await writer.start_tls(
                context,
                server_hostname=sni,
                ssl_handshake_timeout=ctx.timeouts.tls + _ASYNCIO_HANDSHAKE_SLACK,
            )
    except Exception as exc:
        # loop.start_tls has closed the TCP transport already.
        attempt.failure, attempt.failure_detail = describe(exc)
        attempt.failed_operation = Operation.TLS_HANDSHAKE
        attempt.certificate_rejected = isinstance(exc, ssl.SSLCertVerificationError)
        writer.transport.abort()
        return attempt
    attempt.handshake_ms = round((time.monotonic() - t1) * 1000.0, 3)
    ssl_object = writer.get_extra_info("ssl_object")
    if isinstance(ssl_object, ssl.SSLObject):
        cipher = ssl_object.cipher()
        attempt.session = {
            "version": ssl_object.version(),
            "cipher": cipher[0] if cipher else None,
            "alpn": ssl_object.selected_alpn_protocol(),
            "certificates": presented_chain(ssl_object),
        }
    if hold is not None:
        hold._keep(reader, writer, address, port, sni)
    else:
        await close_quietly(writer)
    return attempt


async def handshake(
    address: str,
    port: int,
    sni: str,
    ctx: CheckContext,
    *,
    alpn: Sequence[str] = BROWSER_ALPN,
    hold: HeldConnection | None = None,
) -> Observation[TlsHandshake]:
    """TCP-connect to `address`:`port`, then a TLS handshake with SNI `sni`, verifying with
    ctx.ssl_context and offering `alpn` (a browser's list unless told).

    hold: when the handshake verifies, its connection is left open in `hold` for the HTTP check
    (the caller releases it) instead of being closed; a failed handshake leaves nothing there.
    """
    require_ip_address(address)
    alpn = tuple(alpn)
    watch = Stopwatch()
    first = await _attempt(address, port, sni, derive_context(ctx.ssl_context, alpn), ctx, hold)
    session = first.session
    second_failure: str | None = None
    if first.certificate_rejected:
        # The chain is the evidence (an interception CA, a blockpage's certificate): fetch it
        # with one handshake that accepts anything. Its own failure is recorded, not the result.
        second = await _attempt(
            address,
            port,
            sni,
            derive_context(ctx.ssl_context, alpn, verify=False),
            ctx,
        )
        session = {**session, **second.session}
        second_failure = second.failure
    details = TlsHandshake(
        address=address,
        port=port,
        sni=sni,
        version=session.get("version"),
        cipher=session.get("cipher"),
        alpn=session.get("alpn"),
        alpn_offered=alpn,
        certificates=session.get("certificates", ()),
        verified=first.failure is None,
        verify_failure=first.failure if first.certificate_rejected else None,
        connect_ms=first.connect_ms,
        handshake_ms=first.handshake_ms,
        # Set when a certificate was rejected: how the second, non-verifying handshake ended.
        unverified_handshake_failure=second_failure,
    )
    return Observation(
        layer=Layer.TLS,
        endpoint=format_endpoint(address, port),
        started_at=watch.started_at,
        duration_ms=watch.elapsed_ms(),
        failure=first.failure,
        failed_operation=first.failed_operation,
        failure_detail=first.failure_detail,
        details=details,
    )
