"""The DNS-only flow: the target's name asked of every configured resolver, nothing connected."""

from __future__ import annotations

import asyncio

from probe.flows.base import TargetRun


async def measure(run: TargetRun, group: asyncio.TaskGroup) -> None:
    await run.addresses(group)
