"""The TCP flow: resolve, connect to every address on every port, and a protocol probe on the
ports where a protocol allowlist has been seen (an app's own endpoints: Telegram DCs, WhatsApp)."""

from __future__ import annotations

import asyncio

from probe.flows.base import TargetRun


async def measure(run: TargetRun, group: asyncio.TaskGroup) -> None:
    addresses = await run.addresses(group)
    if not addresses:
        return
    open_pairs = await run.connect(addresses)
    await asyncio.gather(*(run.protocol_probe(open_pairs, port) for port in run.target.ports))
