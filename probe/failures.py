"""Map exceptions raised by sockets, ssl, dnspython and aiohttp to OONI failure strings.

One ordered table, most specific first (the shape of httpx's exception map). The exception
hierarchy this walks, from the leaves up:

    aiohttp.ServerDisconnectedError ................... eof_error
    aiohttp.ClientConnectorCertificateError ........... (its ssl certificate error, below)
    aiohttp.ClientConnectorError / ClientOSError ...... (its OSError, below)
    aiohttp.ClientPayloadError / ClientResponseError .. unknown_failure: <detail>
    ssl.SSLCertVerificationError ...................... ssl_invalid_hostname | ssl_unknown_authority
                                                        | ssl_invalid_certificate (by verify_code)
    ssl.SSLZeroReturnError / SSLEOFError .............. eof_error
    ssl.SSLError ...................................... ssl_failed_handshake
    ConnectionRefusedError / ResetError / AbortedError  connection_refused / _reset / _aborted
                                                        (a bare ConnectionResetError() is asyncio's
                                                        EOF during a TLS handshake: eof_error)
    asyncio.IncompleteReadError, EOFError ............. eof_error
    TimeoutError (asyncio's too), dns.exception.Timeout generic_timeout_error
    OSError by errno .................................. host_unreachable, network_unreachable, ...
    dns.resolver.NXDOMAIN / NoAnswer / NoNameservers .. dns_nxdomain_error / dns_no_answer / ...
    socket.gaierror by EAI code ....................... dns_nxdomain_error / dns_temporary_failure
    anything else ..................................... unknown_failure (+ a scrubbed detail)

The rows of aiohttp's and dnspython's resolver exceptions are read from those libraries only when
they are loaded (sys.modules): an instance of a class can exist only once its module is, and
importing aiohttp here would put it on every command's start-up (probe/checks/http.py loads it
when a run fetches).

`classify` gives the failure alone, one of a closed set of strings (probe.model.Failure, or
"unknown_failure"); `describe` gives it with the free text of an unknown failure, which the
checks keep in Observation.failure_detail: the join key never holds a dependency's message.
"""

from __future__ import annotations

import asyncio
import errno
import re
import socket
import ssl
import sys
from collections.abc import Callable

import dns.exception

from probe.model import UNKNOWN_FAILURE, UNKNOWN_FAILURE_PREFIX, Failure

# OpenSSL X509_V_ERR_* codes (include/openssl/x509_vfy.h) that mean "who signed this is unknown".
_UNKNOWN_AUTHORITY_CODES = frozenset({2, 18, 19, 20, 21, 27})
# X509_V_ERR_HOSTNAME_MISMATCH (62) and X509_V_ERR_IP_ADDRESS_MISMATCH (64, a certificate that does
# not name an IP-address target): both are the name check failing (OpenSSL x509_vfy.h).
_HOSTNAME_MISMATCH_CODES = frozenset({62, 64})

_ERRNO_FAILURES: dict[int, Failure] = {
    errno.ECONNREFUSED: Failure.CONNECTION_REFUSED,
    errno.ECONNRESET: Failure.CONNECTION_RESET,
    errno.ECONNABORTED: Failure.CONNECTION_ABORTED,
    errno.EPIPE: Failure.CONNECTION_RESET,
    errno.ETIMEDOUT: Failure.GENERIC_TIMEOUT_ERROR,
    errno.EHOSTUNREACH: Failure.HOST_UNREACHABLE,
    errno.EHOSTDOWN: Failure.HOST_UNREACHABLE,
    errno.ENETUNREACH: Failure.NETWORK_UNREACHABLE,
    errno.EADDRNOTAVAIL: Failure.NETWORK_UNREACHABLE,
    errno.ENETDOWN: Failure.NETWORK_DOWN,
}

_GAI_FAILURES: dict[int, Failure] = {
    socket.EAI_NONAME: Failure.DNS_NXDOMAIN_ERROR,
    socket.EAI_AGAIN: Failure.DNS_TEMPORARY_FAILURE,
    socket.EAI_FAIL: Failure.DNS_SERVER_MISBEHAVING,
}
if hasattr(socket, "EAI_NODATA"):
    _GAI_FAILURES[socket.EAI_NODATA] = Failure.DNS_NO_ANSWER

_IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9a-fA-F]{0,4}:){2,7}[0-9a-fA-F]{0,4}(?![\w:])")


def scrub(text: str) -> str:
    """Remove IP addresses from free text, so an error message cannot leak the probe's address."""
    return _IPV6.sub("[scrubbed]", _IPV4.sub("[scrubbed]", text))


