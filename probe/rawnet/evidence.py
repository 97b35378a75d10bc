"""The two packet-evidence captures run beside the normal checks: every response to one DNS
query (dns_packet_evidence) and every segment of one TCP connection (tcp_reset_evidence), with
the header fields that tell an injected answer or reset from the server's own.

A forged DNS answer or TCP reset sent by a middlebox nearer than the server usually arrives with
an IP TTL (and often an IP ID) unlike the server's own packets. Times (`received_ms`) are
monotonic, taken when the sniffer thread reads a packet.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import dns.message

from probe.checks import format_endpoint
from probe.failures import classify
from probe.model import Failure
from probe.rawnet.capability import precheck
from probe.rawnet.capture import (
    Capture,
    CaptureError,
    route_interface,
    scapy,
    unavailable_capture,
)
from probe.rawnet.headers import Details, dns_summary, ip_fields, ms, reference_ttl

# After the socket saw its outcome, how long to keep capturing so that packets the kernel has
# already received (the RST that made recv fail) reach the sniffer thread too.
SETTLE_SECONDS = 0.2

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
    unavailable = precheck(resolver_ip)
    if unavailable is not None:
        return details | unavailable
    s = await asyncio.to_thread(scapy)
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
            iface = await asyncio.to_thread(route_interface, s, resolver_ip)
            async with Capture(s, iface, bpf, accept) as capture:
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
        except (CaptureError, OSError, s.Scapy_Exception) as exc:
            return details | unavailable_capture(exc)
    finally:
        sock.close()
    responses = []
    for order, (arrived, packet) in enumerate(capture.packets, start=1):
        udp = packet[s.UDP]
        responses.append(
            {
                "order": order,
                "received_ms": ms(arrived - sent),
                **ip_fields(packet[s.IP]),
                "udp_checksum_present": int(udp.chksum) != 0,
                "length": len(bytes(udp.payload)),
                **dns_summary(bytes(udp.payload)),
            }
        )
    ttls = [response["ip_ttl"] for response in responses]
    reference = reference_ttl(ttls) if ttls else None
    suspects = [r["order"] for r in responses if reference is not None and r["ip_ttl"] != reference]
    for response in responses:
        response["injected_suspected"] = response["order"] in suspects
    if failure is None and not responses:
        failure = Failure.GENERIC_TIMEOUT_ERROR
    # No interface name: a USB Wi-Fi adapter's (wlx<MAC>) embeds the volunteer's MAC address.
    return details | {
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
        "received_ms": ms(arrived - start),
        "flags": str(tcp.flags),
        **ip_fields(packet[s.IP]),
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
    unavailable = precheck(address)
    if unavailable is not None:
        return details | unavailable
    s = await asyncio.to_thread(scapy)
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
            iface = await asyncio.to_thread(route_interface, s, address)
            async with Capture(s, iface, bpf, accept) as capture:
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
        except (CaptureError, s.Scapy_Exception) as exc:
            return details | unavailable_capture(exc)
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
    # No interface name: a USB Wi-Fi adapter's (wlx<MAC>) embeds the volunteer's MAC address.
    return details | {
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
