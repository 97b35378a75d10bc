"""Raw-packet evidence: the IP TTL, IP ID and TCP/UDP header fields of the packets a measurement
received, captured beside the normal checks; the probe's only user of scapy (STYLE.md).

Injected packets are told from genuine ones by their headers: a forged DNS answer or TCP reset
sent by a middlebox nearer than the server usually arrives with an IP TTL (and often an IP ID)
unlike the server's own packets (REFERENCE.md, "DNS injection on path"). Three captures:

    dns_packet_evidence ..... one DNS A query; every response, with TTL / IP ID / DF / checksum,
                              responses whose TTL differs from the others flagged as injected
    tcp_reset_evidence ...... one TCP connection; every SYN-ACK and RST, RST TTL vs SYN-ACK TTL
    locate_interference ..... the trigger sent with IP TTL 1, 2, ...: ICMP time-exceeded hops and
                              the first hop at which a reset or injected answer comes back

Packets are sent by ordinary kernel sockets (no fight with the kernel's own TCP stack) and read by
a scapy AsyncSniffer on the route's interface, with a BPF filter when libpcap is installed and
the same test in Python always. Blocking scapy calls run in threads under explicit timeouts and
every sniffer is stopped, on cancellation too. Times (`received_ms`) are monotonic, taken when
the sniffer thread reads a packet. Capturing needs CAP_NET_RAW: without it every function returns
{"available": False, "note": ...} and does not raise. IPv4 only for now (likewise "available":
False with a note for IPv6 addresses). Network outcomes are data (OONI failure strings); only bad
arguments raise ValueError. Results never hold the probe's own address.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import os
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace, TracebackType
from typing import Any, Literal, Self

import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype

from probe.checks import format_endpoint
from probe.failures import classify
from probe.model import Failure

__all__ = [
    "NEEDS_RAW_NOTE",
    "RawCapability",
    "dns_packet_evidence",
    "locate_interference",
    "raw_capability",
    "tcp_reset_evidence",
]

NEEDS_RAW_NOTE = "raw-packet evidence needs root or CAP_NET_RAW; run as root to record TTL/IP-ID"
IPV6_NOTE = "raw-packet evidence is recorded for IPv4 only; {address} is an IPv6 address"

# linux/capability.h
CAP_NET_RAW = 13
# The initial TTLs operating systems and middleboxes use; the smallest one at or above an
# observed TTL is the likely initial value, which gives the sender's distance in hops.
INITIAL_TTLS = (32, 64, 128, 255)
# How long the sniffer may take to open its socket and start.
CAPTURE_START_TIMEOUT = 5.0
# How long a stopped sniffer thread may take to finish.
CAPTURE_STOP_TIMEOUT = 2.0
# After the socket saw its outcome, how long to keep capturing so that packets the kernel has
# already received (the RST that made recv fail) reach the sniffer thread too.
SETTLE_SECONDS = 0.2
# In a TTL-limited probe, how long to wait after an ICMP time-exceeded for an injected reply: an
# on-path tap answers the same packet that expires at its hop.
HOP_GRACE_SECONDS = 0.3
ICMP_TIME_EXCEEDED = 11
# Capture socket: linux/if_packet.h, asm-generic/socket.h (the socket module lacks them).
SOL_PACKET = 263
PACKET_STATISTICS = 6
SO_RCVBUFFORCE = 33
RECEIVE_BUFFER = 4 << 20
SEQ_SPACE = 1 << 32

Details = dict[str, Any]


@dataclass(frozen=True, slots=True)
class RawCapability:
    """Whether this process can capture packets; `note` tells a user why not."""

    available: bool
    note: str | None = None


def _effective_capabilities() -> int | None:
    """The CapEff bit mask of this process (Linux), or None when /proc cannot tell."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return None


