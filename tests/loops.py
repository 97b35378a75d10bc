"""The event loops async tests run on (pytest-asyncio's loop-factory hook, re-exported by
tests/conftest.py). Tests marked `both_loops` run once on asyncio's own loop and once on uvloop,
the two loops the probe can drive its checks with (probe/eventloop.py): a check that records a
different failure string or field on one of them fails there. Every other async test runs on
asyncio's loop, as before. Mark a module with `pytestmark = pytest.mark.both_loops`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest
import uvloop

ASYNCIO: Mapping[str, Callable[[], asyncio.AbstractEventLoop]] = {"asyncio": asyncio.new_event_loop}
BOTH: Mapping[str, Callable[[], asyncio.AbstractEventLoop]] = {
    **ASYNCIO,
    "uvloop": uvloop.new_event_loop,
}


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    return BOTH if item.get_closest_marker("both_loops") else ASYNCIO
