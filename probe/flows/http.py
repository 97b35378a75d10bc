"""The cleartext flow: resolve, connect, protocol probes, and one HTTP request per port; an
answer that looks interfered with gets its A/B control, the same request with a harmless Host."""

from __future__ import annotations

import asyncio

from probe.flows.base import INTERFERENCE_FAILURES, Endpoint, TargetRun
from probe.model import HttpTransaction, Observation, Operation


async def measure(run: TargetRun, group: asyncio.TaskGroup) -> None:
    addresses = await run.addresses(group)
    if not addresses:
        return
    open_pairs = await run.connect(addresses, group)
    ports = run.target.ports
    await asyncio.gather(
        *(run.protocol_probe(open_pairs, port) for port in ports),
        *(_fetch(run, open_pairs, port) for port in ports),
    )


async def _fetch(run: TargetRun, open_pairs: list[Endpoint], port: int) -> None:
    fetched = await run.fetch(open_pairs, port)
    if fetched is not None and looks_interfered(fetched.observation):
        await run.host_differential(fetched)


def looks_interfered(observation: Observation[HttpTransaction]) -> bool:
    """A plain-HTTP answer worth an A/B test: cut off before the response, or refused with a
    4xx/5xx status. A body cut mid-read is not: the request got its answer, and the verdict rules
    pair only failures before the response with a harmless Host (a throttled download would
    otherwise pay a second http timeout for nothing)."""
    if observation.failure is not None:
        return (
            observation.failure in INTERFERENCE_FAILURES
            and observation.failed_operation is not Operation.READ
        )
    status = observation.details.status
    return status is not None and status >= 400
