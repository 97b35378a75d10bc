"""The collector: an aiohttp server that receives probes' upload batches and stores them.

    POST /v1/batches   Authorization: Bearer <token>, Content-Encoding: gzip, a batch document
                       (probe.collector.batch) -> 200 {"added": {...}} or a 4xx {"error": reason}
    GET  /v1/health    -> 200 {"status": "ok"} (for a reverse proxy's health check)

Stateless: everything lives in the database (tokens, probe ownership, the data), so several
instances behind a reverse proxy can share one PostgreSQL database; each batch is one
transaction there. Only per-token rate limits are per instance (N instances allow N times the
rate).

Defences, in the order a request meets them:
- a connection that has not sent a complete request head within HEAD_TIMEOUT_S is closed
  (aiohttp's keep-alive timer runs from the connection's start, and closes it while the server
  still waits for a request);
- the token is checked before the body is read, so unauthenticated clients never make the server
  buffer anything; then the token's rate (token bucket) and the declared Content-Length;
- the body is read with a size cap and a deadline (a slow sender is cut off, 408), decompressed
  with an output bound (a compression bomb is refused, 413), parsed and checked record by record;
- a bounded number of batches are decoded and written at once (at most two per token, so one
  token's slow uploads cannot hold them all), so memory stays bounded however many probes
  upload together.
Privacy: no access log; the client address appears in no log line, error message or row
(aiohttp's own "Error handling request from <address>" is rewritten by a log filter).
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from probe.collector.batch import (
    BatchError,
    BatchLimits,
    BatchTooLargeError,
    decode_batch,
    decompress,
)
from probe.garbage import fewer_collections
from probe.model import utcnow
from probe.store import Store, StoreError
from probe.store.uploads import (
    ForeignProbeError,
    IdConflictError,
    Ingested,
    authenticate,
    ingest_batch,
)

log = logging.getLogger("probe.collector")

BATCHES_PATH = "/v1/batches"
_DATABASE_DOWN = "the collector's database is unavailable; retry later"
HEALTH_PATH = "/v1/health"
# The first-generation threshold of the garbage collector while serving (probe.garbage): a batch
# parses into some ten thousand short-lived objects and no cycles, and the default 700 collected
# every batch's objects many times while they were still alive.
SERVE_GC_THRESHOLD = 10_000


@dataclass(frozen=True, slots=True)
class CollectorLimits:
    """The collector's bounds. Defaults fit a 2-core host with a few hundred probes."""

    max_body_bytes: int = 4 * 1024 * 1024  # compressed, as sent
    batch: BatchLimits = field(default_factory=BatchLimits)
    head_timeout_s: float = 10.0  # connection open -> complete request head (and idle keep-alive)
    body_timeout_s: float = 30.0  # the whole body, however it trickles in
    # Per token: a bucket of `burst` requests refilled at `rate_per_s`.
    rate_per_s: float = 5.0
    burst: int = 20
    # Batches decoded and written at once (each holds a decoded batch in memory), and of those
    # at most `per_token_batches` for one token, so that one token's slow uploads cannot hold
    # every slot (the uploader sends one batch at a time).
    concurrent_batches: int = 4
    per_token_batches: int = 2


class _Refused(Exception):
    def __init__(self, status: int, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after


class _TokenBuckets:
    """Per-token request budgets (in memory: a limit per collector instance)."""

    def __init__(self, rate: float, burst: int) -> None:
        self._rate, self._burst = rate, float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, token_id: str) -> float | None:
        """None when the request may go ahead, else the seconds until it may."""
        now = time.monotonic()
        level, stamp = self._buckets.get(token_id, (self._burst, now))
        level = min(self._burst, level + (now - stamp) * self._rate)
        if level < 1.0:
            self._buckets[token_id] = (level, now)
            return (1.0 - level) / self._rate
        self._buckets[token_id] = (level - 1.0, now)
        return None


