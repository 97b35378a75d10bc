"""The test helper under attack, on loopback with real sockets: a caller holding the token (it sits
in every volunteer's config) tries to use it as an SSRF or a scanner, and a stranger tries to
exhaust it. One test per attack, each with a negative control showing the same path still serves
a legitimate probe. The helper measures loopback targets only where a test allow-lists 127/8."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import json
import os
import resource
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from probe.addresses import non_public_reason
from probe.checks import CheckContext, Timeouts
from probe.helper.client import HelperUnavailable, query_helper
from probe.helper.protocol import (
    HelperResult,
    ProtocolError,
    batches,
    encode_request,
    encode_response,
    parse_request,
)
from probe.helper.server import HelperConfig, interface_addresses
from probe.model import DnsQuery, Target, TargetKind
from probe.resolvers import SYSTEM_RESOLVER, parse_resolver
from tests.builders import record
from tests.servers.dns_server import Behaviour, FakeNameserver
from tests.servers.helper import guarded_helper

TOKEN = "adversarial-token-0123456789"
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
EVERYWHERE = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))
INTERNAL = {
    "intranet.corp": Behaviour.answer(a=["10.1.2.3"]),
    "router.lan": Behaviour.answer(a=["192.168.1.1"]),
    "metadata.cloud": Behaviour.answer(a=["169.254.169.254"]),
    "self6.corp": Behaviour.answer(aaaa=["::1"]),
    "public.example": Behaviour.answer(a=["149.154.167.51"]),
    "lo.example": Behaviour.answer(a=["127.0.0.1"]),
}


@pytest.fixture(scope="module")
def ns() -> Iterator[FakeNameserver]:
    with FakeNameserver(INTERNAL) as server:
        yield server


def config(ns: FakeNameserver, **overrides: Any) -> HelperConfig:
    timeouts = Timeouts(dns=0.5, connect=0.5, tls=0.5, http=1.0)
    context = dataclasses.replace(CheckContext(timeouts=timeouts), dns_second_answer_window=0.05)
    settings: dict[str, Any] = {
        "token": TOKEN,
        "resolvers": (parse_resolver(ns.udp_spec),),
        "context": context,
        "concurrency": 16,
        "deadline": 10.0,
    }
    settings.update(overrides)
    return HelperConfig(**settings)


@contextlib.asynccontextmanager
async def http_listener(host: str = "127.0.0.1") -> AsyncIterator[tuple[int, list[int]]]:
    """A tiny HTTP server that counts the connections it accepts."""
    accepted: list[int] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(on_connect, host, 0)
    try:
        yield int(server.sockets[0].getsockname()[1]), accepted
    finally:
        server.close()
        await server.wait_closed()


async def ask(url: str, targets: list[Target]) -> HelperResult:
    result = await query_helper(url, TOKEN, targets, CheckContext(), timeout=20)
    assert isinstance(result, HelperResult), result
    return result


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


# -- SSRF: the helper host's own addresses ------------------------------------------------------


async def test_a_service_bound_to_all_addresses_is_not_readable_through_the_hosts_own_address(
    ns: FakeNameserver,
) -> None:
    own = sorted(interface_addresses())
    assert {"0.0.0.0", "::", "127.0.0.1"} <= set(own)
    async with http_listener("0.0.0.0") as (port, accepted):
        targets = [
            Target("self", f"own-{address}", TargetKind.HTTP, address, (port,)) for address in own
        ]
        # Even an allow-list of every network does not lift the rule for the host's own.
        with guarded_helper(config(ns, allowed=EVERYWHERE)) as url:
            refused = await ask(url, targets)
        assert {r.target for r in refused.refused} == {t.name for t in targets}
        assert refused.targets == () and accepted == []

        # Negative control: the same allow-list with no own addresses reaches the service.
        with guarded_helper(config(ns, allowed=EVERYWHERE, own_addresses=frozenset)) as url:
            reached = await ask(url, [Target("self", "lo", TargetKind.HTTP, "127.0.0.1", (port,))])
    assert reached.refused == () and accepted


async def test_a_name_resolving_to_the_hosts_own_address_is_refused(ns: FakeNameserver) -> None:
    async with http_listener("0.0.0.0") as (port, accepted):
        target = Target("self", "named", TargetKind.HTTP, "lo.example", (port,))
        own = frozenset({"127.0.0.1"})
        with guarded_helper(config(ns, allowed=LOOPBACK, own_addresses=lambda: own)) as url:
            result = await ask(url, [target])
        assert [r.target for r in result.refused] == ["named"]
        assert "non-public address (loopback)" in result.refused[0].reason and accepted == []
        # Negative control: without 127.0.0.1 among its own addresses, the allow-list admits it.
        with guarded_helper(config(ns, allowed=LOOPBACK, own_addresses=frozenset)) as url:
            allowed = await ask(url, [target])
    assert allowed.refused == () and accepted


# -- SSRF: private addresses in every form ------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("2002:7f00:1::", "loopback (in 6to4)"),
        ("2002:c0a8:101::1", "private (in 6to4)"),
        ("2001:0:4136:e378:8000:63bf:f5ff:fefe", "private (in Teredo)"),
        ("64:ff9b::7f00:1", "loopback (in NAT64)"),
        ("64:ff9b::a01:203", "private (in NAT64)"),
        ("64:ff9b::a9fe:a9fe", "link-local (in NAT64)"),
        ("64:ff9b:1::a00:1", "NAT64 local-use"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),
        ("::127.0.0.1", "reserved"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "private"),
    ],
)
def test_an_address_embedding_a_private_one_is_not_public(address: str, reason: str) -> None:
    assert non_public_reason(address) == reason


@pytest.mark.parametrize("address", ["2002:808:808::1", "149.154.167.51", "2001:4860:4860::8888"])
def test_public_addresses_and_6to4_of_public_ones_stay_measurable(address: str) -> None:
    # The negative control of the embedded forms: a 6to4 address of 8.8.8.8 is public.
    assert non_public_reason(address) is None


async def test_embedded_private_literals_are_refused_before_any_packet(ns: FakeNameserver) -> None:
    literals = ["2002:7f00:1::", "64:ff9b::a01:203", "::ffff:127.0.0.1", "0.0.0.0", "::"]
    targets = [Target("x", a, TargetKind.TCP, a, (80,)) for a in literals]
    with guarded_helper(config(ns)) as url:
        result = await ask(url, targets)
    assert result.targets == ()
    assert {r.target for r in result.refused} == set(literals)


# -- kind=dns: internal names ------------------------------------------------------------------


async def test_internal_names_are_answered_as_refused_without_their_addresses(
    ns: FakeNameserver,
) -> None:
    internal = ["intranet.corp", "router.lan", "metadata.cloud", "self6.corp", "lo.example"]
    targets = [Target("x", name, TargetKind.DNS, name) for name in internal]
    targets.append(Target("x", "public.example", TargetKind.DNS, "public.example"))
    with guarded_helper(config(ns)) as url:
        result = await ask(url, targets)
    assert {r.target for r in result.refused} == set(internal)
    wire = json.dumps(encode_response(result))
    for address in ("10.1.2.3", "192.168.1.1", "169.254.169.254", '"::1"'):
        assert address not in wire
    assert all("127.0.0.1" not in r.reason for r in result.refused)
    # Negative control: a public name's answer comes back as a control, address and all.
    (public,) = result.targets
    assert record(DnsQuery, public.measurements[0]).addresses == ("149.154.167.51",)


# -- scanning: connections per request ----------------------------------------------------------


async def test_a_request_for_thousands_of_endpoints_is_refused_before_any_connect(
    ns: FakeNameserver,
) -> None:
    async with http_listener() as (port, accepted):
        ports = [port, *range(20000, 20015)]
        scan = [Target("x", f"t{i}", TargetKind.TCP, "127.0.0.1", tuple(ports)) for i in range(200)]
        with guarded_helper(config(ns, allowed=LOOPBACK, own_addresses=frozenset)) as url:
            async with aiohttp.ClientSession() as session:
                headers = {"Authorization": f"Bearer {TOKEN}"}
                async with session.post(
                    f"{url}/v1/measure", json=encode_request(scan), headers=headers
                ) as response:
                    status, body = response.status, await response.json()
            # Negative control: the client splits the same targets into requests within the cap.
            result = await ask(url, scan[:5])
    assert status == 400
    assert (
        body["error"] == "$.targets: 3200 endpoints (targets x ports), more than the 2000 allowed"
    )
    assert len(result.targets) == 5 and len(accepted) >= 5


def test_the_client_batches_within_the_endpoint_cap() -> None:
    targets = [
        Target("x", f"t{i}", TargetKind.TCP, "192.0.2.1", tuple(range(1, 17))) for i in range(200)
    ]
    requests = batches(targets)
    assert sum(len(r) for r in requests) == 200
    for request in requests:
        assert parse_request(encode_request(list(request)))  # each within every limit
    with pytest.raises(ProtocolError, match="endpoints"):
        parse_request(encode_request(targets))


async def test_the_connect_budget_caps_what_one_batch_can_cause(ns: FakeNameserver) -> None:
    # One endpoint may cost 1 connect here: the TCP check takes it, the HTTP check is refused.
    async with http_listener() as (port, accepted):
        target = Target("x", "web", TargetKind.HTTP, "127.0.0.1", (port,))
        tight = config(
            ns, allowed=LOOPBACK, own_addresses=frozenset, max_addresses=1, connects_per_endpoint=1
        )
        with guarded_helper(tight) as url:
            capped = await ask(url, [target])
        assert [r.target for r in capped.refused] == ["web"]
        assert "used up the connections" in capped.refused[0].reason
        assert len(accepted) == 1
        # Negative control: the default allowance measures the same target completely.
        with guarded_helper(config(ns, allowed=LOOPBACK, own_addresses=frozenset)) as url:
            measured = await ask(url, [target])
    assert measured.refused == ()
    (control,) = measured.targets
    assert {o.layer.value for o in control.measurements} == {"tcp", "http"}


async def test_a_leaked_token_buys_a_bounded_rate(ns: FakeNameserver) -> None:
    with guarded_helper(config(ns, rate_burst=2, rate_per_minute=1.0)) as url:
        first = await query_helper(url, TOKEN, [], CheckContext(), timeout=5)
        second = await query_helper(url, TOKEN, [], CheckContext(), timeout=5)
        third = await query_helper(url, TOKEN, [], CheckContext(), timeout=5)
    # Negative control: the burst itself is served.
    assert isinstance(first, HelperResult) and isinstance(second, HelperResult)
    assert isinstance(third, HelperUnavailable)
    assert "429" in third.reason and "too many batches for this token" in third.reason


# -- exhaustion: idle, slow and greedy connections ---------------------------------------------


def _idle_connections(port: int, count: int, source: str = "127.0.0.1") -> list[socket.socket]:
    """`count` connections to the helper that never send a byte."""
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
        sockets.append(sock)
    return sockets


def _closed_by_peer(sock: socket.socket, wait: float = 10.0) -> bool:
    """True when the peer closed `sock` (EOF or reset) within `wait` seconds (a hang guard)."""
    sock.settimeout(wait)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


async def test_idle_connections_cannot_lock_the_probes_out(ns: FakeNameserver) -> None:
    small = config(ns, max_connections=40, max_connections_per_peer=10_000, header_timeout=60.0)
    with guarded_helper(small) as url:
        idle = await asyncio.to_thread(_idle_connections, _port(url), 200)
        try:
            # The probe still gets its answer: the oldest idle connections made way for it.
            result = await query_helper(url, TOKEN, [], CheckContext(), timeout=10)
            closed = sum(await asyncio.to_thread(lambda: [_closed_by_peer(s, 0.1) for s in idle]))
        finally:
            for sock in idle:
                sock.close()
    assert isinstance(result, HelperResult), result
    # At most max_connections of the flood were kept open at any time.
    assert closed >= 200 - 40


async def test_a_slowloris_connection_is_closed_at_the_header_deadline(
    ns: FakeNameserver,
) -> None:
    with guarded_helper(config(ns, header_timeout=0.5)) as url:
        port = _port(url)
        slow = socket.create_connection(("127.0.0.1", port), timeout=5)
        slow.sendall(b"POST /v1/measure HTTP/1.1\r\nHost: helper\r\nX-Slow: ")
        closed = await asyncio.to_thread(_closed_by_peer, slow)
        slow.close()
        # Negative control: a complete request is answered, then its connection closes too
        # (one request per connection: no idle keep-alive waits for a next one).
        quick = socket.create_connection(("127.0.0.1", port), timeout=5)
        quick.sendall(b"GET /healthz HTTP/1.1\r\nHost: helper\r\n\r\n")
        quick.settimeout(10)
        answer = b""
        while chunk := quick.recv(65536):
            answer += chunk
        quick.close()
    assert closed
    assert answer.startswith(b"HTTP/1.1 200") and b'"status": "ok"' in answer


async def test_one_peer_cannot_take_every_connection(ns: FakeNameserver) -> None:
    with guarded_helper(config(ns, max_connections_per_peer=5, header_timeout=60.0)) as url:
        port = _port(url)
        held = await asyncio.to_thread(_idle_connections, port, 5)
        extra = socket.create_connection(("127.0.0.1", port), timeout=5)
        turned_away = await asyncio.to_thread(_closed_by_peer, extra)
        extra.close()
        for sock in held:
            sock.close()
        await asyncio.sleep(0.2)  # the helper sees the closes
        # Negative control: once the peer's connections are gone, it is served again.
        result = await query_helper(url, TOKEN, [], CheckContext(), timeout=10)
    assert turned_away
    assert isinstance(result, HelperResult), result


def test_probe_helper_serve_raises_its_descriptor_limit_and_survives_a_flood(
    tmp_path: Path, ns: FakeNameserver
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    settings = tmp_path / "config.toml"
    settings.write_text(f'[dns]\nresolvers = ["{ns.udp_spec}"]\n')
    env = {k: v for k, v in os.environ.items() if k != "PROBE_HELPER_TOKEN"}

    def low_limit() -> None:
        # Start like a default shell: a low soft limit under a higher hard one.
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 512))

    command = [sys.executable, "-m", "probe", "helper", "serve", "--listen", "127.0.0.1:0"]
    command += ["--token-file", str(token_file), "--config", str(settings)]
    process = subprocess.Popen(
        command, stderr=subprocess.PIPE, env=env, preexec_fn=low_limit, cwd=tmp_path
    )
    assert process.stderr is not None
    flood: list[socket.socket] = []
    try:
        banner = process.stderr.readline().decode(errors="replace")
        assert "listening on http://127.0.0.1:" in banner, banner
        url = banner.split("listening on ")[1].split()[0]
        limits = Path(f"/proc/{process.pid}/limits").read_text()
        (line,) = [row for row in limits.splitlines() if row.startswith("Max open files")]
        # 700 idle connections from another address against a 512-descriptor process: none of
        # them makes it EMFILE, and the probe (from 127.0.0.1) is still served.
        flood = _idle_connections(_port(url), 700, source="127.0.0.2")
        result = asyncio.run(query_helper(url, TOKEN, [], CheckContext(), timeout=10))
        for sock in flood:
            sock.close()
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    finally:
        for sock in flood:
            sock.close()
        if process.poll() is None:
            process.kill()
            process.wait()
    assert line.split()[3:5] == ["512", "512"], line
    assert isinstance(result, HelperResult), result
    log = stderr.decode(errors="replace")
    assert "Too many open files" not in log and "Traceback" not in log, log


# -- SSRF: the spellings inet_aton(3) reads as loopback -------------------------------------------

# What getaddrinfo (the system resolver the helper uses by default) reads as 127.0.0.1 or
# 0.0.0.0 without any query: ipaddress reads none of them as an address, so they reach the
# resolver as names.
INET_ATON_LOOPBACK = ["127.1", "2130706433", "0x7f000001", "0177.0.0.1", "0x7f.0.0.1", "0"]


async def test_inet_aton_spellings_of_loopback_through_the_system_resolver_never_connect(
    ns: FakeNameserver,
) -> None:
    async with http_listener("0.0.0.0") as (port, accepted):
        targets = [Target("x", host, TargetKind.HTTP, host, (port,)) for host in INET_ATON_LOOPBACK]
        with guarded_helper(config(ns, resolvers=(SYSTEM_RESOLVER,))) as url:
            result = await ask(url, targets)
        assert {r.target for r in result.refused} == set(INET_ATON_LOOPBACK)
        assert result.targets == () and accepted == []
        # Negative control: allow-listed, the same spelling reaches the listener.
        with guarded_helper(
            config(ns, resolvers=(SYSTEM_RESOLVER,), allowed=LOOPBACK, own_addresses=frozenset)
        ) as url:
            reached = await ask(url, [Target("x", "127.1", TargetKind.HTTP, "127.1", (port,))])
    assert reached.refused == () and accepted
