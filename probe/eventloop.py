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
import os
from collections.abc import Callable, Coroutine
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
    KeyboardInterrupt is raised afterwards) and the same clean-up of leftover tasks."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
