"""The run's HTTP and DNS-over-HTTPS sessions, opened on an HTTP check loaded in a thread.

probe.checks.http and aiohttp take a quarter to half a second of a cold start to import (aiohttp
builds its default SSL contexts, the system trust store included, as it loads), and a run's
first checks need none of it: a DNS lookup over UDP, a TCP connect, a TLS handshake. Imported on
the event loop's thread once checks run, they would stop the loop and every check in flight
would be timed with the pause in it; imported before the first check, every run started that
much later (benchmarks/startup_benchmark.py). So the run loads them in a thread of its own from
its start (start()), and the first fetch or DoH lookup waits for them before its check starts:
a check's stopwatch never holds the wait.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import aiohttp

    from probe.checks import CheckContext

# The module whose import brings aiohttp (and opens the sessions below).
HTTP_CHECK = "probe.checks.http"


def load_http_check() -> object:
    """Import the HTTP check (and aiohttp); what RunSessions runs in its thread."""
    return importlib.import_module(HTTP_CHECK)


class RunSessions:
    """One run's HTTP session (every fetch shares it; each still opens its own connection) and,
    when a DoH resolver is configured, its DoH session (connections kept and reused), each
    opened on first use once the HTTP check is loaded. Use inside the run's event loop."""

    def __init__(self, ctx: CheckContext, *, load: Callable[[], object] = load_http_check) -> None:
        """`load`: what imports the HTTP check, in the loading thread (tests hold it back)."""
        self._ctx = ctx
        self._load_check = load
        self._loaded: asyncio.Future[object] | None = None
        self._http: aiohttp.ClientSession | None = None
        self._doh: aiohttp.ClientSession | None = None

    def start(self) -> None:
        """Begin loading the HTTP check (and aiohttp) in a thread of its own."""
        if self._loaded is not None:
            return
        loop = asyncio.get_running_loop()
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="probe-http-load")
        self._loaded = loop.run_in_executor(executor, self._load_check)
        executor.shutdown(wait=False)  # its thread ends with the import
        # A run that never fetches still reads a failed import (the error is the fetches' own).
        self._loaded.add_done_callback(_retrieve)

    async def loaded(self) -> None:
        """Wait until the HTTP check is loaded (raises what its import raised)."""
        await self._load()

    async def _load(self) -> None:
        self.start()
        assert self._loaded is not None
        # Shielded: a fetch cancelled while it waits must not cancel the loading for the others.
        await asyncio.shield(self._loaded)

    async def http(self) -> aiohttp.ClientSession:
        """The run's HTTP session (probe.checks.http.open_session), once it is loaded."""
        await self._load()
        if self._http is None:
            from probe.checks.http import open_session

            self._http = open_session(self._ctx)
        return self._http

    async def doh(self) -> aiohttp.ClientSession:
        """The run's DoH session (probe.checks.dns.open_doh_session), once aiohttp is loaded."""
        await self._load()
        if self._doh is None:
            from probe.checks.dns import open_doh_session

            self._doh = open_doh_session(self._ctx)
        return self._doh

    async def close(self) -> None:
        """Close the sessions that were opened. The loading thread, if it still runs, ends on its
        own (an import cannot be stopped half way)."""
        for session in (self._http, self._doh):
            if session is not None:
                await session.close()
        self._http = self._doh = None


def _retrieve(future: asyncio.Future[object]) -> None:
    if not future.cancelled():
        future.exception()