def raw_capability() -> RawCapability:
    """Can this process open packet sockets (root or CAP_NET_RAW)? Opens and closes one to know."""
    capabilities = _effective_capabilities()
    # Root in a container can lack CAP_NET_RAW, so the capability bit decides when it is known.
    allowed = (
        bool(capabilities >> CAP_NET_RAW & 1) if capabilities is not None else os.geteuid() == 0
    )
    if not allowed:
        return RawCapability(False, NEEDS_RAW_NOTE)
    if not hasattr(socket, "AF_PACKET"):
        return RawCapability(False, "raw-packet evidence needs Linux packet sockets (AF_PACKET)")
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()
    except PermissionError:
        return RawCapability(False, NEEDS_RAW_NOTE)
    except OSError as exc:
        return RawCapability(False, f"cannot open a packet socket: {exc.strerror or exc}")
    return RawCapability(True)


def _precheck(address: str) -> Details | None:
    """The "not available" details when nothing can be captured for `address`, else None."""
    capability = raw_capability()
    if not capability.available:
        return {"available": False, "note": capability.note}
    if ipaddress.ip_address(address).version != 4:
        return {"available": False, "note": IPV6_NOTE.format(address=address)}
    return None


@functools.cache
def _scapy() -> SimpleNamespace:
    """scapy's pieces, imported on first use: importing scapy takes most of a second."""
    from scapy.arch.common import compile_filter
    from scapy.config import conf
    from scapy.error import Scapy_Exception
    from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror, UDPerror
    from scapy.sendrecv import AsyncSniffer

    return SimpleNamespace(
        conf=conf,
        compile_filter=compile_filter,
        Scapy_Exception=Scapy_Exception,
        AsyncSniffer=AsyncSniffer,
        IP=IP,
        TCP=TCP,
        UDP=UDP,
        ICMP=ICMP,
        IPerror=IPerror,
        TCPerror=TCPerror,
        UDPerror=UDPerror,
    )


class _CaptureError(Exception):
    """The packet capture could not be started."""


def _route_interface(s: SimpleNamespace, address: str) -> str:
    """The interface the kernel routes `address` through (routes re-read: they may have changed)."""
    s.conf.route.resync()
    iface, _source, _gateway = s.conf.route.route(address)
    return str(iface)


