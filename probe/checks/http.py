"""The HTTP check: one HTTP(S) request, redirects followed by hand, the body read up to a cap.

Redirects into the volunteer's LAN: an on-path censor that injects `302 Location:
http://192.168.1.1/` must not make the probe fetch the home router's page into shared data (or
send a request to a local service). A redirect's host is resolved through the RedirectPolicy (the
runner's: its configured resolvers, each lookup recorded as a measurement; never the system
resolver), and an address that is not public Internet (probe.addresses, with its IPv4-mapped,
6to4, Teredo and NAT64 forms) is never connected to: the Location is recorded and the fetch stops
with a failure saying why. A known blockpage address is recorded and not followed, without a
failure (the blockpage rules read the Location). Redirects back to the URL's own host keep its pin.

It records what a blockpage comparison needs (status, headers, body length, sha256, <title>, a
body prefix), the redirect chain, and timings for throttling analysis. The URL's host can be
pinned to an address the runner resolved (SNI and Host stay the URL's host), and the Host header
can be overridden for a Host A/B test.

Sessions: `open_session(ctx)` makes a session that many concurrent fetches may share, pinned or
not. Its connector resolves through `_PinningResolver`, which reads the pin of the *calling task*
from a ContextVar, never caches (use_dns_cache=False) and never pools a connection
(force_close=True), so one fetch's pin can neither leak into another's lookup nor hand it a
connection opened to another address. A new connection per fetch is also what a measurement
needs: the handshake is where censors act. Without a session, `fetch` opens and closes its own.

One handshake per HTTPS target: `fetch(..., held=)` offers the first request a connection the
TLS check has just verified (probe.checks.tls.HeldConnection). The connector takes it instead of
dialling when it was made to the very address, port and SNI the request would dial, with the
very SSL context the request would use (the TLS check's handshake offered HTTP1_ALPN, which
makes its context this check's own), and is still open and silent; any other request, a
redirect's included, dials as before. The record says which happened (reused_tls_connection);
a reused hop has no connect_ms, and its ttfb_ms holds no connection set-up. Taking rides on
aiohttp's TCPConnector._wrap_create_connection (aiohttp 3.9 to 3.14 at least): if aiohttp
changes it, the override is not called and every request dials as before (two handshakes,
tests/test_checks_http.py says so loudly).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import hashlib
import html
import ipaddress
import re
import socket
import ssl
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from types import MappingProxyType, SimpleNamespace
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.client_proto import ResponseHandler
from yarl import URL

from probe.addresses import BLOCKPAGE_ADDRESSES, non_public_reason
from probe.checks import CheckContext, Stopwatch, TextScrubber, as_stored
from probe.checks.tls import HTTP1_ALPN, HeldConnection, derive_context
from probe.failures import describe, split, unknown
from probe.model import (
    HttpTimings,
    HttpTransaction,
    Layer,
    Observation,
    Operation,
    Redirect,
)

# aiohttp speaks HTTP/1.1 only: offer exactly that in ALPN (as aiohttp does on its own contexts),
# never the TLS check's h2.
_HTTP_ALPN = HTTP1_ALPN

# The statuses a browser follows (RFC 9110 section 15.4).
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

# <title> is looked for in the first 64 KiB only: enough for any real page's head, and a bound on
# the work a hostile body can cause.
_TITLE_SCAN_BYTES = 64 * 1024
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title\s*>", re.IGNORECASE | re.DOTALL)

_READ_CHUNK = 64 * 1024
# A transfer's sample window closes this long (s) before the whole fetch's timeout would fire.
_WINDOW_MARGIN = 0.05
# A window shorter than this (s) with nothing in it says nothing: no rate (0 kbit/s) is given.
_MIN_WINDOW = 0.25

_BROWSER_HEADERS = {
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "Accept-Language": "en-US,en;q=0.9",
}

# host -> pinned address, for the fetch running in the current task only.
_PINS: ContextVar[Mapping[str, str]] = ContextVar("probe_http_pins", default=MappingProxyType({}))

# Sessions made by open_session(): only their connectors honour pins.
_PINNING_SESSIONS: weakref.WeakSet[aiohttp.ClientSession] = weakref.WeakSet()


class _Offer:
    """A held connection offered to the request running in the current task, and whether the
    connection that request ended up on was it (None: the connector was not asked)."""

    __slots__ = ("held", "rode")

    def __init__(self, held: HeldConnection) -> None:
        self.held = held
        self.rode: bool | None = None


# The offer for the request running in the current task only (the first request of a fetch).
_OFFER: ContextVar[_Offer | None] = ContextVar("probe_http_offer", default=None)


class _PinningConnector(aiohttp.TCPConnector):
    """aiohttp's connector that, for a request offered a held TLS connection, takes it instead
    of dialling when it fits (HeldConnection.take); every other connection it dials as usual."""

    async def _wrap_create_connection(
        self, *args: Any, **kwargs: Any
    ) -> tuple[asyncio.Transport, ResponseHandler]:
        offer = _OFFER.get()
        if offer is not None:
            taken = _take(offer.held, args, kwargs)
            offer.rode = taken is not None
            if taken is not None:
                return taken
        return await super()._wrap_create_connection(*args, **kwargs)


def _take(
    held: HeldConnection, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[asyncio.Transport, ResponseHandler] | None:
    """The held connection, as aiohttp's create_connection would have returned a new one (its
    protocol from the connector's factory), if it fits the connection aiohttp is about to dial."""
    context = kwargs.get("ssl")
    sni = kwargs.get("server_hostname")
    infos = kwargs.get("addr_infos")
    factory = args[0] if args else None
    if not isinstance(context, ssl.SSLContext) or not isinstance(sni, str) or not callable(factory):
        return None
    if not infos or len(infos[0]) < 5 or len(infos[0][4]) < 2:
        return None
    address, port = infos[0][4][0], infos[0][4][1]
    transport = held.take(str(address), int(port), sni, context)
    if transport is None:
        return None
    protocol = factory()
    if not isinstance(protocol, ResponseHandler):
        transport.abort()
        return None
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    if not transport.is_reading():
        transport.resume_reading()
    return transport, protocol


