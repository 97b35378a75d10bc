"""The secure flow: resolve, connect, a TLS handshake with the target's SNI to every address open
on its port, protocol probes, one HTTP request over a verified address; a handshake that looks
interfered with gets its A/B control, the same address with a harmless SNI.

One TLS handshake per target: the first address's handshake offers HTTP/1.1 (what the HTTP check
speaks) and, when it verifies, the request rides its connection (TargetRun.
handshakes_carrying_fetch; the trade-off is in probe/checks/tls.py). When it does not verify, the
request goes to the first other verified address on a connection of its own, as before."""

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
    verified, riding = await run.handshakes_carrying_fetch(open_pairs, port, group)
    good = [(a, s, port) for (a, s), obs in verified if obs.ok]
    await asyncio.gather(
        *(run.protocol_probe(open_pairs, p) for p in target.ports),
        run.fetch(good, port) if riding is None else riding,
        run.sni_differentials(verified, port),
    )