class _Capture:
    """An AsyncSniffer on one interface whose accepted packets are timestamped (monotonic) into
    `packets`, with a way for the event loop to wait until they satisfy a condition."""

    def __init__(
        self, s: SimpleNamespace, iface: str, bpf: str, accept: Callable[[Any], bool]
    ) -> None:
        self._s = s
        self.iface = iface
        self._bpf = bpf
        self._accept = accept
        self.bpf_used = False
        self.drops: int | None = None
        self.packets: list[tuple[float, Any]] = []
        self._loop = asyncio.get_running_loop()
        self._arrived = asyncio.Event()
        self._started = threading.Event()
        # _start and _stop run in worker threads; a cancelled start must not outlive its stop.
        self._lock = threading.Lock()
        self._closed = False
        self._socket: Any = None
        self._sniffer: Any = None

    def _on_packet(self, packet: Any) -> None:
        # Runs in the sniffer's thread: list.append is atomic, the event is set on the loop.
        self.packets.append((time.monotonic(), packet))
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self._loop.call_soon_threadsafe(self._arrived.set)

    def _filter(self) -> str | None:
        # compile_filter needs libpcap; without it the Python test in `accept` does the filtering.
        try:
            self._s.compile_filter(self._bpf, self.iface)
        except (ImportError, OSError, self._s.Scapy_Exception):
            return None
        return self._bpf

    def _start(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._open()

    def _open(self) -> None:
        bpf = self._filter()
        self.bpf_used = bpf is not None
        # scapy's L2Socket drops the interface's outgoing copies (on loopback each packet would
        # otherwise be read twice; only what arrives is evidence). Opened here rather than by the
        # sniffer so that its buffer can be enlarged (without BPF every packet of the interface
        # queues in it) and its drop counter read.
        self._socket = self._s.conf.L2socket(iface=self.iface, filter=bpf, promisc=False)
        with contextlib.suppress(OSError):
            self._socket.ins.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
        self._sniffer = self._s.AsyncSniffer(
            opened_socket=self._socket,
            lfilter=self._safe_accept,
            prn=self._on_packet,
            store=False,
            started_callback=self._started.set,
            quiet=True,
        )
        self._sniffer.start()
        deadline = time.monotonic() + CAPTURE_START_TIMEOUT
        while not self._started.wait(0.02):
            thread = self._sniffer.thread
            if self._sniffer.exception is not None or thread is None or not thread.is_alive():
                raise _CaptureError(f"the sniffer did not start: {self._sniffer.exception}")
            if time.monotonic() > deadline:
                raise _CaptureError("the sniffer did not start in time")

    def _safe_accept(self, packet: Any) -> bool:
        # A malformed packet must not kill the sniffer thread.
        try:
            return bool(self._accept(packet))
        except (AttributeError, IndexError, TypeError, ValueError, struct.error):
            return False

    def _stop(self) -> None:
        with self._lock:
            self._closed = True
            self._close()

    def _close(self) -> None:
        sniffer, self._sniffer = self._sniffer, None
        if sniffer is not None:
            try:
                if sniffer.running:
                    sniffer.stop(join=False)
            except self._s.Scapy_Exception:
                pass  # it had already stopped
            if sniffer.thread is not None:
                sniffer.thread.join(CAPTURE_STOP_TIMEOUT)
        capture_socket, self._socket = self._socket, None
        if capture_socket is not None:
            with contextlib.suppress(OSError):
                stats = capture_socket.ins.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
                self.drops = int(struct.unpack("II", stats)[1])
            capture_socket.close()

    async def __aenter__(self) -> Self:
        try:
            await asyncio.to_thread(self._start)
        except (OSError, self._s.Scapy_Exception, _CaptureError) as exc:
            await asyncio.to_thread(self._stop)
            raise _CaptureError(str(exc)) from exc
        except BaseException:
            # Cancelled: the worker thread may still be starting the sniffer; _stop waits for it.
            await asyncio.to_thread(self._stop)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self._stop)

    async def wait(self, done: Callable[[], bool], seconds: float) -> bool:
        """Wait up to `seconds` for `done()` to hold over the packets; return whether it does."""
        try:
            async with asyncio.timeout(max(seconds, 0.0)):
                while not done():
                    self._arrived.clear()
                    if done():
                        break
                    await self._arrived.wait()
        except TimeoutError:
            return done()
        return True


def _ip_fields(ip: Any) -> Details:
    ttl = int(ip.ttl)
    return {
        "ip_ttl": ttl,
        "ip_id": int(ip.id),
        "df": bool(int(ip.flags) & 0x2),
        "hops_from_ttl": _hops_from_ttl(ttl),
    }


def _hops_from_ttl(ttl: int) -> int:
    """The sender's distance in hops (1 = the next router), assuming a common initial TTL."""
    initial = next((value for value in INITIAL_TTLS if ttl <= value), 255)
    return initial - ttl + 1


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def _dns_summary(wire: bytes) -> Details:
    """Rcode and answers of a DNS message, or why it does not parse."""
    try:
        message = dns.message.from_wire(wire)
    except dns.exception.DNSException as exc:
        return {"rcode": None, "answers": [], "addresses": [], "parse_error": type(exc).__name__}
    answers: list[Details] = []
    addresses: list[str] = []
    for rrset in message.answer:
        for rdata in rrset:
            answers.append(
                {
                    "name": rrset.name.to_text(),
                    "type": dns.rdatatype.to_text(rrset.rdtype),
                    "ttl": rrset.ttl,
                    "data": rdata.to_text(),
                }
            )
            if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                addresses.append(rdata.to_text())
    return {"rcode": dns.rcode.to_text(message.rcode()), "answers": answers, "addresses": addresses}


def _reference_ttl(ttls: Sequence[int]) -> int:
    """The TTL taken to be the genuine sender's: the most common one, ties going to the latest
    arrival (an injector races the real answer and usually wins, so the real one comes last)."""
    counts = Counter(ttls)
    best = max(counts.values())
    return next(ttl for ttl in reversed(ttls) if counts[ttl] == best)


def _unavailable_capture(exc: BaseException) -> Details:
    return {"available": False, "note": f"packet capture failed: {exc}"}


# -- DNS -----------------------------------------------------------------------------------------