class _PinningResolver(AbstractResolver):
    """Resolves a pinned host to its pinned address; any other host through aiohttp's default
    resolver (a redirect to another site resolves normally)."""

    def __init__(self) -> None:
        self._fallback: AbstractResolver | None = None

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        pinned = _PINS.get().get(host.rstrip(".").lower())
        if pinned is None:
            if self._fallback is None:
                self._fallback = aiohttp.DefaultResolver()
            return await self._fallback.resolve(host, port, family)
        version = ipaddress.ip_address(pinned).version
        return [
            {
                "hostname": host,
                "host": pinned,
                "port": port,
                "family": socket.AF_INET6 if version == 6 else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        if self._fallback is not None:
            await self._fallback.close()


@dataclass(frozen=True, slots=True)
class RedirectPolicy:
    """Where a redirect may take a fetch.

    resolve:    the addresses of a host a redirect names, looked up through the configured
                resolvers (the runner records each lookup); None: such a redirect is recorded and
                not followed (no silent system-resolver lookup)
    refuse:     why an address reached by a redirect must not be connected to, or None
    blockpages: known blockpage addresses: recorded, never followed
    """

    resolve: Callable[[str], Awaitable[Sequence[str]]] | None = None
    refuse: Callable[[str], str | None] = non_public_reason
    blockpages: frozenset[str] = frozenset(BLOCKPAGE_ADDRESSES)


_NO_RESOLVER = RedirectPolicy()


class _HopTimes:
    """Monotonic instants of one request, filled by the trace callbacks below."""

    __slots__ = ("connect_end", "connect_start", "headers", "rode", "start")

    def __init__(self) -> None:
        self.start: float | None = None
        self.connect_start: float | None = None
        self.connect_end: float | None = None
        self.headers: float | None = None
        # The request rode a held TLS connection (no connection set-up of its own).
        self.rode = False


def _stamp(attribute: str) -> Callable[[Any, SimpleNamespace, Any], Awaitable[None]]:
    """An aiohttp trace callback that stores the time in the request's _HopTimes.`attribute`."""

    async def on_event(_s: Any, trace: SimpleNamespace, _p: Any) -> None:
        if isinstance(trace.trace_request_ctx, _HopTimes):
            setattr(trace.trace_request_ctx, attribute, time.monotonic())

    return on_event


def _trace_config() -> aiohttp.TraceConfig:
    config = aiohttp.TraceConfig()
    config.on_request_start.append(_stamp("start"))
    config.on_connection_create_start.append(_stamp("connect_start"))
    config.on_connection_create_end.append(_stamp("connect_end"))
    config.on_request_end.append(_stamp("headers"))
    config.freeze()
    return config


_TRACE = _trace_config()


# What open_session returns, for layers that hold one without importing aiohttp themselves.
Session = aiohttp.ClientSession


def open_session(ctx: CheckContext) -> aiohttp.ClientSession:
    """A session for `fetch`, safe to share between concurrent fetches (pinned or not).

    Call it inside a running event loop; close it (`async with` or `await session.close()`).
    """
    connector = _PinningConnector(
        resolver=_PinningResolver(),
        use_dns_cache=False,
        force_close=True,
        # The runner's semaphore bounds concurrency; a second, hidden limit here would queue
        # fetches and inflate their timings.
        limit=0,
    )
    session = aiohttp.ClientSession(
        connector=connector,
        trace_configs=[_TRACE],
        # Cookies set by one target must not follow the probe to the next.
        cookie_jar=aiohttp.DummyCookieJar(),
        headers={"User-Agent": ctx.user_agent},
        # Proxy variables would route the measurement around the network under test.
        trust_env=False,
    )
    # aiohttp 3.14 sends an idempotent request again, on a new connection, when the first ends
    # in a reset or a close before the answer (ClientSession._request, after RFC 9112 section
    # 9.3.1, meant for stale keep-alive connections; it retries fresh ones as well) and reports
    # only the second outcome. A censor's reset on the first request would be retried away and
    # the target recorded as reachable. A measurement is one request: no quiet second attempt.
    # The switch is private (no public option exists); tests/test_checks_http.py fails if it
    # stops working.
    session._retry_connection = False
    _PINNING_SESSIONS.add(session)
    return session


@contextlib.asynccontextmanager
async def _session_for(
    ctx: CheckContext, session: aiohttp.ClientSession | None, pinned: bool
) -> AsyncIterator[aiohttp.ClientSession]:
    """The caller's session if it can do this fetch, else a private one closed afterwards.

    A session not made by open_session() cannot pin (its resolver knows nothing of our pins).
    """
    if session is not None and (not pinned or session in _PINNING_SESSIONS):
        yield session
        return
    own = open_session(ctx)
    try:
        yield own
    finally:
        await own.close()


def _host_header(url: URL) -> str:
    """The Host header aiohttp sends for `url` (port only when not the scheme's default)."""
    host = url.raw_host or ""
    if ":" in host:
        host = f"[{host}]"
    return host if url.is_default_port() else f"{host}:{url.port}"


def _charset(response: aiohttp.ClientResponse) -> str:
    charset = response.charset or "utf-8"
    try:
        codecs.lookup(charset)
    except LookupError:
        return "utf-8"
    return charset


def page_title(head: bytes, charset: str) -> str | None:
    """The page's <title> in the first bytes of a body, entities decoded, whitespace collapsed
    (also what probe.ooni reads from an imported OONI response body)."""
    match = _TITLE.search(head[:_TITLE_SCAN_BYTES])
    if match is None:
        return None
    text = html.unescape(match.group(1).decode(charset, errors="replace"))
    return " ".join(text.split())


def _ms(start: float | None, end: float | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start) * 1000.0, 3)


def _redirect_target(url: URL, response: aiohttp.ClientResponse) -> URL | None:
    """Where a redirect points, if it is one a browser would follow."""
    if response.status not in _REDIRECT_STATUSES:
        return None
    location = response.headers.get("Location")
    if not location:
        return None
    try:
        target = url.join(URL(location))
    except ValueError:
        return None
    if target.scheme not in ("http", "https") or not target.raw_host:
        return None
    return target


# How far past the stored prefix's end an address the cut runs through is looked for: longer
# than any textual form of one (an exploded IPv6 address with a dotted tail is 45 characters; a
# base64 cookie spelling one, a few dozen more).
_CUT_MARGIN = 256


def _stored_prefix(head: bytes, size: int, scrubber: TextScrubber | None) -> bytes:
    """The body's first `size` bytes, or a few more when the cut would run through the probe's
    own address: cut there, its first octets would stay in the store (the sink's scrubber no
    longer sees an address in them); the whole of it is kept for the scrubber to remove."""
    if scrubber is not None and len(head) > size:
        # Latin-1 maps bytes to characters one to one, so offsets are byte offsets.
        size = scrubber.cut_at(head[: size + _CUT_MARGIN].decode("latin-1"), size)
    return head[:size]


class _Body:
    """The body as read so far: kept whole only up to what the title and prefix need, or (with a
    scrubber) up to the cap, so that its digest can be taken over what the store may hold."""

    __slots__ = (
        "digest",
        "end",
        "head",
        "keep",
        "length",
        "start",
        "truncated",
        "whole",
        "window_ended",
    )

    def __init__(self, keep: int, whole: bool) -> None:
        self.digest = hashlib.sha256()
        self.head = bytearray()
        self.keep = keep
        self.whole = bytearray() if whole else None
        self.length = 0
        self.truncated = False
        self.start: float | None = None
        self.end: float | None = None
        self.window_ended = False

    def add(self, chunk: bytes) -> None:
        self.digest.update(chunk)
        self.length += len(chunk)
        if self.whole is not None:
            self.whole += chunk
        if len(self.head) < self.keep:
            self.head += chunk[: self.keep - len(self.head)]

    def stored_digest(self, scrubber: TextScrubber | None) -> tuple[int, str]:
        """Length and sha256 of the body as the store may know it: with the probe's own address
        removed. A digest of the raw body of a page that echoes the visitor's address is an
        oracle for it (hash the page for every address of a /16: milliseconds)."""
        if scrubber is None or self.whole is None:
            return self.length, self.digest.hexdigest()
        whole = bytes(self.whole)
        data = as_stored(whole, scrubber)
        if data is whole:
            return self.length, self.digest.hexdigest()
        return len(data), hashlib.sha256(data).hexdigest()

    async def read(
        self, response: aiohttp.ClientResponse, cap: int, window_end: float | None = None
    ) -> None:
        """Read up to `cap` bytes, and until the event loop's clock reaches `window_end` when
        given, then stop: the rest is never buffered. A window that ends is a sample taken, not
        a failure: the rate is what arrived over the whole window (a transfer that stalls after
        its first chunk must not read as fast)."""
        self.start = time.monotonic()
        sample = asyncio.timeout_at(window_end)
        ended = False
        try:
            async with sample:
                while self.length < cap:
                    chunk = await response.content.read(min(_READ_CHUNK, cap - self.length))
                    if not chunk:
                        break
                    self.add(chunk)
                    self.end = time.monotonic()
        except TimeoutError:
            if not sample.expired():
                raise
            self.window_ended = True
            self.end = time.monotonic()
        # At the cap or the window's end with bytes still pending: the body was cut here.
        ended = self.window_ended
        self.truncated = (ended or self.length >= cap) and not response.content.at_eof()

    def throughput_kbps(self) -> float | None:
        if self.start is None or self.end is None or self.end <= self.start:
            return None
        elapsed = self.end - self.start
        if not self.length and not (self.window_ended and elapsed >= _MIN_WINDOW):
            # Nothing arrived, and no window was sampled long enough to say "nothing in it".
            return None
        return round(self.length * 8 / 1000.0 / elapsed, 3)


class _Exchange:
    """One fetch in progress: the hops so far, the final response and its body."""

    def __init__(
        self,
        ctx: CheckContext,
        body_keep: int,
        policy: RedirectPolicy,
        held: HeldConnection | None = None,
    ) -> None:
        self.ctx = ctx
        self.policy = policy
        # Offered to the first request only: a redirect's request dials.
        self.offer = _Offer(held) if held is not None else None
        self.hop = _HopTimes()
        self.redirects: list[Redirect] = []
        self.final_url: URL | None = None
        self.status: int | None = None
        self.headers: tuple[tuple[str, str], ...] = ()
        self.charset = "utf-8"
        self.body = _Body(body_keep, whole=ctx.scrubber is not None)
        self.reading = False

    async def run(
        self,
        client: aiohttp.ClientSession,
        url: URL,
        origin: str,
        method: str,
        host_header: str | None,
        cap: int,
        window: float | None = None,
        fetch_end: float | None = None,
    ) -> str | None:
        """Request, follow redirects, read the final body; a failure string for what is not an
        exception (too many redirects), None otherwise."""
        ssl_context = derive_context(self.ctx.ssl_context, _HTTP_ALPN)
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=self.ctx.timeouts.connect,
            connect=self.ctx.timeouts.connect + self.ctx.timeouts.tls,
        )
        while True:
            headers = dict(_BROWSER_HEADERS)
            headers["User-Agent"] = self.ctx.user_agent
            if (
                host_header is not None
                and url.raw_host
                and url.raw_host.rstrip(".").lower() == origin
            ):
                headers["Host"] = host_header
            # Each hop starts afresh: status and headers describe the final response only (the
            # earlier ones are in `redirects`).
            self.hop = _HopTimes()
            self.final_url = url
            self.status, self.headers = None, ()
            offer = self.offer if not self.redirects else None
            token = _OFFER.set(offer)
            try:
                response = await client.request(
                    method,
                    url,
                    headers=headers,
                    allow_redirects=False,
                    ssl=ssl_context,
                    timeout=timeout,
                    trace_request_ctx=self.hop,
                )
            finally:
                _OFFER.reset(token)
            self.hop.rode = offer is not None and offer.rode is True
            try:
                if self.hop.headers is None:
                    # A session without our trace config: time the headers here.
                    self.hop.headers = time.monotonic()
                self.status = response.status
                self.headers = tuple(response.headers.items())
                self.charset = _charset(response)
                target = _redirect_target(url, response)
                if target is None:
                    self.reading = True
                    window_end = None
                    if window is not None:
                        # The sample ends before the whole fetch's timeout does, so that a
                        # transfer is always a sample and never a read cut by the timeout.
                        window_end = asyncio.get_running_loop().time() + window
                        if fetch_end is not None:
                            window_end = min(window_end, fetch_end - _WINDOW_MARGIN)
                    await self.body.read(response, cap, window_end)
                    return None
                self.redirects.append(
                    Redirect(str(url), response.status, response.headers.get("Location", ""))
                )
                if len(self.redirects) > self.ctx.max_redirects:
                    return unknown(f"too many redirects (more than {self.ctx.max_redirects})")
                stop = await self._stop_before(target, origin)
                if stop is not None:
                    return stop or None
                # 303, and 301/302 after a POST, become a GET, as in every browser.
                if response.status == 303 or (response.status in (301, 302) and method == "POST"):
                    method = "GET"
                url = target
            finally:
                # Closing (not releasing) drops the connection with any unread body.
                response.close()

    async def _stop_before(self, target: URL, origin: str) -> str | None:
        """Whether the redirect to `target` stops here: a failure string (an address that is
        not public, a host that cannot be resolved), "" (a known blockpage: recorded, no
        failure), or None to follow it, with the target's host pinned to its checked address."""
        host = (target.raw_host or "").rstrip(".").lower()
        pins = _PINS.get()
        if host == origin or host in pins:
            return None  # the URL's own host (or one already checked): its pin holds
        try:
            addresses: Sequence[str] = [str(ipaddress.ip_address(host.strip("[]")))]
        except ValueError:
            if self.policy.resolve is None:
                return unknown(f"redirect to {host}: no resolver to look it up, not followed")
            addresses = await self.policy.resolve(host)
            if not addresses:
                return unknown(f"redirect to {host}: the name did not resolve, not followed")
        if any(a in self.policy.blockpages for a in addresses):
            return ""
        for address in addresses:
            reason = self.policy.refuse(address)
            if reason is not None:
                article = "an" if reason[0] in "aeiou" else "a"  # an unspecified, a private
                return unknown(f"redirect to {article} {reason} address, not followed")
        _PINS.set(MappingProxyType({**pins, host: addresses[0]}))
        return None


