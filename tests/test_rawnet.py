"""Tests for probe.rawnet, the raw-packet evidence: TTL / IP ID of injected DNS answers and TCP
resets, and the TTL-limited probe that locates the interfering hop.

Root tests build their own three namespaces (names `crn` + random hex), nothing in the root
namespace:

    client (eth0 10.201.1.2) == (lan 10.201.1.1) router (wan 10.201.2.1) == (eth0 10.201.2.2) server

The router forwards, REJECTs with a TCP reset any request to port 8080 carrying
`Host: blocked.example` (iptables, in the router namespace only) and runs a scapy injector that
answers DNS queries for blocked.example with a forged address, IP TTL 64. The server runs the
fake nameserver (the real answer for blocked.example 0.3 s late, so the forgery wins the race, as
on the field) and an HTTP server. The server's packets reach the client with TTL 63 (one router),
the router's own with 64. rawnet's functions run inside the client namespace (`ip netns exec`)
and print their details as JSON. The non-root tests force the capability off.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import select
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.message
import pytest

from probe import rawnet
from probe.rawnet import NEEDS_RAW_NOTE, RawCapability, capability
from tests.servers.dns_server import Behaviour, FakeNameserver

REPO = Path(__file__).resolve().parent.parent

CLIENT_ADDRESS = "10.201.1.2"
ROUTER_CLIENT_SIDE = "10.201.1.1"
ROUTER_SERVER_SIDE = "10.201.2.1"
SERVER_ADDRESS = "10.201.2.2"
HTTP_PORT = 8080
REAL_ADDRESS = "192.0.2.80"
FORGED_ADDRESS = "10.10.34.35"
SERVER_TTL = 63  # Linux's 64, less the router's decrement
ROUTER_TTL = 64  # the router's own packets: the injected answer and the REJECT reset
BLOCKED_REQUEST = b"GET / HTTP/1.1\r\nHost: blocked.example\r\n\r\n"
ALLOWED_REQUEST = b"GET / HTTP/1.1\r\nHost: allowed.example\r\n\r\n"
CLIENT_TIMEOUT = 30.0


def _lab_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root: the test builds network namespaces and captures packets"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"needs {tool} (Debian package iproute2 / iptables)"
    if not rawnet.raw_capability().available:
        return f"cannot capture packets: {rawnet.raw_capability().note}"
    return None


LAB_UNAVAILABLE = _lab_unavailable()
needs_lab = pytest.mark.skipif(LAB_UNAVAILABLE is not None, reason=LAB_UNAVAILABLE or "")
CAPTURE = rawnet.raw_capability()
needs_capture = pytest.mark.skipif(not CAPTURE.available, reason=CAPTURE.note or "")


# -- the topology --------------------------------------------------------------------------------

SERVER_SCRIPT = r"""
import asyncio, json, sys
from tests.servers.dns_server import Behaviour, FakeNameserver

address, http_port, real = sys.argv[1], int(sys.argv[2]), sys.argv[3]


async def http(reader, writer):
    try:
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
        pass
    finally:
        writer.close()


async def main():
    zone = {
        "blocked.example": Behaviour.answer(a=[real], delay=0.3),
        "allowed.example": Behaviour.answer(a=[real]),
    }
    async with FakeNameserver(zone, host=address) as nameserver:
        server = await asyncio.start_server(http, address, http_port)
        async with server:
            print(json.dumps({"dns_port": nameserver.port}), flush=True)
            await asyncio.to_thread(sys.stdin.read)  # until the test closes stdin


asyncio.run(main())
"""

# An on-path injector: it reads queries on the router's client-facing link (before the router's
# TTL check, as a tap would) and answers those for the blocked name itself, from the server's
# address, with the router's TTL. A Python filter, not BPF: libpcap may be missing.
INJECTOR_SCRIPT = r"""
import sys
from scapy.layers.dns import DNS, DNSRR
from scapy.layers.inet import IP, UDP
from scapy.sendrecv import AsyncSniffer
from scapy.supersocket import L3RawSocket