# `timeout` and `window` say how long the measurement listens, which is part of what it measures,
# not a budget the caller could impose from outside: ASYNC109's advice does not fit.
async def dns_packet_evidence(
    resolver_ip: str,
    port: int,
    qname: str,
    timeout: float,  # noqa: ASYNC109
    window: float,
) -> Details:
    """Send one DNS A query for `qname` to `resolver_ip`:`port` and record every response.

    Waits up to `timeout` seconds for the first response and `window` seconds more after it.
    Each response: arrival order and time, rcode and answers, IP TTL, IP ID, DF, whether the UDP
    checksum is present, and `injected_suspected` when its TTL differs from the reference TTL
    (the most common, ties to the last response's). `failure` is None when any response came.
    """
    details: Details = {
        "evidence": "dns_packets",
        "resolver": format_endpoint(resolver_ip, port),
        "qname": qname,
    }
    unavailable = _precheck(resolver_ip)
    if unavailable is not None:
        return details | unavailable
    s = await asyncio.to_thread(_scapy)
    query = dns.message.make_query(qname, "A")
    query_id = query.id
    id_bytes = query_id.to_bytes(2, "big")
    details |= {"available": True, "query_id": query_id, "timeout": timeout, "window": window}
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        try:
            # A connected UDP socket only fixes the peer; it also gives the local port to filter
            # on. It stays open through the window so that a second answer is not met by an ICMP
            # port-unreachable.
            sock.connect((resolver_ip, port))
        except OSError as exc:
            return details | {"failure": classify(exc), "responses": []}
        local_port = int(sock.getsockname()[1])

        def accept(packet: Any) -> bool:
            return bool(
                packet.haslayer(s.IP)
                and packet.haslayer(s.UDP)
                and packet[s.IP].src == resolver_ip
                and packet[s.UDP].sport == port
                and packet[s.UDP].dport == local_port
                and bytes(packet[s.UDP].payload)[:2] == id_bytes
            )

        bpf = (
            f"udp and src host {resolver_ip} and src port {port} and dst port {local_port} "
            f"and udp[8:2] = {query_id}"
        )
        failure: str | None = None
        try:
            iface = await asyncio.to_thread(_route_interface, s, resolver_ip)
            async with _Capture(s, iface, bpf, accept) as capture:
                sent = time.monotonic()
                try:
                    sock.send(query.to_wire())
                except OSError as exc:
                    failure = classify(exc)
                if failure is None and await capture.wait(lambda: bool(capture.packets), timeout):
                    # Keep listening for the window after the first response (Centinel's wait
                    # for a second answer on the same socket).
                    first_at = capture.packets[0][0]
                    await asyncio.sleep(max(first_at + window - time.monotonic(), 0.0))
        except (_CaptureError, OSError, s.Scapy_Exception) as exc:
            return details | _unavailable_capture(exc)
    finally:
        sock.close()
    responses = []
    for order, (arrived, packet) in enumerate(capture.packets, start=1):
        udp = packet[s.UDP]
        responses.append(
            {
                "order": order,
                "received_ms": _ms(arrived - sent),
                **_ip_fields(packet[s.IP]),
                "udp_checksum_present": int(udp.chksum) != 0,
                "length": len(bytes(udp.payload)),
                **_dns_summary(bytes(udp.payload)),
            }
        )
    ttls = [response["ip_ttl"] for response in responses]
    reference = _reference_ttl(ttls) if ttls else None
    suspects = [r["order"] for r in responses if reference is not None and r["ip_ttl"] != reference]
    for response in responses:
        response["injected_suspected"] = response["order"] in suspects
    if failure is None and not responses:
        failure = Failure.GENERIC_TIMEOUT_ERROR
    return details | {
        "interface": capture.iface,
        "bpf": capture.bpf_used,
        "capture_drops": capture.drops,
        "failure": failure,
        "responses": responses,
        "reference_ttl": reference,
        "suspected_injected": suspects,
        "injection_suspected": bool(suspects),
        "note": _dns_note(responses, reference, suspects),
    }


