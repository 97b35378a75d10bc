"""The secure flow: resolve, connect, a TLS handshake with the target's SNI to every address open
on its port, protocol probes, one HTTP request over a verified address; a handshake that looks
interfered with gets its A/B control, the same address with a harmless SNI.

One TLS handshake per target: the first address's handshake offers HTTP/1.1 (what the HTTP check
speaks) and, when it verifies, its connection is held until the request, which starts when it
always has (after every handshake), rides it (TargetRun.handshakes and fetch with hold=; the
trade-off is in probe/checks/tls.py). When it does not verify, or the held connection was closed or
went stale meanwhile, the request dials a connection of its own, as before."""

from __future__ import annotations

import asyncio

from probe.checks import tls
from probe.flows.base import TargetRun


async def measure(run: TargetRun, group: asyncio.TaskGroup) -> None:
    addresses = await run.addresses(group)
    if not addresses:
        return
    open_pairs = await run.connect(addresses, group)
    target = run.target
    port = target.ports[0]
    # The fetch starts where it always has, once every handshake is over (starting it as soon
    # as the first one verified let its download crowd a shaped link while the other addresses'
    # handshakes were still under way); the first verified connection waits for it, held.
    held = tls.HeldConnection()
    try:
        verified = await run.handshakes(open_pairs, port, held)
        good = [(a, s, port) for (a, s), obs in verified if obs.ok]
        await asyncio.gather(
            *(run.protocol_probe(open_pairs, p) for p in target.ports),
            run.fetch(good, port, held),
            run.sni_differentials(verified, port),
        )
    finally:
        await held.release()