server, forged, name, iface = sys.argv[1:5]
out = L3RawSocket()


def forge(packet):
    query = DNS(bytes(packet[UDP].payload))
    if query.qr or not query.qd or query.qd[0].qname.decode().rstrip(".") != name:
        return
    answer = DNSRR(rrname=query.qd[0].qname, type="A", ttl=60, rdata=forged)
    out.send(
        IP(src=packet[IP].dst, dst=packet[IP].src, ttl=64)
        / UDP(sport=packet[UDP].dport, dport=packet[UDP].sport)
        / DNS(id=query.id, qr=1, aa=1, rd=query.rd, ra=1, qd=query.qd, an=answer)
    )


sniffer = AsyncSniffer(
    iface=iface,
    lfilter=lambda p: p.haslayer(UDP) and p[IP].dst == server,
    prn=forge,
    store=False,
    started_callback=lambda: print("ready", flush=True),
)
sniffer.start()
sys.stdin.read()  # until the test closes stdin
sniffer.stop()
out.close()
"""


def _run(argv: list[str], *, timeout: float = 15.0) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    return done


def _first_line(process: subprocess.Popen[str], what: str, timeout: float = 15.0) -> str:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    line = process.stdout.readline() if ready else ""
    if not line:
        process.kill()
        _, stderr = process.communicate(timeout=5)
        raise RuntimeError(f"the {what} did not start: {stderr.strip()[-2000:]}")
    return line


@dataclass(frozen=True, slots=True)
class Topology:
    client: str
    router: str
    server: str
    dns_port: int

    def in_client(self, call: str) -> dict[str, Any]:
        """Run `await <call>` (an expression over `rawnet`) in the client namespace; its JSON."""
        code = (
            "import asyncio, json\nfrom probe import rawnet\n"
            f"print(json.dumps(asyncio.run({call})))\n"
        )
        done = subprocess.run(
            ["ip", "netns", "exec", self.client, sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=CLIENT_TIMEOUT,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            check=False,
        )
        assert done.returncode == 0, done.stderr
        details: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        # Whatever was seen, the probe's own address is never part of the evidence.
        assert CLIENT_ADDRESS not in json.dumps(details)
        return details

    def probe_cli(self, *args: str, home: Path) -> subprocess.CompletedProcess[str]:
        """`probe ARGS` (the real CLI, a fresh user at `home`) in the client namespace."""
        env = {**os.environ, "PYTHONPATH": str(REPO), "HOME": str(home), "COLUMNS": "200"}
        for variable in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_DATA_HOME"):
            env.pop(variable, None)
        return subprocess.run(
            ["ip", "netns", "exec", self.client, sys.executable, "-m", "probe", *args],
            capture_output=True,
            text=True,
            timeout=CLIENT_TIMEOUT,
            cwd=REPO,
            env=env,
            check=False,
        )


def _build(client: str, router: str, server: str) -> None:
    for name in (client, router, server):
        _run(["ip", "netns", "add", name])
    # Links are created inside a test namespace with the peer placed straight into another one,
    # so nothing ever appears in the root namespace.
    batches = {
        client: [
            "link set lo up",
            f"link add eth0 type veth peer name lan netns {router}",
            f"addr add {CLIENT_ADDRESS}/24 dev eth0",
            "link set eth0 up",
            f"route add default via {ROUTER_CLIENT_SIDE}",
        ],
        router: [
            "link set lo up",
            f"link add wan type veth peer name eth0 netns {server}",
            f"addr add {ROUTER_CLIENT_SIDE}/24 dev lan",
            f"addr add {ROUTER_SERVER_SIDE}/24 dev wan",
            "link set lan up",
            "link set wan up",
        ],
        server: [
            "link set lo up",
            f"addr add {SERVER_ADDRESS}/24 dev eth0",
            "link set eth0 up",
            f"route add default via {ROUTER_SERVER_SIDE}",
        ],
    }
    for name, commands in batches.items():
        done = subprocess.run(
            ["ip", "-n", name, "-batch", "-"],
            input="\n".join(commands) + "\n",
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"ip -n {name} -batch failed: {done.stderr.strip()}")
    in_router = ["ip", "netns", "exec", router]
    # Forwarding, and no ICMP rate limit: the TTL-limited probes draw one time-exceeded per try.
    _run([*in_router, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.icmp_ratelimit=0"])
    _run(
        [
            *in_router,
            "iptables",
            "-A",
            "FORWARD",
            "-p",
            "tcp",
            "--dport",
            str(HTTP_PORT),
            "-m",
            "string",
            "--string",
            "Host: blocked.example",
            "--algo",
            "bm",
            "-j",
            "REJECT",
            "--reject-with",
            "tcp-reset",
        ]
    )


def _stop(process: subprocess.Popen[str]) -> None:
    """End a process this module started, by its PID: close its stdin, then kill if needed."""
    with contextlib.suppress(OSError):
        if process.stdin is not None:
            process.stdin.close()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


@pytest.fixture(scope="module")
def topology() -> Iterator[Topology]:
    if LAB_UNAVAILABLE is not None:
        pytest.skip(LAB_UNAVAILABLE)
    prefix = "crn" + secrets.token_hex(3)
    client, router, server = f"{prefix}-client", f"{prefix}-router", f"{prefix}-server"
    processes: list[subprocess.Popen[str]] = []
    try:
        _build(client, router, server)
        env = {**os.environ, "PYTHONPATH": str(REPO)}

        def start(namespace: str, script: str, *args: str) -> subprocess.Popen[str]:
            process = subprocess.Popen(
                ["ip", "netns", "exec", namespace, sys.executable, "-c", script, *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=REPO,
                env=env,
            )
            processes.append(process)
            return process

        servers = start(server, SERVER_SCRIPT, SERVER_ADDRESS, str(HTTP_PORT), REAL_ADDRESS)
        injector = start(
            router, INJECTOR_SCRIPT, SERVER_ADDRESS, FORGED_ADDRESS, "blocked.example", "lan"
        )
        dns_port = int(json.loads(_first_line(servers, "servers"))["dns_port"])
        assert _first_line(injector, "injector").strip() == "ready"
        yield Topology(client, router, server, dns_port)
    finally:
        for process in processes:
            _stop(process)
        for name in (client, router, server):
            # Anything still inside a namespace of ours was started by this module: end it by
            # PID, then delete the namespace.
            pids = subprocess.run(
                ["ip", "netns", "pids", name], capture_output=True, text=True, check=False
            ).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), 9)
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


# -- DNS injection -------------------------------------------------------------------------------


@needs_lab
@pytest.mark.lab
def test_injected_dns_answer_arrives_first_with_the_routers_ttl(topology: Topology) -> None:
    details = topology.in_client(
        f"rawnet.dns_packet_evidence({SERVER_ADDRESS!r}, {topology.dns_port}, "
        "'blocked.example', 2.0, 0.6)"
    )
    assert details["available"] is True
    assert details["failure"] is None
    first, second = details["responses"]
    assert (first["addresses"], first["ip_ttl"]) == ([FORGED_ADDRESS], ROUTER_TTL)
    assert (second["addresses"], second["ip_ttl"]) == ([REAL_ADDRESS], SERVER_TTL)
    assert first["injected_suspected"] is True
    assert second["injected_suspected"] is False
    assert details["suspected_injected"] == [1]
    assert details["injection_suspected"] is True
    assert details["reference_ttl"] == SERVER_TTL
    assert [r["hops_from_ttl"] for r in details["responses"]] == [1, 2]
    assert all(isinstance(r["ip_id"], int) and "df" in r for r in details["responses"])
    assert details["note"].startswith("2 responses; response 1 (IP TTL 64) unlike")


@needs_lab
@pytest.mark.lab
def test_uncensored_dns_answer_is_not_flagged(topology: Topology) -> None:
    details = topology.in_client(
        f"rawnet.dns_packet_evidence({SERVER_ADDRESS!r}, {topology.dns_port}, "
        "'allowed.example', 2.0, 0.4)"
    )
    [only] = details["responses"]
    assert (only["addresses"], only["ip_ttl"], only["rcode"]) == (
        [REAL_ADDRESS],
        SERVER_TTL,
        "NOERROR",
    )
    assert only["udp_checksum_present"] is True
    assert details["injection_suspected"] is False
    assert "interface" not in details  # wlx<MAC> names embed the MAC address


# -- TCP resets ----------------------------------------------------------------------------------


@needs_lab
@pytest.mark.lab
def test_router_reset_carries_another_ttl_than_the_syn_ack(topology: Topology) -> None:
    details = topology.in_client(
        f"rawnet.tcp_reset_evidence({SERVER_ADDRESS!r}, {HTTP_PORT}, {BLOCKED_REQUEST!r}, 2.0)"
    )
    assert details["connect_failure"] is None
    assert details["read_failure"] == "connection_reset"
    assert details["syn_ack_ttl"] == SERVER_TTL
    assert details["reset_ttls"] == [ROUTER_TTL]
    [reset] = [s for s in details["segments"] if "R" in s["flags"]]
    assert reset["ttl_differs_from_syn_ack"] is True
    assert details["injection_suspected"] is True
    assert "middlebox" in details["note"]


@needs_lab
@pytest.mark.lab
def test_allowed_request_gets_the_servers_reply_and_no_reset(topology: Topology) -> None:
    details = topology.in_client(
        f"rawnet.tcp_reset_evidence({SERVER_ADDRESS!r}, {HTTP_PORT}, {ALLOWED_REQUEST!r}, 2.0)"
    )
    assert (details["connect_failure"], details["read_failure"]) == (None, None)
    assert details["received_bytes"] > 0
    assert details["reset_ttls"] == []
    assert details["injection_suspected"] is False
    assert {s["ip_ttl"] for s in details["segments"]} == {SERVER_TTL}


# -- locating the interference -------------------------------------------------------------------


@needs_lab
@pytest.mark.lab
def test_ttl_limited_request_finds_the_resetting_router(topology: Topology) -> None:
    details = topology.in_client(
        f"rawnet.locate_interference({SERVER_ADDRESS!r}, {HTTP_PORT}, {BLOCKED_REQUEST!r}, 5)"
    )
    # A Linux router answers TTL 1 with time-exceeded before its FORWARD chain runs, so its
    # iptables reset first shows at TTL 2: the reset is injected between hop 1 and the server.
    assert details["interference_hop"] == 2
    first, second = details["hops"]
    assert first["icmp_time_exceeded_from"] == ROUTER_CLIENT_SIDE
    assert first["reset"] is False
    assert second["reset"] is True and second["injected"] is True
    assert second["reset_ip_ttls"] == [ROUTER_TTL]
    assert second["syn_ack_ip_ttl"] == SERVER_TTL
    assert details["note"].startswith("interference starts at hop 2")


@needs_lab
@pytest.mark.lab
def test_ttl_limited_dns_query_finds_the_injector_at_hop_1(topology: Topology) -> None:
    query = dns.message.make_query("blocked.example", "A").to_wire()
    details = topology.in_client(
        f"rawnet.locate_interference({SERVER_ADDRESS!r}, {topology.dns_port}, {query!r}, 5, "
        "protocol='udp')"
    )
    # The tap answers the query that expires at its own hop: time-exceeded and forgery together.
    assert details["interference_hop"] == 1
    [hop] = details["hops"]
    assert hop["icmp_time_exceeded_from"] == ROUTER_CLIENT_SIDE
    assert [answer["addresses"] for answer in hop["answers"]] == [[FORGED_ADDRESS]]
    assert hop["injected"] is True


@needs_lab
@pytest.mark.lab
def test_ttl_limited_harmless_request_reaches_the_server_at_hop_2(topology: Topology) -> None:
    details = topology.in_client(
        f"rawnet.locate_interference({SERVER_ADDRESS!r}, {HTTP_PORT}, {ALLOWED_REQUEST!r}, 5)"
    )
    assert details["interference_hop"] is None
    assert details["server_hop"] == 2
    assert details["hops"][0]["icmp_time_exceeded_from"] == ROUTER_CLIENT_SIDE
    assert details["hops"][1]["reached_server"] is True
    assert details["note"] == "no interference: the server answered at hop 2"


@needs_lab
@pytest.mark.lab
def test_probe_locate_names_the_hop_that_resets_a_blocked_host(
    topology: Topology, tmp_path: Path
) -> None:
    done = topology.probe_cli(
        "locate",
        SERVER_ADDRESS,
        "--host",
        "blocked.example",
        "--port",
        str(HTTP_PORT),
        "--max-hops",
        "5",
        "--i-understand-the-risks",
        home=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert f"interference starts at hop 2, after hop 1 ({ROUTER_CLIENT_SIDE})" in done.stdout
    assert f"reset (IP TTL [{ROUTER_TTL}], SYN-ACK {SERVER_TTL})" in done.stdout


@needs_lab
@pytest.mark.lab
def test_probe_locate_json_finds_the_dns_injector_at_hop_1(
    topology: Topology, tmp_path: Path
) -> None:
    done = topology.probe_cli(
        "locate",
        SERVER_ADDRESS,
        "--dns",
        "blocked.example",
        "--port",
        str(topology.dns_port),
        "--max-hops",
        "5",
        "--json",
        "--i-understand-the-risks",
        home=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    details = json.loads(done.stdout)
    assert details["interference_hop"] == 1
    assert [a["addresses"] for a in details["hops"][0]["answers"]] == [[FORGED_ADDRESS]]
    assert CLIENT_ADDRESS not in done.stdout


# -- on loopback, in this process ----------------------------------------------------------------


@needs_capture
async def test_two_answers_from_the_server_itself_are_not_flagged_by_ttl() -> None:
    # A server that answers twice (both from the same stack) is not injection by TTL evidence:
    # the rule is the TTL, not the count of answers.
    zone = {"twice.example": Behaviour.duplicate(a=["192.0.2.9"], second_delay=0.05)}
    async with FakeNameserver(zone) as nameserver:
        details = await rawnet.dns_packet_evidence(
            "127.0.0.1", nameserver.port, "twice.example", 2.0, 0.3
        )
    assert [r["addresses"] for r in details["responses"]] == [["192.0.2.9"], ["192.0.2.9"]]
    assert details["injection_suspected"] is False
    assert "interface" not in details  # wlx<MAC> names embed the MAC address


def _sniffer_threads() -> list[str]:
    return [thread.name for thread in threading.enumerate() if thread.name == "AsyncSniffer"]


@needs_capture
async def test_silent_resolver_times_out_and_leaves_no_sniffer_running() -> None:
    zone = {"silent.example": Behaviour.drop()}
    async with FakeNameserver(zone) as nameserver:
        details = await rawnet.dns_packet_evidence(
            "127.0.0.1", nameserver.port, "silent.example", 0.3, 0.2
        )
    assert details["failure"] == "generic_timeout_error"
    assert details["responses"] == []
    assert details["note"] == "no response to the query"
    assert _sniffer_threads() == []


@needs_capture
async def test_cancelled_capture_leaves_no_sniffer_running() -> None:
    zone = {"silent.example": Behaviour.drop()}
    async with FakeNameserver(zone) as nameserver:
        task = asyncio.create_task(
            rawnet.dns_packet_evidence("127.0.0.1", nameserver.port, "silent.example", 30.0, 1.0)
        )
        for _ in range(300):  # until the capture has started (a loaded machine takes longer)
            if _sniffer_threads():
                break
            await asyncio.sleep(0.05)
        assert _sniffer_threads() == ["AsyncSniffer"]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert _sniffer_threads() == []


@needs_capture
def test_capture_is_available_with_cap_net_raw() -> None:
    assert rawnet.raw_capability() == RawCapability(True)


# -- without the capability ----------------------------------------------------------------------


@pytest.fixture
def no_capture(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process as an unprivileged user sees it: no CAP_NET_RAW among its capabilities."""
    monkeypatch.setattr(capability, "_effective_capabilities", lambda: 0)


