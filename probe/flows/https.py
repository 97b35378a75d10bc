"""The secure flow: resolve, connect, a TLS handshake with the target's SNI to every address open
on its port, protocol probes, one HTTP request over a verified address; a handshake that looks
interfered with gets its A/B control, the same address with a harmless SNI."""

from __future__ import annotations

import asyncio

from probe.flows.base import TargetRun


async def measure(run: TargetRun, group: asyncio.TaskGroup) -> None:
    addresses = await run.addresses(group)
    if not addresses:
        return
    open_pairs = await run.connect(addresses, group)
    target = run.target
    port = target.ports[0]
    verified = await run.handshakes(open_pairs, port)
    good = [(a, s, port) for (a, s), obs in verified if obs.ok]
    await asyncio.gather(
        *(run.protocol_probe(open_pairs, p) for p in target.ports),
        run.fetch(good, port),
        run.sni_differentials(verified, port),
    )