def _rode(offer: _Offer | None) -> bool | None:
    """What the record says of a held connection: None when none was offered."""
    if offer is None:
        return None
    return offer.rode is True


async def fetch(
    url: str,
    ctx: CheckContext,
    *,
    address: str | None = None,
    method: str = "GET",
    host_header: str | None = None,
    session: aiohttp.ClientSession | None = None,
    max_body_bytes: int | None = None,
    read_seconds: float | None = None,
    redirects: RedirectPolicy | None = None,
    held: HeldConnection | None = None,
) -> Observation[HttpTransaction]:
    """Request `url` (following redirects by hand) and read its body up to a cap.

    address:      pin the URL's host to this IP (SNI and Host stay the URL's host); hosts met in
                  redirects resolve normally.
    host_header:  send this Host header instead of the URL's (on requests to the URL's host).
    session:      a session to reuse; it must come from open_session() to honour `address`
                  (any other session serves unpinned fetches only, and gives no connect_ms).
    max_body_bytes: the body cap, default ctx.max_body_bytes; reaching it is not a failure.
    read_seconds: read the body for at most this long after the headers (a transfer's sample
                  window, still under the whole fetch's timeout); reaching it is not a failure.
    redirects:    where redirects to other hosts may go (RedirectPolicy); without one, a redirect
                  to another host name is recorded and not followed.
    held:         a connection the TLS check verified, for the first request to ride if it fits
                  (see the module docstring); the caller releases it afterwards.

    The whole fetch runs under ctx.timeouts.http. Network outcomes come back as the
    Observation's failure (failed_operation "http_round_trip" before the final response's
    headers, "read" after); this raises only for a malformed URL or address.
    """
    start_url = URL(url)
    if start_url.scheme not in ("http", "https") or not start_url.raw_host:
        raise ValueError(f"expected an http(s) URL, got {url!r}")
    origin = start_url.raw_host.rstrip(".").lower()
    if address is not None:
        ipaddress.ip_address(address)  # a host name here is a bug: raises ValueError
    cap = ctx.max_body_bytes if max_body_bytes is None else max_body_bytes
    watch = Stopwatch()
    exchange = _Exchange(
        ctx,
        max(_TITLE_SCAN_BYTES, ctx.body_prefix_bytes + _CUT_MARGIN),
        redirects or _NO_RESOLVER,
        held,
    )
    failure: str | None = None
    failure_detail: str | None = None
    operation: Operation | None = None
    token = _PINS.set(MappingProxyType({origin: address} if address else {}))
    try:
        # Always a pinning session: a redirect's host is pinned to the address checked for it.
        async with _session_for(ctx, session, True) as client:
            fetch_end = asyncio.get_running_loop().time() + ctx.timeouts.http
            async with asyncio.timeout_at(fetch_end):
                cut = await exchange.run(
                    client, start_url, origin, method, host_header, cap, read_seconds, fetch_end
                )
            if cut is not None:
                failure, failure_detail = split(cut)
                operation = Operation.HTTP_ROUND_TRIP
    except Exception as exc:
        # Our asyncio.timeout arrives here as TimeoutError; a CancelledError from outside is
        # not an Exception and propagates.
        failure, failure_detail = describe(exc)
        operation = Operation.READ if exchange.reading else Operation.HTTP_ROUND_TRIP
    finally:
        _PINS.reset(token)
    body, hop = exchange.body, exchange.hop
    head = bytes(body.head)
    body_length, body_sha256 = body.stored_digest(ctx.scrubber)
    total_ms = watch.elapsed_ms()
    details = HttpTransaction(
        url=url,
        method=method,
        address=address,
        host_header=host_header or _host_header(start_url),
        status=exchange.status,
        headers=exchange.headers,
        body_length=body_length,
        body_truncated=body.truncated,
        body_sha256=body_sha256,
        title=page_title(head, exchange.charset),
        body_prefix=_stored_prefix(head, ctx.body_prefix_bytes, ctx.scrubber).decode(
            exchange.charset, errors="replace"
        ),
        redirects=tuple(exchange.redirects),
        final_url=str(exchange.final_url or start_url),
        timings=HttpTimings(
            # A hop on a held connection set none up: aiohttp's trace timed only the taking.
            connect_ms=None if hop.rode else _ms(hop.connect_start, hop.connect_end),
            ttfb_ms=_ms(hop.start, hop.headers),
            total_ms=total_ms,
        ),
        throughput_kbps=body.throughput_kbps(),
        reused_tls_connection=_rode(exchange.offer),
    )
    return Observation(
        layer=Layer.HTTP,
        endpoint=url,
        started_at=watch.started_at,
        duration_ms=total_ms,
        failure=failure,
        failed_operation=operation,
        failure_detail=failure_detail,
        details=details,
    )