@pytest.mark.usefixtures("no_capture")
def test_without_cap_net_raw_the_capability_says_how_to_get_it() -> None:
    capability = rawnet.raw_capability()
    assert capability == RawCapability(False, NEEDS_RAW_NOTE)
    assert "root or CAP_NET_RAW" in NEEDS_RAW_NOTE


@pytest.mark.usefixtures("no_capture")
async def test_without_cap_net_raw_every_function_returns_unavailable() -> None:
    async with asyncio.timeout(5):
        results = [
            await rawnet.dns_packet_evidence("127.0.0.1", 53, "blocked.example", 1.0, 0.2),
            await rawnet.tcp_reset_evidence("127.0.0.1", 443, b"hello", 1.0),
            await rawnet.locate_interference("127.0.0.1", 443, b"hello", 3),
        ]
    for details in results:
        assert details["available"] is False
        assert details["note"] == NEEDS_RAW_NOTE
    assert [d["evidence"] for d in results] == ["dns_packets", "tcp_packets", "ttl_limited_probe"]


async def test_ipv6_targets_are_reported_unsupported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capability, "raw_capability", lambda: RawCapability(True))
    details = await rawnet.tcp_reset_evidence("::1", 443, None, 1.0)
    assert details["available"] is False
    assert "IPv4 only" in details["note"]


