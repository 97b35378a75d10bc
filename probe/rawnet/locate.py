"""Where the interference sits: the triggering payload sent with IP TTL 1, 2, ... (a TTL-limited
probe), the ICMP time-exceeded of each hop and the first hop at which a reset or an injected
answer comes back ("interference starts at hop N").

One hop loop serves both transports: a _HopTransport says how the trigger leaves with a limited
TTL (TCP: a fresh connection made with the normal TTL, then the payload; UDP: a DNS query on a
fresh socket), what counts as a reply and what the hop's details hold; _probe_hop does the
waiting that is the same for both.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Literal, Protocol

from probe.checks import format_endpoint
from probe.failures import classify
from probe.rawnet.capability import precheck
from probe.rawnet.capture import (
    Capture,
    CaptureError,
    route_interface,
    scapy,
    unavailable_capture,
)
from probe.rawnet.headers import Details, dns_summary, ip_fields

# How long to wait after an ICMP time-exceeded for an injected reply: an on-path tap answers the
# same packet that expires at its hop.
HOP_GRACE_SECONDS = 0.3
ICMP_TIME_EXCEEDED = 11
SEQ_SPACE = 1 << 32

# What one TTL of the probe found: interference, the server itself, a failure that ends the
# probe, or nothing yet (try the next TTL).
Outcome = Literal["interference", "server", "stop", "next"]


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
    unavailable = precheck(address)
    if unavailable is not None:
        return details | unavailable
    s = await asyncio.to_thread(scapy)
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
        iface = await asyncio.to_thread(route_interface, s, address)
        async with Capture(s, iface, bpf, accept) as capture:
            transport: _HopTransport = (
                _TcpHops(s, capture, address, port, payload, connect_timeout)
                if protocol == "tcp"
                else _UdpHops(s, capture, address, port, payload)
            )
            for ttl in range(1, max_hops + 1):
                hop, outcome = await _probe_hop(s, capture, transport, ttl, hop_timeout)
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
    except (CaptureError, s.Scapy_Exception) as exc:
        return details | unavailable_capture(exc)
    # No interface name: a USB Wi-Fi adapter's (wlx<MAC>) embeds the volunteer's MAC address.
    return details | {
        "bpf": capture.bpf_used,
        "capture_drops": capture.drops,
        "hops": hops,
        "interference_hop": interference_hop,
        "server_hop": server_hop,
        "failure": stopped,
        "note": _locate_note(hops, interference_hop, server_hop, stopped, max_hops),
    }


class _HopTransport(Protocol):
    """What differs between the TCP and the UDP probe of one TTL; _probe_hop does the rest."""

    # The transport header an ICMP error quotes (scapy's TCPerror or UDPerror).
    error_layer: Any

    def open(self) -> socket.socket:
        """A fresh socket for one TTL."""
        ...

    async def send(self, sock: socket.socket, ttl: int) -> _Hop | Details:
        """Send the trigger with IP TTL `ttl`: the hop being measured, or the hop's details
        when the trigger could not be sent (that ends the probe)."""
        ...

    def replied(self, hop: _Hop) -> bool:
        """A reply (reset, answer, or the server's own data) came back for this hop."""
        ...

    def settled(self, hop: _Hop) -> bool:
        """Nothing more to wait for at this hop (`hop.icmp_from` is up to date)."""
        ...

    def result(self, hop: _Hop) -> tuple[Details, Outcome]:
        """The hop's details and what it means for the probe."""
        ...

    def close(self, sock: socket.socket) -> None:
        """Close the hop's socket."""
        ...


async def _probe_hop(
    s: SimpleNamespace, capture: Capture, transport: _HopTransport, ttl: int, hop_timeout: float
) -> tuple[Details, Outcome]:
    """One TTL of the probe: send the trigger, wait up to `hop_timeout` for a reply or an ICMP
    time-exceeded, then a grace period for the other half of an on-path injector's pair (it
    answers the very packet that expires at its hop)."""
    sock = transport.open()
    try:
        sent = await transport.send(sock, ttl)
        if not isinstance(sent, _Hop):
            return sent, "stop"
        hop = sent

        def icmp_seen() -> bool:
            _icmp_hop(s, capture, hop, transport.error_layer)
            return hop.icmp_from is not None

        def settled() -> bool:
            icmp_seen()
            return transport.settled(hop)

        if await capture.wait(lambda: transport.replied(hop) or icmp_seen(), hop_timeout):
            await capture.wait(settled, HOP_GRACE_SECONDS)
        icmp_seen()
        return transport.result(hop)
    finally:
        transport.close(sock)


def _icmp_hop(s: SimpleNamespace, capture: Capture, hop: _Hop, error_layer: Any) -> None:
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


class _Hops:
    """What both transports keep: scapy, the capture, the endpoint and the trigger; a fresh
    non-blocking socket of `socket_type` per TTL, and the replies to a hop's local port."""

    socket_type: socket.SocketKind

    def __init__(
        self, s: SimpleNamespace, capture: Capture, address: str, port: int, payload: bytes
    ) -> None:
        self._s = s
        self._capture = capture
        self._address = address
        self._port = port
        self._payload = payload

    def open(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, self.socket_type)
        sock.setblocking(False)
        return sock

    def _replies(self, layer: Any, hop: _Hop) -> list[Any]:
        """The packets of `layer` (TCP, UDP) sent to the hop's local port, ICMP errors aside."""
        return [
            packet
            for _arrived, packet in self._capture.packets
            if packet.haslayer(layer)
            and not packet.haslayer(self._s.ICMP)
            and packet[layer].dport == hop.local_port
        ]


class _TcpHops(_Hops):
    """TCP: a connection made with the normal TTL, then the payload sent with the limited one. A
    reset is interference when the hop's ICMP time-exceeded also came back or its IP TTL differs
    from the SYN-ACK's; the server's data or its ACK of the whole payload means it was reached."""

    socket_type = socket.SOCK_STREAM

    def __init__(
        self,
        s: SimpleNamespace,
        capture: Capture,
        address: str,
        port: int,
        payload: bytes,
        connect_timeout: float,
    ) -> None:
        super().__init__(s, capture, address, port, payload)
        self._connect_timeout = connect_timeout
        self.error_layer = s.TCPerror

    async def send(self, sock: socket.socket, ttl: int) -> _Hop | Details:
        loop = asyncio.get_running_loop()
        try:
            sock.bind(("0.0.0.0", 0))
            hop = _Hop(ttl, int(sock.getsockname()[1]))
            async with asyncio.timeout(self._connect_timeout):
                await loop.sock_connect(sock, (self._address, self._port))
        except (OSError, TimeoutError) as exc:
            # The handshake itself failed: nothing to limit, the trigger cannot be tested.
            return {"ttl": ttl, "failure": classify(exc), "failed_operation": "connect"}
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
        try:
            sock.send(self._payload)
        except OSError as exc:
            return {"ttl": ttl, "failure": classify(exc), "failed_operation": "write"}
        return hop

    def _segments(self, hop: _Hop) -> list[Any]:
        return self._replies(self._s.TCP, hop)

    def _syn_ack(self, hop: _Hop) -> Any:
        tcp = self._s.TCP
        return next((p for p in self._segments(hop) if p[tcp].flags.S and p[tcp].flags.A), None)

    def _resets(self, hop: _Hop) -> list[Any]:
        return [p for p in self._segments(hop) if p[self._s.TCP].flags.R]

    def _reached(self, hop: _Hop) -> bool:
        # The server answered the payload, or acknowledged all of it.
        first = self._syn_ack(hop)
        end = (
            None
            if first is None
            else (int(first[self._s.TCP].ack) + len(self._payload)) % SEQ_SPACE
        )
        for packet in self._segments(hop):
            tcp = packet[self._s.TCP]
            if tcp.flags.R or tcp.flags.S:
                continue
            if len(bytes(tcp.payload)) > 0:
                return True
            if end is not None and tcp.flags.A and _after(int(tcp.ack), end):
                return True
        return False

    def replied(self, hop: _Hop) -> bool:
        return bool(self._resets(hop)) or self._reached(hop)

    def settled(self, hop: _Hop) -> bool:
        # After an ICMP time-exceeded, wait for the reset (or the server) it may come with.
        return self.replied(hop)

    def result(self, hop: _Hop) -> tuple[Details, Outcome]:
        first = self._syn_ack(hop)
        server_ttl = None if first is None else int(first[self._s.IP].ttl)
        reset_list = self._resets(hop)
        reset_ttls = [int(p[self._s.IP].ttl) for p in reset_list]
        injected = bool(reset_list) and (
            hop.icmp_from is not None or any(t != server_ttl for t in reset_ttls)
        )
        details: Details = {
            "ttl": hop.ttl,
            "icmp_time_exceeded_from": hop.icmp_from,
            "reset": bool(reset_list),
            "reset_ip_ttls": reset_ttls,
            "syn_ack_ip_ttl": server_ttl,
            "reached_server": self._reached(hop),
        }
        if reset_list:
            details["injected"] = injected
            return details, "interference" if injected else "server"
        return details, "server" if details["reached_server"] else "next"

    def close(self, sock: socket.socket) -> None:
        # Close abortively with the normal TTL so that the server (not a hop) sees the end.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 64)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


class _UdpHops(_Hops):
    """UDP: the payload (a DNS query) sent with the limited TTL on a fresh socket. An answer at a
    hop that also sent an ICMP time-exceeded is injected; one without is the server's."""

    socket_type = socket.SOCK_DGRAM

    def __init__(
        self, s: SimpleNamespace, capture: Capture, address: str, port: int, payload: bytes
    ) -> None:
        super().__init__(s, capture, address, port, payload)
        self.error_layer = s.UDPerror

    async def send(self, sock: socket.socket, ttl: int) -> _Hop | Details:
        try:
            sock.connect((self._address, self._port))
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
            hop = _Hop(ttl, int(sock.getsockname()[1]))
            sock.send(self._payload)
        except OSError as exc:
            return {"ttl": ttl, "failure": classify(exc), "failed_operation": "write"}
        return hop

    def _answers(self, hop: _Hop) -> list[Any]:
        return self._replies(self._s.UDP, hop)

    def replied(self, hop: _Hop) -> bool:
        return bool(self._answers(hop))

    def settled(self, hop: _Hop) -> bool:
        # An answer and the ICMP time-exceeded of the same hop are the injector's pair: wait for
        # the other half of it.
        return self.replied(hop) and hop.icmp_from is not None

    def result(self, hop: _Hop) -> tuple[Details, Outcome]:
        s = self._s
        replies = self._answers(hop)
        details: Details = {
            "ttl": hop.ttl,
            "icmp_time_exceeded_from": hop.icmp_from,
            "answers": [
                {**ip_fields(p[s.IP]), **dns_summary(bytes(p[s.UDP].payload))} for p in replies
            ],
        }
        if replies:
            details["injected"] = hop.icmp_from is not None
            return details, "interference" if hop.icmp_from is not None else "server"
        return details, "next"

    def close(self, sock: socket.socket) -> None:
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
