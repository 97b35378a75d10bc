"""probe.checks.sessions: the run's HTTP and DoH sessions, opened once the HTTP check (and
aiohttp) has loaded in a thread of its own, so that a run's first checks never wait for it."""

from __future__ import annotations

import asyncio
import threading

import pytest

from probe.checks import CheckContext
from probe.checks.sessions import RunSessions, load_http_check


class _HeldLoad:
    """A loader that imports the HTTP check only once the test lets it (from the loading
    thread), and says whether it has started."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def __call__(self) -> object:
        self.calls += 1
        self.started.set()
        if not self.release.wait(timeout=60):
            raise TimeoutError("the test never released the load")
        return load_http_check()


async def test_fetches_wait_for_the_loading_thread_and_share_one_session() -> None:
    load = _HeldLoad()
    sessions = RunSessions(CheckContext(), load=load)
    sessions.start()
    first = asyncio.ensure_future(sessions.http())
    second = asyncio.ensure_future(sessions.http())
    await asyncio.get_running_loop().run_in_executor(None, load.started.wait, 60)
    await asyncio.sleep(0.05)
    assert not first.done() and not second.done()  # held until the HTTP check has loaded
    load.release.set()
    try:
        assert await first is await second
        assert await sessions.http() is await first
        assert load.calls == 1
    finally:
        await sessions.close()


async def test_a_fetch_cancelled_while_waiting_leaves_the_loading_to_the_others() -> None:
    load = _HeldLoad()
    sessions = RunSessions(CheckContext(), load=load)
    sessions.start()
    cancelled = asyncio.ensure_future(sessions.http())
    waiting = asyncio.ensure_future(sessions.doh())
    await asyncio.get_running_loop().run_in_executor(None, load.started.wait, 60)
    cancelled.cancel()
    await asyncio.wait({cancelled})
    load.release.set()
    try:
        doh = await waiting
        assert not doh.closed
    finally:
        await sessions.close()
    assert doh.closed


async def test_a_failed_load_is_raised_to_every_fetch_that_waits() -> None:
    def broken() -> object:
        raise ImportError("aiohttp is not installed")

    sessions = RunSessions(CheckContext(), load=broken)
    sessions.start()
    for _ in range(2):
        with pytest.raises(ImportError, match="aiohttp is not installed"):
            await sessions.http()
    await sessions.close()