def _dns_note(responses: Sequence[Details], reference: int | None, suspects: Sequence[int]) -> str:
    if not responses:
        return "no response to the query"
    if len(responses) == 1:
        return f"one response (IP TTL {responses[0]['ip_ttl']})"
    if not suspects:
        return f"{len(responses)} responses, all with IP TTL {reference}: no TTL sign of injection"
    which = ", ".join(
        f"{r['order']} (IP TTL {r['ip_ttl']})" for r in responses if r["order"] in suspects
    )
    return (
        f"{len(responses)} responses; response {which} unlike the others' IP TTL {reference}: "
        "likely injected on the path"
    )


# -- TCP -----------------------------------------------------------------------------------------


def _tcp_segment(
    order: int, arrived: float, start: float, packet: Any, s: SimpleNamespace
) -> Details:
    tcp = packet[s.TCP]
    return {
        "order": order,
        "received_ms": _ms(arrived - start),
        "flags": str(tcp.flags),
        **_ip_fields(packet[s.IP]),
        "window": int(tcp.window),
        "seq": int(tcp.seq),
        "ack": int(tcp.ack),
        "payload_length": len(bytes(tcp.payload)),
    }


def _is_syn_ack(segment: Details) -> bool:
    return "S" in segment["flags"] and "A" in segment["flags"]


def _is_reset(segment: Details) -> bool:
    return "R" in segment["flags"]


async def tcp_reset_evidence(
    address: str,
    port: int,
    payload: bytes | None,
    timeout: float,  # noqa: ASYNC109 (as in dns_packet_evidence)
) -> Details:
    """Connect to `address`:`port` (and send `payload`), recording every segment the server's
    address sent back: flags, IP TTL, IP ID, DF, TCP window.

    Each RST is compared with the SYN-ACK: a RST whose TTL differs came from another distance
    than the server, i.e. from a middlebox (`injection_suspected`). `connect_failure` and
    `read_failure` are what the socket itself saw (OONI strings).
    """
    details: Details = {"evidence": "tcp_packets", "endpoint": format_endpoint(address, port)}
    unavailable = _precheck(address)
    if unavailable is not None:
        return details | unavailable
    s = await asyncio.to_thread(_scapy)
    details |= {"available": True, "timeout": timeout}
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    connect_failure: str | None = None
    read_failure: str | None = None
    received = 0
    try:
        sock.bind(("0.0.0.0", 0))
        local_port = int(sock.getsockname()[1])

        def accept(packet: Any) -> bool:
            return bool(
                packet.haslayer(s.IP)
                and packet.haslayer(s.TCP)
                and packet[s.IP].src == address
                and packet[s.TCP].sport == port
                and packet[s.TCP].dport == local_port
            )

        bpf = f"tcp and src host {address} and src port {port} and dst port {local_port}"
        try:
            iface = await asyncio.to_thread(_route_interface, s, address)
            async with _Capture(s, iface, bpf, accept) as capture:
                start = time.monotonic()
                try:
                    async with asyncio.timeout(timeout):
                        await loop.sock_connect(sock, (address, port))
                except (OSError, TimeoutError) as exc:
                    connect_failure = classify(exc)
                if connect_failure is None and payload:
                    try:
                        async with asyncio.timeout(timeout):
                            await loop.sock_sendall(sock, payload)
                            data = await loop.sock_recv(sock, 65536)
                        received = len(data)
                        if not data:
                            read_failure = Failure.EOF_ERROR
                    except (OSError, TimeoutError) as exc:
                        read_failure = classify(exc)

                def any_reset() -> bool:
                    return any("R" in str(packet[s.TCP].flags) for _at, packet in capture.packets)

                # Let the sniffer thread catch up with what the kernel already received.
                await capture.wait(any_reset, SETTLE_SECONDS)
        except (_CaptureError, s.Scapy_Exception) as exc:
            return details | _unavailable_capture(exc)
    except OSError as exc:
        return details | {"connect_failure": classify(exc), "segments": []}
    finally:
        sock.close()
    segments = [
        _tcp_segment(order, arrived, start, packet, s)
        for order, (arrived, packet) in enumerate(capture.packets, start=1)
    ]
    syn_ack = next((segment for segment in segments if _is_syn_ack(segment)), None)
    resets = [segment for segment in segments if _is_reset(segment)]
    for reset in resets:
        reset["ttl_differs_from_syn_ack"] = (
            None if syn_ack is None else reset["ip_ttl"] != syn_ack["ip_ttl"]
        )
    suspected = any(reset["ttl_differs_from_syn_ack"] for reset in resets)
    return details | {
        "interface": capture.iface,
        "bpf": capture.bpf_used,
        "capture_drops": capture.drops,
        "connect_failure": connect_failure,
        "read_failure": read_failure,
        "received_bytes": received,
        "segments": segments,
        "syn_ack_ttl": None if syn_ack is None else syn_ack["ip_ttl"],
        "reset_ttls": [reset["ip_ttl"] for reset in resets],
        "injection_suspected": suspected,
        "note": _tcp_note(syn_ack, resets),
    }


