"""Loopback listeners that misbehave the way censors and broken middleboxes do, for the check tests.

Each is an async context manager started inside the test's event loop and yielding a `Listener`
(host, port, and what the server saw). They bind 127.0.0.1 on a free port and are gone when the
block exits:

    refused_port()        nothing listens: connect is refused (RST to the SYN)
    blackhole()           SYNs are dropped (a full accept queue): connect times out
    reset_on_accept()     accepts, then RSTs (SO_LINGER 0), at once or after the first bytes
    first_request_hit()   RSTs (or FINs) the first connection after its request, serves later ones
    silent()              accepts and never answers
    closing()             accepts and closes its side at once (FIN)
    garbage()             answers anything with bytes that are no protocol at all
    endless_body()        a valid HTTP response whose body never ends, sent as fast as possible
    trickle()             valid HTTP headers, then one body byte per interval
    endless_headers()     an HTTP status line followed by header lines forever
    tls(context)          a TLS server presenting the certificate the test chose
    web_app(app, ssl=...) a well-behaved aiohttp application (real HTTP, optional TLS)
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

LOOPBACK = "127.0.0.1"


@dataclass
class Listener:
    """Where a test server listens, and what it received (raw first bytes of each connection)."""

    host: str
    port: int
    received: list[bytes] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"


Handler = Callable[[Listener, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_head(reader: asyncio.StreamReader, limit: int = 65536) -> bytes:
    """Read until the end of an HTTP request head (or EOF / the limit)."""
    data = b""
    while b"\r\n\r\n" not in data and len(data) < limit:
        chunk = await reader.read(4096)
        if not chunk:
            break
        data += chunk
    return data


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with a RST, not a FIN: SO_LINGER on with a zero timeout makes close() abort."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@contextlib.asynccontextmanager
async def _serve(
    handler: Handler, *, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[Listener]:
    listener = Listener(LOOPBACK, 0)
    tasks: set[asyncio.Task[None]] = set()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await handler(listener, reader, writer)
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            pass  # the probe hanging up on a hostile server is the expected end
        except asyncio.CancelledError:
            # Only the teardown below cancels handlers; asyncio's start_server callback would
            # log a cancelled handler task as an error, so end it quietly.
            pass
        finally:
            writer.transport.abort()

    server = await asyncio.start_server(on_connect, LOOPBACK, 0, ssl=ssl_context)
    listener.port = server.sockets[0].getsockname()[1]
    try:
        yield listener
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


@contextlib.asynccontextmanager
async def refused_port() -> AsyncIterator[Listener]:
    """A loopback port nothing listens on (bound to learn a free number, then closed)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((LOOPBACK, 0))
    port = sock.getsockname()[1]
    sock.close()
    yield Listener(LOOPBACK, port)