class _NoClientAddress(logging.Filter):
    """aiohttp logs "Error handling request from %s" with the client's address: drop the
    address (the message and the exception stay)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "from %s" in record.msg:
            record.msg = record.msg.replace(" from %s", "")
            record.args = ()
        return True


def _json_response(status: int, body: dict[str, Any], **headers: str) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(body),
        content_type="application/json",
        headers=headers,
    )


class Collector:
    """The request handlers over one Store (one connection pool to the database)."""

    def __init__(self, store: Store, limits: CollectorLimits | None = None) -> None:
        self.store = store
        self.limits = limits or CollectorLimits()
        self._buckets = _TokenBuckets(self.limits.rate_per_s, self.limits.burst)
        self._writers = asyncio.Semaphore(self.limits.concurrent_batches)
        self._in_flight: dict[str, int] = {}

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.limits.max_body_bytes)
        app.router.add_post(BATCHES_PATH, self._batches)
        app.router.add_get(HEALTH_PATH, self._health)
        return app

    async def _health(self, request: web.Request) -> web.Response:
        return _json_response(200, {"status": "ok"})

    async def _batches(self, request: web.Request) -> web.StreamResponse:
        try:
            added = await self._receive(request)
        except _Refused as refused:
            headers = {}
            if refused.retry_after is not None:
                headers["Retry-After"] = str(max(1, round(refused.retry_after)))
            if refused.status in (408, 413):
                headers["Connection"] = "close"  # the rest of the body is not worth reading
            return _json_response(refused.status, {"error": refused.reason}, **headers)
        return _json_response(
            200,
            {
                "added": {
                    "runs": added.runs,
                    "measurements": added.measurements,
                    "verdicts": added.verdicts,
                }
            },
        )

    async def _receive(self, request: web.Request) -> Ingested:
        token_id = await self._authenticate(request)
        wait = self._buckets.take(token_id)
        if wait is not None:
            raise _Refused(429, "too many requests for this token; retry later", wait)
        limit = self.limits.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise _Refused(413, f"the body is larger than {limit} bytes")
        if self._in_flight.get(token_id, 0) >= self.limits.per_token_batches:
            raise _Refused(429, "this token already has batches in flight; retry later", 1)
        self._in_flight[token_id] = self._in_flight.get(token_id, 0) + 1
        try:
            async with self._writers:
                body = await self._read_body(request, limit)
                return await asyncio.to_thread(self._decode_and_store, token_id, body, request)
        finally:
            left = self._in_flight[token_id] - 1
            if left:
                self._in_flight[token_id] = left
            else:
                del self._in_flight[token_id]

    async def _authenticate(self, request: web.Request) -> str:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip() or len(token) > 200:
            raise _Refused(401, "send the probe's upload token as 'Authorization: Bearer <token>'")
        token_id = await self._database(authenticate, self.store, token.strip())
        if token_id is None:
            raise _Refused(401, "unknown or revoked upload token")
        return str(token_id)

    async def _read_body(self, request: web.Request, limit: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.limits.body_timeout_s):
                while True:
                    chunk = await request.content.readany()
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > limit:
                        raise _Refused(413, f"the body is larger than {limit} bytes")
                    chunks.append(chunk)
        except TimeoutError:
            raise _Refused(408, "the body did not arrive in time") from None
        return b"".join(chunks)

    def _decode_and_store(self, token_id: str, body: bytes, request: web.Request) -> Ingested:
        encoding = request.headers.get("Content-Encoding", "identity")
        try:
            document = decompress(body, encoding, self.limits.batch.max_decompressed_bytes)
            del body
            batch = decode_batch(document, utcnow(), self.limits.batch)
        except BatchTooLargeError as exc:
            raise _Refused(413, str(exc)) from None
        except BatchError as exc:
            raise _Refused(400, str(exc)) from None
        try:
            return ingest_batch(self.store, token_id, batch)
        except ForeignProbeError as exc:
            raise _Refused(403, str(exc)) from None
        except IdConflictError as exc:
            raise _Refused(409, str(exc)) from None
        except StoreError as exc:
            log.warning("batch not stored: %s", exc)
            raise _Refused(503, _DATABASE_DOWN, 30) from None

    async def _database(self, call: Callable[..., Any], *args: Any) -> Any:
        try:
            return await asyncio.to_thread(call, *args)
        except StoreError as exc:
            log.warning("database: %s", exc)
            raise _Refused(503, _DATABASE_DOWN, 30) from None


def _server_logger() -> logging.Logger:
    logger = logging.getLogger("probe.collector.http")
    if not any(isinstance(f, _NoClientAddress) for f in logger.filters):
        logger.addFilter(_NoClientAddress())
    return logger


async def start(
    collector: Collector,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None = None,
    *,
    reuse_port: bool = False,
) -> tuple[web.AppRunner, int]:
    """Start serving; return the runner (await runner.cleanup() to stop) and the bound port."""
    runner = web.AppRunner(
        collector.app(),
        access_log=None,  # no access log: it would hold client addresses
        logger=_server_logger(),
        keepalive_timeout=collector.limits.head_timeout_s,
        auto_decompress=False,  # the handler decompresses, with a bound
        handle_signals=False,
    )
    await runner.setup()
    site = web.TCPSite(
        runner, host, port, ssl_context=ssl_context, backlog=512, reuse_port=reuse_port or None
    )
    await site.start()
    bound = port
    for address in runner.addresses:  # the port the OS chose for port 0
        bound = int(address[1])
        break
    return runner, bound


def serve(
    database: str,
    host: str,
    port: int,
    *,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    limits: CollectorLimits | None = None,
    reuse_port: bool = False,
    ready: Callable[[int], Awaitable[None] | None] | None = None,
) -> None:
    """Run the collector until interrupted (the `probe collector serve` command).

    `reuse_port` (SO_REUSEPORT) lets several collector processes listen on one port, the kernel
    spreading connections over them: one process per core, as the collector is stateless."""
    context = None
    if tls_cert or tls_key:
        if not (tls_cert and tls_key):
            raise StoreError("give both --tls-cert and --tls-key, or neither")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(tls_cert, tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise StoreError(f"cannot load the TLS certificate or key: {exc}") from exc

    async def main() -> None:
        with Store.open(database) as store:
            runner, bound = await start(
                Collector(store, limits), host, port, context, reuse_port=reuse_port
            )
            try:
                if ready is not None:
                    result = ready(bound)
                    if result is not None:
                        await result
                await asyncio.Event().wait()
            finally:
                await runner.cleanup()

    with fewer_collections(SERVE_GC_THRESHOLD):
        asyncio.run(main())
