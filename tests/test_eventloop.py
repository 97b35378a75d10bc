"""probe.eventloop: a run's checks are driven by uvloop when it is installed, by asyncio's own loop
when PROBE_EVENT_LOOP=asyncio asks for it, and run() keeps asyncio.run's Ctrl-C semantics."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import pytest

from probe import eventloop


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_a_run_is_driven_by_uvloop_when_it_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(eventloop.ENVIRONMENT, raising=False)
    assert eventloop.loop_name() == "uvloop"
    assert eventloop.run(_loop_module()).startswith("uvloop")


@pytest.mark.parametrize("spelling", ["asyncio", " ASYNCIO "])
def test_probe_event_loop_asyncio_forces_the_plain_loop(
    monkeypatch: pytest.MonkeyPatch, spelling: str
) -> None:
    monkeypatch.setenv(eventloop.ENVIRONMENT, spelling)
    assert eventloop.loop_name() == "asyncio"
    assert eventloop.run(_loop_module()).startswith("asyncio")


def test_without_uvloop_the_plain_loop_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(eventloop.ENVIRONMENT, raising=False)
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop -> ImportError
    assert eventloop.loop_factory() is None
    assert eventloop.run(_loop_module()).startswith("asyncio")


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_ctrl_c_cancels_the_main_task_then_raises_keyboard_interrupt(
    monkeypatch: pytest.MonkeyPatch, loop: str
) -> None:
    """As asyncio.run does: the running coroutine sees CancelledError (its finally blocks run,
    so buffered measurements are stored), then KeyboardInterrupt reaches the caller."""
    monkeypatch.setenv(eventloop.ENVIRONMENT, loop)
    cleaned: list[str] = []

    async def main() -> None:
        asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), signal.SIGINT)
        try:
            await asyncio.sleep(30)
        finally:
            cleaned.append(type(asyncio.get_running_loop()).__module__)

    # As from a terminal: a test process started in the background of a non-interactive shell
    # inherits SIGINT ignored, and the signal would never arrive.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            eventloop.run(main())
    finally:
        signal.signal(signal.SIGINT, previous)
    assert len(cleaned) == 1 and cleaned[0].startswith(loop)


_CTRL_C_WHILE_CLOSING = """
import asyncio, os, signal, threading, time
from probe import eventloop

async def main():
    # A thread of the loop's executor still busy when main returns: the loop's close joins it.
    asyncio.get_running_loop().run_in_executor(None, time.sleep, 1.0)
    threading.Timer(0.4, os.kill, (os.getpid(), signal.SIGINT)).start()
    return "measured"

try:
    eventloop.run(main())
    print("no interrupt")
except KeyboardInterrupt:
    print("interrupted")
"""


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_ctrl_c_while_the_loop_closes_is_raised_once_it_has_closed_without_a_traceback(
    loop: str,
) -> None:
    # Before: with uvloop the KeyboardInterrupt cut the close short and uvloop's shutdown
    # thread printed a traceback ("Event loop is closed"); CI once saw "Cannot close a running
    # event loop" from a Ctrl-C in a probe run's last moments.
    done = subprocess.run(
        [sys.executable, "-c", _CTRL_C_WHILE_CLOSING],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, eventloop.ENVIRONMENT: loop},
        check=False,
    )
    assert done.stdout.strip() == "interrupted", done.stderr
    assert done.stderr == ""