def unknown(detail: str) -> str:
    """An `unknown_failure: <detail>` string, scrubbed and kept short (split by `split`)."""
    detail = scrub(" ".join(detail.split()))[:200] or "no detail"
    return f"{UNKNOWN_FAILURE_PREFIX}{detail}"


def split(failure: str) -> tuple[str, str | None]:
    """(failure, detail): "unknown_failure: <text>" becomes ("unknown_failure", "<text>")."""
    if failure.startswith(UNKNOWN_FAILURE_PREFIX):
        return UNKNOWN_FAILURE, failure[len(UNKNOWN_FAILURE_PREFIX) :]
    return failure, None


def _certificate(exc: BaseException) -> str:
    assert isinstance(exc, ssl.SSLCertVerificationError)
    code = getattr(exc, "verify_code", None)
    if code in _HOSTNAME_MISMATCH_CODES:
        return Failure.SSL_INVALID_HOSTNAME
    if code in _UNKNOWN_AUTHORITY_CODES:
        return Failure.SSL_UNKNOWN_AUTHORITY
    return Failure.SSL_INVALID_CERTIFICATE


def _ssl_error(exc: BaseException) -> str:
    assert isinstance(exc, ssl.SSLError)
    # OpenSSL reports a peer's RST during the handshake as an SSLError wrapping ECONNRESET on
    # some versions; keep it a reset, which is what a censor's injected RST is.
    if exc.errno in _ERRNO_FAILURES:
        return _ERRNO_FAILURES[exc.errno]
    reason = (getattr(exc, "reason", None) or "").upper()
    if "UNEXPECTED_EOF" in reason:
        return Failure.EOF_ERROR
    return Failure.SSL_FAILED_HANDSHAKE


# asyncio's create_connection, when every address fails, raises a bare OSError whose message
# lists the errors ("Multiple exceptions: [Errno 111] ..., [Errno 101] ..."); the first is the
# attempt on the first (preferred) address.
_FIRST_ERRNO = re.compile(r"\[Errno (\d+)\]")


def _os_error(exc: BaseException) -> str:
    assert isinstance(exc, OSError)
    if exc.errno in _ERRNO_FAILURES:
        return _ERRNO_FAILURES[exc.errno]
    if exc.errno is None and (first := _FIRST_ERRNO.search(str(exc))):
        code = int(first.group(1))
        if code in _ERRNO_FAILURES:
            return _ERRNO_FAILURES[code]
    return unknown(f"{type(exc).__name__}: {exc}")


def _gai_error(exc: BaseException) -> str:
    assert isinstance(exc, socket.gaierror)
    failure = _GAI_FAILURES.get(exc.errno) if exc.errno is not None else None
    return failure if failure is not None else unknown(f"getaddrinfo: {exc}")


def _wrapped(exc: BaseException) -> str:
    """aiohttp wraps the OSError/ssl error it met; classify that one."""
    inner = getattr(exc, "os_error", None) or getattr(exc, "certificate_error", None)
    if inner is None or inner is exc:
        inner = exc.__cause__
    if isinstance(inner, BaseException) and inner is not exc:
        return _mapped(inner)
    return unknown(f"{type(exc).__name__}: {exc}")


# aiohttp's parser errors quote the offending bytes (": b'...'"). Those differ with every server,
# and would split one failure into as many strings as there are servers: keep the reason only.
_QUOTED_BYTES = re.compile(r"""(?:\s*:)?\s*\bb['"].*""", re.DOTALL)


def _http_garbage(exc: BaseException) -> str:
    message = _QUOTED_BYTES.sub("", str(getattr(exc, "message", exc)))
    return unknown(f"{type(exc).__name__}: {message}")


def _payload(exc: BaseException) -> str:
    """A body cut short: a reset or EOF underneath stays that; otherwise the body was garbage."""
    cause = exc.__cause__
    if isinstance(cause, OSError | EOFError | TimeoutError):
        return _mapped(cause)
    return _http_garbage(exc)


def _reset(exc: BaseException) -> str:
    """A reset, except asyncio's stand-in for an EOF: its SSL layer reports a peer that closes
    (FIN) during the TLS handshake as a bare `ConnectionResetError()`, with no errno and no
    message (CPython Lib/asyncio/sslproto.py, `eof_received`), while a real RST carries ECONNRESET.
    """
    assert isinstance(exc, ConnectionResetError)
    if exc.errno is None and not exc.args:
        return Failure.EOF_ERROR
    return Failure.CONNECTION_RESET


def _fixed(failure: Failure) -> Callable[[BaseException], str]:
    return lambda _exc: failure


