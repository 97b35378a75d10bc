"""The TCP check: can the probe open a TCP connection to an address and port?

A connect that completes is closed again at once; a connect that fails is an OONI failure string
(refused, reset, timeout, unreachable, ...) with failed_operation "connect". The helpers here
(`require_ip_address`, `close_quietly`) are shared with the TLS check, which starts with the same
connect.
"""

from __future__ import annotations

import asyncio
import ipaddress

from probe.checks import CheckContext, Stopwatch, format_endpoint
from probe.failures import classify
from probe.model import Layer, Observation, Operation

# Closing is courtesy, not measurement: never let a peer that ignores our FIN (or TLS
# close_notify) hold a check open longer than this.
_CLOSE_TIMEOUT = 1.0


def require_ip_address(address: str) -> None:
    """Reject a host name: checks connect to addresses the runner resolved, never resolve
    themselves (a hidden system-resolver lookup would be an unrecorded DNS measurement)."""
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise ValueError(f"expected an IP address, got {address!r}") from None


async def close_quietly(writer: asyncio.StreamWriter) -> None:
    """Close a connection, bounded in time; errors while closing say nothing about the path."""
    writer.close()
    try:
        async with asyncio.timeout(_CLOSE_TIMEOUT):
            await writer.wait_closed()
    except Exception:
        # A reset or a silent peer during close: drop the socket without waiting.
        writer.transport.abort()


async def connect(address: str, port: int, ctx: CheckContext) -> Observation:
    """TCP-connect to `address`:`port` under the connect timeout, then close cleanly."""
    require_ip_address(address)
    watch = Stopwatch()
    details = {"address": address, "port": port}
    endpoint = format_endpoint(address, port)
    try:
        async with asyncio.timeout(ctx.timeouts.connect):
            _reader, writer = await asyncio.open_connection(address, port)
    except Exception as exc:
        return Observation(
            layer=Layer.TCP,
            endpoint=endpoint,
            started_at=watch.started_at,
            duration_ms=watch.elapsed_ms(),
            failure=classify(exc),
            failed_operation=Operation.CONNECT,
            details=details,
        )
    # The duration is the connect itself; closing is not part of what was measured.
    duration_ms = watch.elapsed_ms()
    await close_quietly(writer)
    return Observation(
        layer=Layer.TCP,
        endpoint=endpoint,
        started_at=watch.started_at,
        duration_ms=duration_ms,
        details=details,
    )
