"""The control test helper for tests: on its own GuardedEventLoop in a thread, as `probe helper
serve` runs it on another host."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from typing import Any

from probe.helper.server import GuardedEventLoop, HelperConfig, running


@contextmanager
def guarded_helper(config: HelperConfig, **kwargs: Any) -> Iterator[str]:
    """The helper on its own GuardedEventLoop in a thread; yields its base URL."""
    loop = GuardedEventLoop()
    thread = threading.Thread(target=loop.run_forever, name="helper", daemon=True)
    thread.start()
    stack = AsyncExitStack()

    async def enter() -> str:
        return await stack.enter_async_context(running(config, **kwargs))

    try:
        yield asyncio.run_coroutine_threadsafe(enter(), loop).result(timeout=30)
    finally:
        asyncio.run_coroutine_threadsafe(stack.aclose(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
