"""The event loop a run's checks are driven by: uvloop where it is installed, asyncio's own
otherwise.

uvloop (https://github.com/MagicStack/uvloop, libuv underneath) runs the same coroutines with less
interpreter work per socket event; on the loopback run benchmark it cut the probe's CPU time and
peak RSS (`python3 -m benchmarks.run_benchmark --loop asyncio|uvloop`). The checks use only the
public asyncio API, so either loop gives the same measurements; the environment variable
PROBE_EVENT_LOOP=asyncio forces asyncio's loop (for a comparison, or where uvloop misbehaves).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

ENVIRONMENT = "PROBE_EVENT_LOOP"


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop constructor, or None (asyncio's default) when uvloop is not installed or
    PROBE_EVENT_LOOP=asyncio asks for the plain loop."""
    if os.environ.get(ENVIRONMENT, "").strip().lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def loop_name() -> str:
    """ "uvloop" or "asyncio": which loop run() drives coroutines with."""
    return "asyncio" if loop_factory() is None else "uvloop"


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run(main) on the chosen loop: the same SIGINT handling (the main task is cancelled,
    KeyboardInterrupt is raised afterwards) and the same clean-up of leftover tasks.

    A Ctrl-C that lands while the loop closes (its leftover tasks cancelled, its executor's
    threads joined) waits until it has closed, then is raised as KeyboardInterrupt. Raised in the
    middle of the close, it left the loop half shut: "Cannot close a running event loop", or
    uvloop's shutdown thread printing a traceback ("Event loop is closed"). A second one while
    the loop closes stops at once."""
    runner = asyncio.Runner(loop_factory=loop_factory())
    try:
        return runner.run(main)
    finally:
        with _interrupt_held() as held:
            runner.close()
        if held:
            raise KeyboardInterrupt


@contextlib.contextmanager
def _interrupt_held() -> Iterator[list[int]]:
    """SIGINT inside is noted in the list yielded (a second raises KeyboardInterrupt at once)."""
    held: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield held
        return

    def note(signum: int, _frame: object) -> None:
        held.append(signum)
        if len(held) > 1:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, note)
    try:
        yield held
    finally:
        signal.signal(signal.SIGINT, previous)