@contextlib.asynccontextmanager
async def blackhole() -> AsyncIterator[Listener]:
    """A port whose SYNs go unanswered, like a null-routed address.

    A listening socket with backlog 0 holds one connection in its accept queue; that slot is
    filled here and never accepted, so Linux drops every further SYN (tcp_abort_on_overflow=0)
    and the client's connect waits until its own timeout.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((LOOPBACK, 0))
    sock.listen(0)
    port = sock.getsockname()[1]
    filler = socket.create_connection((LOOPBACK, port), timeout=1.0)
    try:
        yield Listener(LOOPBACK, port)
    finally:
        filler.close()
        sock.close()


@contextlib.asynccontextmanager
async def reset_on_accept(*, after_first_data: bool = False) -> AsyncIterator[Listener]:
    """RST every connection: at once, or after its first bytes arrive (a censor that reads the
    ClientHello's SNI or the request's Host, then injects a reset)."""

    async def handler(
        listener: Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if after_first_data:
            listener.received.append(await reader.read(65536))
        _rst(writer)

    async with _serve(handler) as listener:
        yield listener


FINE_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nfine"


@contextlib.asynccontextmanager
async def first_request_hit(*, reset: bool = True) -> AsyncIterator[Listener]:
    """Interference on the first connection only: after its request arrives, a RST (`reset`) or
    a FIN with no answer; every later connection gets a plain 200. A censor that drops one
    request in a few looks like this, and so does a client that quietly retries it."""

    async def handler(
        listener: Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        listener.received.append(await _read_head(reader))
        if len(listener.received) > 1:
            writer.write(FINE_RESPONSE)
            await writer.drain()
            writer.write_eof()
        elif reset:
            _rst(writer)
            return
        else:
            writer.write_eof()
        while await reader.read(65536):
            pass

    async with _serve(handler) as listener:
        yield listener


@contextlib.asynccontextmanager
async def silent() -> AsyncIterator[Listener]:
    """Accept, read whatever comes, never answer (a stalled handshake or request)."""

    async def handler(
        listener: Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while await reader.read(65536):
            pass

    async with _serve(handler) as listener:
        yield listener


@contextlib.asynccontextmanager
async def closing() -> AsyncIterator[Listener]:
    """Accept and close the sending side at once (a FIN before any answer).

    The server keeps reading until the client's own FIN: closing the socket with the client's
    request unread would make the kernel answer with a RST instead of the EOF under test.
    """

    async def handler(
        listener: Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writer.write_eof()
        while await reader.read(65536):
            pass

    async with _serve(handler) as listener:
        yield listener


GARBAGE = b"\x16\xfe\xff\x00\x00garbage-that-is-no-protocol\x00\xff" * 8


@contextlib.asynccontextmanager
async def garbage(payload: bytes = GARBAGE) -> AsyncIterator[Listener]:
    """Answer the first bytes received with `payload`, then close."""

    async def handler(
        listener: Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        listener.received.append(await reader.read(65536))
        writer.write(payload)
        await writer.drain()
        writer.write_eof()
        while await reader.read(65536):
            pass

    async with _serve(handler) as listener:
        yield listener


@contextlib.asynccontextmanager
async def endless_body(chunk_size: int = 65536) -> AsyncIterator[Listener]:
    """A 200 response with no Content-Length whose body streams forever, as fast as the client
    reads it."""
    chunk = b"A" * chunk_size

    async def handler(
        listener: Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        listener.received.append(await _read_head(reader))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")
        while not writer.is_closing():
            writer.write(chunk)
            await writer.drain()

    async with _serve(handler) as listener:
        yield listener


@contextlib.asynccontextmanager
async def trickle(interval: float = 1.0) -> AsyncIterator[Listener]:
    """Valid headers promising 1 MB, then one body byte per `interval` (extreme throttling)."""

    async def handler(
        listener: Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        listener.received.append(await _read_head(reader))
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 1000000\r\n\r\n"
        )
        while not writer.is_closing():
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(interval)

    async with _serve(handler) as listener:
        yield listener


@contextlib.asynccontextmanager
async def endless_headers() -> AsyncIterator[Listener]:
    """A status line, then header lines forever: the client must give up, not buffer them all."""

    async def handler(
        listener: Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        listener.received.append(await _read_head(reader))
        writer.write(b"HTTP/1.1 200 OK\r\n")
        number = 0
        while not writer.is_closing():
            writer.write(b"X-Filler-%d: %s\r\n" % (number, b"f" * 64))
            number += 1
            if number % 256 == 0:
                await writer.drain()
                await asyncio.sleep(0)  # drain() does not yield while the buffer is low

    async with _serve(handler) as listener:
        yield listener


@contextlib.asynccontextmanager
async def tls(context: ssl.SSLContext) -> AsyncIterator[Listener]:
    """A TLS server presenting the certificate in `context`; it completes handshakes and waits
    for the client to hang up."""

    async def handler(
        listener: Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while await reader.read(65536):
            pass

    async with _serve(handler, ssl_context=context) as listener:
        yield listener


@contextlib.asynccontextmanager
async def web_app(
    app: web.Application,
    *,
    ssl_context: ssl.SSLContext | None = None,
    host: str = LOOPBACK,
    port: int = 0,
) -> AsyncIterator[Listener]:
    """A well-behaved aiohttp application on `host` (any 127.0.0.0/8 address), a free port
    unless one is given."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    try:
        await site.start()
        yield Listener(host, runner.addresses[0][1])
    finally:
        await runner.cleanup()