def _tcp_note(syn_ack: Details | None, resets: Sequence[Details]) -> str:
    if not resets:
        return "no reset received"
    ttls = ", ".join(str(reset["ip_ttl"]) for reset in resets)
    if syn_ack is None:
        return f"reset (IP TTL {ttls}) before any SYN-ACK: no server TTL to compare with"
    if any(reset["ttl_differs_from_syn_ack"] for reset in resets):
        return (
            f"reset with IP TTL {ttls} but the SYN-ACK had {syn_ack['ip_ttl']}: "
            "the reset likely came from a middlebox, not the server"
        )
    return f"reset with the SYN-ACK's IP TTL {syn_ack['ip_ttl']}: consistent with the server"


# -- TTL-limited probe ---------------------------------------------------------------------------


def _after(a: int, b: int) -> bool:
    """Sequence number `a` is at or after `b` (RFC 1982 serial arithmetic)."""
    return (a - b) % SEQ_SPACE < SEQ_SPACE // 2


@dataclass(slots=True)
class _Hop:
    """What came back for the trigger sent with IP TTL `ttl` (mutable while it is measured)."""

    ttl: int
    local_port: int
    icmp_from: str | None = None


async def locate_interference(
    address: str,
    port: int,
    payload: bytes,
    max_hops: int,
    *,
    protocol: Literal["tcp", "udp"] = "tcp",
    hop_timeout: float = 1.0,
    connect_timeout: float = 3.0,
) -> Details:
    """Send the triggering `payload` with IP TTL 1, 2, ... `max_hops` and say where the reset or
    injected answer first appears ("interference starts at hop N").

    tcp: for each TTL a fresh connection is made with the normal TTL, then the payload (a
    ClientHello with the blocked SNI, an HTTP request with the blocked Host) is sent with the
    limited TTL. A RST at a hop whose ICMP time-exceeded also came back, or whose IP TTL differs
    from the SYN-ACK's, is interference. udp: the payload (a DNS query) is sent on a fresh socket;
    an answer at a hop that also sent an ICMP time-exceeded is injected. The probe stops at the
    first interference or when the server itself answers (`server_hop`).
    """
    if not 1 <= max_hops <= 255:
        raise ValueError(f"max_hops must be from 1 to 255, not {max_hops}")
    if not payload:
        raise ValueError("locate_interference needs a triggering payload")
    if protocol not in ("tcp", "udp"):
        raise ValueError(f"protocol must be 'tcp' or 'udp', not {protocol!r}")
    details: Details = {
        "evidence": "ttl_limited_probe",
        "protocol": protocol,
        "endpoint": format_endpoint(address, port),
        "max_hops": max_hops,
    }
    unavailable = _precheck(address)
    if unavailable is not None:
        return details | unavailable
    s = await asyncio.to_thread(_scapy)
    details["available"] = True
    transport_layer, transport_error = (
        (s.TCP, s.TCPerror) if protocol == "tcp" else (s.UDP, s.UDPerror)
    )

    def accept(packet: Any) -> bool:
        if not packet.haslayer(s.IP):
            return False
        if packet.haslayer(s.ICMP) and packet[s.ICMP].type == ICMP_TIME_EXCEEDED:
            return bool(
                packet.haslayer(s.IPerror)
                and packet[s.IPerror].dst == address
                and packet.haslayer(transport_error)
                and packet[transport_error].dport == port
            )
        return bool(
            packet.haslayer(transport_layer)
            and packet[s.IP].src == address
            and packet[transport_layer].sport == port
        )

    bpf = f"({protocol} and src host {address} and src port {port}) or (icmp and icmp[0] = 11)"
    hops: list[Details] = []
    interference_hop: int | None = None
    server_hop: int | None = None
    stopped: str | None = None
    try:
        iface = await asyncio.to_thread(_route_interface, s, address)
        async with _Capture(s, iface, bpf, accept) as capture:
            probe_hop = _probe_tcp_hop if protocol == "tcp" else _probe_udp_hop
            for ttl in range(1, max_hops + 1):
                hop, outcome = await probe_hop(
                    s, capture, address, port, payload, ttl, hop_timeout, connect_timeout
                )
                hops.append(hop)
                if outcome == "interference":
                    interference_hop = ttl
                    break
                if outcome == "server":
                    server_hop = ttl
                    break
                if outcome == "stop":
                    stopped = hop.get("failure")
                    break
    except (_CaptureError, s.Scapy_Exception) as exc:
        return details | _unavailable_capture(exc)
    return details | {
        "interface": capture.iface,
        "bpf": capture.bpf_used,
        "capture_drops": capture.drops,
        "hops": hops,
        "interference_hop": interference_hop,
        "server_hop": server_hop,
        "failure": stopped,
        "note": _locate_note(hops, interference_hop, server_hop, stopped, max_hops),
    }