Mapper = Callable[[BaseException], str]
Row = tuple[type[BaseException], Mapper]

# Order matters: the first class that matches wins, so subclasses come before their bases. Each
# library's rows are (module, class name, mapper): aiohttp's come first (its errors subclass
# OSError, TimeoutError and the ssl errors), the resolver's between dnspython's base rows.
_AIOHTTP_ROWS: tuple[tuple[str, str, Mapper], ...] = (
    ("aiohttp.client_exceptions", "ServerDisconnectedError", _fixed(Failure.EOF_ERROR)),
    ("aiohttp.client_exceptions", "ServerTimeoutError", _fixed(Failure.GENERIC_TIMEOUT_ERROR)),
    ("aiohttp.client_exceptions", "ClientConnectorCertificateError", _wrapped),
    ("aiohttp.client_exceptions", "ClientConnectorError", _wrapped),
    ("aiohttp.client_exceptions", "ClientOSError", _wrapped),
    ("aiohttp.client_exceptions", "ClientPayloadError", _payload),
    ("aiohttp.client_exceptions", "ClientResponseError", _http_garbage),
)
_BASE_ROWS: tuple[Row, ...] = (
    (ssl.SSLCertVerificationError, _certificate),
    (ssl.SSLZeroReturnError, _fixed(Failure.EOF_ERROR)),
    (ssl.SSLEOFError, _fixed(Failure.EOF_ERROR)),
    (ssl.SSLError, _ssl_error),
    (ConnectionRefusedError, _fixed(Failure.CONNECTION_REFUSED)),
    (ConnectionResetError, _reset),
    (ConnectionAbortedError, _fixed(Failure.CONNECTION_ABORTED)),
    (BrokenPipeError, _fixed(Failure.CONNECTION_RESET)),
    (asyncio.IncompleteReadError, _fixed(Failure.EOF_ERROR)),
    (EOFError, _fixed(Failure.EOF_ERROR)),
    (TimeoutError, _fixed(Failure.GENERIC_TIMEOUT_ERROR)),
    (dns.exception.Timeout, _fixed(Failure.GENERIC_TIMEOUT_ERROR)),
)
_RESOLVER_ROWS: tuple[tuple[str, str, Mapper], ...] = (
    ("dns.resolver", "NXDOMAIN", _fixed(Failure.DNS_NXDOMAIN_ERROR)),
    ("dns.resolver", "NoAnswer", _fixed(Failure.DNS_NO_ANSWER)),
    ("dns.resolver", "NoNameservers", _fixed(Failure.DNS_SERVER_MISBEHAVING)),
)
_LAST_ROWS: tuple[Row, ...] = (
    (dns.exception.FormError, _fixed(Failure.DNS_SERVER_MISBEHAVING)),
    (socket.gaierror, _gai_error),
    (OSError, _os_error),
)
_LIBRARY_ROWS = len(_AIOHTTP_ROWS) + len(_RESOLVER_ROWS)
# The whole table, once every library row's class has been found.
_complete: tuple[Row, ...] | None = None


def _loaded(rows: tuple[tuple[str, str, Mapper], ...]) -> list[Row]:
    """The rows whose class is defined by now (a module another thread is still loading has
    defined its classes in order, bases first, so every class an instance can have is there)."""
    found: list[Row] = []
    for module_name, class_name, mapper in rows:
        cls = getattr(sys.modules.get(module_name), class_name, None)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            found.append((cls, mapper))
    return found


def exception_map() -> tuple[Row, ...]:
    """The ordered table, most specific first, with the rows of every library loaded so far."""
    global _complete
    if _complete is not None:
        return _complete
    aiohttp_rows, resolver_rows = _loaded(_AIOHTTP_ROWS), _loaded(_RESOLVER_ROWS)
    table = (*aiohttp_rows, *_BASE_ROWS, *resolver_rows, *_LAST_ROWS)
    if len(aiohttp_rows) + len(resolver_rows) == _LIBRARY_ROWS:
        _complete = table
    return table


def _mapped(exc: BaseException) -> str:
    for cls, mapper in exception_map():
        if isinstance(exc, cls):
            return mapper(exc)
    return unknown(f"{type(exc).__name__}: {exc}")


def describe(exc: BaseException) -> tuple[str, str | None]:
    """The OONI failure string for a network exception, and the free text of an unknown one
    (None for a known failure). Never raises."""
    return split(_mapped(exc))


def classify(exc: BaseException) -> str:
    """The OONI failure string for a network exception (never raises): a Failure value or
    "unknown_failure"."""
    return describe(exc)[0]
