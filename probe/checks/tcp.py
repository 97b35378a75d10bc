"""The TCP check: can the probe open a TCP connection to an address and port?

A connect that completes is closed again at once; a connect that fails is an OONI failure string
(refused, reset, timeout, unreachable, ...) with failed_operation "connect". The helpers here
(`require_ip_address`, `close_quietly`) are shared with the TLS check, which starts with the same
connect.
"""

from __future__ import annotations

import asyncio
import ipaddress

from probe.checks import CheckContext, Stopwatch, as_stored, format_endpoint
from probe.failures import describe
from probe.model import Failure, Layer, Observation, Operation, ProtocolProbe, TcpConnect

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


async def connect(address: str, port: int, ctx: CheckContext) -> Observation[TcpConnect]:
    """TCP-connect to `address`:`port` under the connect timeout, then close cleanly."""
    require_ip_address(address)
    watch = Stopwatch()
    details = TcpConnect(address, port)
    endpoint = format_endpoint(address, port)
    try:
        async with asyncio.timeout(ctx.timeouts.connect):
            _reader, writer = await asyncio.open_connection(address, port)
    except Exception as exc:
        failure, failure_detail = describe(exc)
        return Observation(
            layer=Layer.TCP,
            endpoint=endpoint,
            started_at=watch.started_at,
            duration_ms=watch.elapsed_ms(),
            failure=failure,
            failure_detail=failure_detail,
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


# Bytes that look like no protocol a DPI allowlist admits on 53/80/443 (neither DNS, HTTP nor a
# TLS record), so that a flow carrying them is what such an allowlist drops (Iran's protocol
# filter, 2020: Bock et al., FOCI 2020,
# https://www.usenix.org/conference/foci20/presentation/bock). Random, but fixed so that a
# measurement is repeatable.
PROTOCOL_PROBE_PAYLOAD = bytes.fromhex(
    "8f3a5c19e07d42b6a1f05e93c27b48d1"
    "6a0c9e2fb3d7158e4c60a9f21b7e3d05"
    "d29b4f7a1c6e08b35fa2917e40c8d3b6"
    "1e7f5a0c92d4b8e36f1a07c5e29d4b81"
)


async def protocol_probe(address: str, port: int, ctx: CheckContext) -> Observation[ProtocolProbe]:
    """Connect, send bytes that are no known protocol, and wait for any answer.

    A server answers garbage with an error or a close; a protocol allowlist drops the flow after
    the first data, so nothing comes back: generic_timeout_error with failed_operation "read".
    Only a control that got an answer from the same endpoint makes that silence the path's doing.
    """
    require_ip_address(address)
    watch = Stopwatch()
    endpoint = format_endpoint(address, port)
    operation = Operation.CONNECT
    failure: str | None = None
    failure_detail: str | None = None
    writer: asyncio.StreamWriter | None = None
    received = 0
    try:
        async with asyncio.timeout(ctx.timeouts.connect):
            reader, writer = await asyncio.open_connection(address, port)
        operation = Operation.WRITE
        writer.write(PROTOCOL_PROBE_PAYLOAD)
        async with asyncio.timeout(ctx.timeouts.tls):
            await writer.drain()
            operation = Operation.READ
            answer = await reader.read(4096)
        # Counted as stored: an answer echoing the probe's address must not size it.
        received = len(as_stored(answer, ctx.scrubber))
        if not answer:
            failure = Failure.EOF_ERROR
    except Exception as exc:
        failure, failure_detail = describe(exc)
    finally:
        if writer is not None:
            await close_quietly(writer)
    return Observation(
        layer=Layer.TCP,
        endpoint=endpoint,
        started_at=watch.started_at,
        duration_ms=watch.elapsed_ms(),
        failure=failure,
        failed_operation=operation if failure is not None else None,
        failure_detail=failure_detail,
        details=ProtocolProbe(
            address, port, payload_bytes=len(PROTOCOL_PROBE_PAYLOAD), response_bytes=received
        ),
    )
