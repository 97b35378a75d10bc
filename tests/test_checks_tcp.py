"""The TCP check against real loopback listeners: what a user sees for an open port, a refused
one, a null-routed one, and a network with no route at all."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from probe.checks import CheckContext, Timeouts
from probe.checks.tcp import PROTOCOL_PROBE_PAYLOAD, connect, protocol_probe
from probe.model import Layer, Operation, TcpConnect
from tests.servers import hostile

# Each check on asyncio's loop and on uvloop (tests/loops.py, probe/eventloop.py).
pytestmark = pytest.mark.both_loops

FAST = CheckContext(timeouts=Timeouts(connect=0.3))
PROBE = CheckContext(timeouts=Timeouts(connect=0.3, tls=0.3))


async def test_open_port_connects_and_hangs_up_with_a_fin() -> None:
    ends: list[str] = []

    async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            ends.append("eof" if await reader.read(1) == b"" else "data")
        except ConnectionResetError:
            ends.append("reset")
        writer.close()

    listener = await asyncio.start_server(server, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    async with listener:
        observation = await connect("127.0.0.1", port, FAST)
        for _ in range(100):
            if ends:
                break
            await asyncio.sleep(0.01)

    assert observation.ok
    assert observation.layer is Layer.TCP
    assert observation.endpoint == f"127.0.0.1:{port}"
    assert observation.details == TcpConnect("127.0.0.1", port)
    assert observation.failed_operation is None
    assert ends == ["eof"]  # closed cleanly, not reset


async def test_ipv6_endpoint_is_written_in_brackets() -> None:
    listener = await asyncio.start_server(lambda r, w: w.close(), "::1", 0)
    port = listener.sockets[0].getsockname()[1]
    async with listener:
        observation = await connect("::1", port, FAST)

    assert observation.ok
    assert observation.endpoint == f"[::1]:{port}"


async def test_closed_port_is_connection_refused() -> None:
    async with hostile.refused_port() as server:
        observation = await connect(server.host, server.port, FAST)

    assert observation.failure == "connection_refused"
    assert observation.failed_operation is Operation.CONNECT
    assert observation.details == TcpConnect(server.host, server.port)


async def test_unanswered_syn_is_generic_timeout_after_the_connect_timeout() -> None:
    async with hostile.blackhole() as server:
        observation = await connect(server.host, server.port, FAST)

    assert observation.failure == "generic_timeout_error"
    assert observation.failed_operation is Operation.CONNECT
    assert 290 <= observation.duration_ms < 1500


async def test_a_reset_after_accept_still_counts_as_a_completed_connect() -> None:
    # The handshake completed before the server's RST: the TCP layer is not what is blocked.
    async with hostile.reset_on_accept() as server:
        observation = await connect(server.host, server.port, FAST)

    assert observation.ok


async def test_host_name_instead_of_address_is_a_bug_not_a_measurement() -> None:
    with pytest.raises(ValueError, match="expected an IP address"):
        await connect("example.com", 80, FAST)


_UNREACHABLE_CHILD = textwrap.dedent(
    """
    import asyncio, json, socket, sys
    # Refuse to run anywhere but in an empty network namespace: nothing may leave the machine.
    if [name for _, name in socket.if_nameindex()] != ["lo"]:
        sys.exit("not in an empty network namespace")
    from probe.checks import CheckContext, Timeouts
    from probe.checks.tcp import connect
    obs = asyncio.run(connect("192.0.2.1", 80, CheckContext(timeouts=Timeouts(connect=1.0))))
    print(json.dumps({"failure": obs.failure, "operation": obs.failed_operation}))
    """
)


@pytest.mark.lab
@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare(1)"
)
def test_no_route_to_the_network_is_network_unreachable() -> None:
    # A fresh network namespace has a loopback interface only, so any other address has no
    # route: the kernel refuses the connect at once and no packet is sent anywhere.
    result = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", _UNREACHABLE_CHILD],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=Path(__file__).resolve().parent.parent,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"failure": "network_unreachable", "operation": "connect"}


async def test_protocol_probe_answered_by_the_server_is_no_failure() -> None:
    async with hostile.garbage() as server:
        observation = await protocol_probe(server.host, server.port, PROBE)
    assert observation.failure is None and observation.details.response_bytes > 0
    assert server.received and server.received[0].startswith(PROTOCOL_PROBE_PAYLOAD[:16])


async def test_protocol_probe_met_by_silence_is_a_read_timeout() -> None:
    async with hostile.silent() as server:
        observation = await protocol_probe(server.host, server.port, PROBE)
    assert (observation.failure, observation.failed_operation) == (
        "generic_timeout_error",
        Operation.READ,
    )


async def test_protocol_probe_closed_by_the_server_is_eof() -> None:
    async with hostile.closing() as server:
        observation = await protocol_probe(server.host, server.port, PROBE)
    assert observation.failure in ("eof_error", "connection_reset")
    assert observation.failed_operation is Operation.READ
