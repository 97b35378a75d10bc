"""Run async test servers on an event loop in a background thread, so that code which calls
asyncio.run() itself (the CLI, benchmarks) can talk to them from the main thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, contextmanager
from typing import Any


@contextmanager
def background(
    *factories: Callable[[], AbstractAsyncContextManager[Any]],
) -> Iterator[list[Any]]:
    """Enter each async context manager on a private loop; yield what they yielded, in order."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-servers", daemon=True)
    thread.start()
    stack = AsyncExitStack()

    async def enter() -> list[Any]:
        return [await stack.enter_async_context(factory()) for factory in factories]

    try:
        yield asyncio.run_coroutine_threadsafe(enter(), loop).result(timeout=30)
    finally:
        asyncio.run_coroutine_threadsafe(stack.aclose(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
