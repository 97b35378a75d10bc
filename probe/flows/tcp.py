"""The TCP flow: resolve, connect to every address on every port, and a protocol probe on the
ports where a protocol allowlist has been seen (an app's own endpoints: Telegram DCs, WhatsApp).
An endpoint the catalog says speaks TLS (Facebook's API and MQTT hosts) also gets a TLS handshake
with its name as SNI on every open address and port, and a handshake that looks interfered with
its harmless-SNI A/B control: it is measured by what it speaks, not by bytes it never sends."""

from __future__ import annotations

import asyncio

from probe.flows.base import Endpoint, TargetRun
from probe.model import Speaks


async def measure(run: TargetRun, group: asyncio.TaskGroup) -> None:
    addresses = await run.addresses(group)
    if not addresses:
        return
    open_pairs = await run.connect(addresses, group)
    ports = run.target.ports
    secure = run.target.protocol is Speaks.TLS
    await asyncio.gather(
        *(run.protocol_probe(open_pairs, port) for port in ports),
        *(_handshake(run, open_pairs, port) for port in ports if secure),
    )


async def _handshake(run: TargetRun, open_pairs: list[Endpoint], port: int) -> None:
    await run.sni_differentials(await run.handshakes(open_pairs, port), port)