def test_importing_rawnet_and_the_cli_loads_no_scapy() -> None:
    # scapy takes most of a second to import: `probe run` must not pay for it before a capture.
    code = (
        "import sys\nimport probe.rawnet, probe.cli.app, probe.runner\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'scapy'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


# -- no interface name or MAC address in what is stored -------------------------------------------

WIFI_NAME = "wlx00c0ca9b3e7f"  # a USB Wi-Fi adapter's name under systemd: "wlx" + its MAC


@needs_capture
async def test_a_capture_failing_on_a_mac_named_interface_stores_neither_name_nor_mac(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from probe.rawnet import capture, evidence

    monkeypatch.setattr(evidence, "route_interface", lambda _s, _address: WIFI_NAME)
    monkeypatch.setattr(capture, "local_interface_names", lambda: ("lo", WIFI_NAME))
    zone = {"x.example": Behaviour.drop()}
    async with FakeNameserver(zone) as nameserver:
        details = await rawnet.dns_packet_evidence(
            "127.0.0.1", nameserver.port, "x.example", 0.3, 0.2
        )
    stored = json.dumps(details)
    assert details["available"] is False
    assert details["note"].startswith("packet capture failed: ")
    assert "<interface>" in details["note"], "the failure named the interface (scrubbed)"
    assert WIFI_NAME not in stored and "00c0ca9b3e7f" not in stored.lower()


@pytest.mark.parametrize(
    ("note", "scrubbed"),
    [
        (f"{WIFI_NAME}: No such device", "<interface>: No such device"),
        ("enx0050b6a1c2d3 is down", "<interface> is down"),
        ("hwaddr 00:C0:CA:9B:3E:7F on eth1", "hwaddr <mac> on <interface>"),
        ("hwaddr 00-c0-ca-9b-3e-7f", "hwaddr <mac>"),
        ("cisco form 00c0.ca9b.3e7f", "cisco form <mac>"),
    ],
)
def test_interface_names_and_mac_addresses_are_scrubbed_from_capture_notes(
    note: str, scrubbed: str
) -> None:
    from probe.rawnet.capture import without_interfaces

    assert without_interfaces(note, names=("lo", "eth1", WIFI_NAME)) == scrubbed


def test_notes_without_an_interface_or_mac_are_left_as_they_are() -> None:
    # The negative control: addresses, ports, timestamps and words that contain a name survive.
    from probe.rawnet.capture import without_interfaces

    note = (
        "no reply from 2001:db8::1 or 10.0.0.1:443 at 12:30:45; eth10 and lookups via "
        "slow.example failed (eth1x, xeth1, 0050b6a1c2d3e4)"
    )
    assert without_interfaces(note, names=("lo", "eth1")) == note