def _icmp_hop(s: SimpleNamespace, capture: _Capture, hop: _Hop, error_layer: Any) -> None:
    """Fill in the first ICMP time-exceeded quoting this hop's packet."""
    if hop.icmp_from is not None:
        return
    for _arrived, packet in capture.packets:
        if (
            packet.haslayer(s.ICMP)
            and packet[s.ICMP].type == ICMP_TIME_EXCEEDED
            and packet[error_layer].sport == hop.local_port
        ):
            hop.icmp_from = str(packet[s.IP].src)
            return


def _replies(s: SimpleNamespace, capture: _Capture, layer: Any, local_port: int) -> list[Any]:
    return [
        packet
        for _arrived, packet in capture.packets
        if packet.haslayer(layer)
        and not packet.haslayer(s.ICMP)
        and packet[layer].dport == local_port
    ]


async def _probe_tcp_hop(
    s: SimpleNamespace,
    capture: _Capture,
    address: str,
    port: int,
    payload: bytes,
    ttl: int,
    hop_timeout: float,
    connect_timeout: float,
) -> tuple[Details, str]:
    """One TTL of the TCP probe: the hop's details and "interference", "server", "stop" or
    "next"."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        try:
            sock.bind(("0.0.0.0", 0))
            hop = _Hop(ttl, int(sock.getsockname()[1]))
            async with asyncio.timeout(connect_timeout):
                await loop.sock_connect(sock, (address, port))
        except (OSError, TimeoutError) as exc:
            # The handshake itself failed: nothing to limit, the trigger cannot be tested.
            return {"ttl": ttl, "failure": classify(exc), "failed_operation": "connect"}, "stop"
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
        try:
            sock.send(payload)
        except OSError as exc:
            return {"ttl": ttl, "failure": classify(exc), "failed_operation": "write"}, "stop"

        def segments() -> list[Any]:
            return _replies(s, capture, s.TCP, hop.local_port)

        def syn_ack() -> Any:
            return next((p for p in segments() if p[s.TCP].flags.S and p[s.TCP].flags.A), None)

        def resets() -> list[Any]:
            return [p for p in segments() if p[s.TCP].flags.R]

        def reached() -> bool:
            # The server answered the payload, or acknowledged all of it.
            first = syn_ack()
            end = None if first is None else (int(first[s.TCP].ack) + len(payload)) % SEQ_SPACE
            for packet in segments():
                tcp = packet[s.TCP]
                if tcp.flags.R or tcp.flags.S:
                    continue
                if len(bytes(tcp.payload)) > 0:
                    return True
                if end is not None and tcp.flags.A and _after(int(tcp.ack), end):
                    return True
            return False

        def icmp_seen() -> bool:
            _icmp_hop(s, capture, hop, s.TCPerror)
            return hop.icmp_from is not None

        seen = await capture.wait(lambda: bool(resets()) or reached() or icmp_seen(), hop_timeout)
        if seen and not resets() and not reached():
            await capture.wait(lambda: bool(resets()) or reached(), HOP_GRACE_SECONDS)
        icmp_seen()
        first = syn_ack()
        server_ttl = None if first is None else int(first[s.IP].ttl)
        reset_list = resets()
        reset_ttls = [int(p[s.IP].ttl) for p in reset_list]
        injected = bool(reset_list) and (
            hop.icmp_from is not None or any(t != server_ttl for t in reset_ttls)
        )
        details: Details = {
            "ttl": ttl,
            "icmp_time_exceeded_from": hop.icmp_from,
            "reset": bool(reset_list),
            "reset_ip_ttls": reset_ttls,
            "syn_ack_ip_ttl": server_ttl,
            "reached_server": reached(),
        }
        if reset_list:
            details["injected"] = injected
            return details, "interference" if injected else "server"
        return details, "server" if details["reached_server"] else "next"
    finally:
        # Close abortively with the normal TTL so that the server (not a hop) sees the end.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 64)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


async def _probe_udp_hop(
    s: SimpleNamespace,
    capture: _Capture,
    address: str,
    port: int,
    payload: bytes,
    ttl: int,
    hop_timeout: float,
    connect_timeout: float,
) -> tuple[Details, str]:
    """One TTL of the UDP probe: the hop's details and "interference", "server", "stop" or
    "next"."""
    del connect_timeout  # UDP has no handshake
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        try:
            sock.connect((address, port))
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
            hop = _Hop(ttl, int(sock.getsockname()[1]))
            sock.send(payload)
        except OSError as exc:
            return {"ttl": ttl, "failure": classify(exc), "failed_operation": "write"}, "stop"

        def answers() -> list[Any]:
            return _replies(s, capture, s.UDP, hop.local_port)

        def icmp_seen() -> bool:
            _icmp_hop(s, capture, hop, s.UDPerror)
            return hop.icmp_from is not None

        if await capture.wait(lambda: bool(answers()) or icmp_seen(), hop_timeout):
            # An on-path injector answers the very packet that expires at its hop: wait a little
            # for the other half of that pair.
            await capture.wait(lambda: bool(answers()) and icmp_seen(), HOP_GRACE_SECONDS)
        icmp_seen()
        replies = answers()
        details: Details = {
            "ttl": ttl,
            "icmp_time_exceeded_from": hop.icmp_from,
            "answers": [
                {**_ip_fields(p[s.IP]), **_dns_summary(bytes(p[s.UDP].payload))} for p in replies
            ],
        }
        if replies:
            details["injected"] = hop.icmp_from is not None
            return details, "interference" if hop.icmp_from is not None else "server"
        return details, "next"
    finally:
        sock.close()


def _locate_note(
    hops: Sequence[Details],
    interference_hop: int | None,
    server_hop: int | None,
    stopped: str | None,
    max_hops: int,
) -> str:
    def router(ttl: int) -> str:
        for hop in hops:
            if hop["ttl"] == ttl and hop.get("icmp_time_exceeded_from"):
                return f" ({hop['icmp_time_exceeded_from']})"
        return ""

    if interference_hop is not None:
        before = (
            f", after hop {interference_hop - 1}{router(interference_hop - 1)}"
            if interference_hop > 1
            else ""
        )
        return f"interference starts at hop {interference_hop}{router(interference_hop)}{before}"
    if server_hop is not None:
        return f"no interference: the server answered at hop {server_hop}"
    if stopped is not None:
        return f"the probe stopped at hop {len(hops)}: {stopped}"
    return f"neither interference nor the server within {max_hops} hops"
