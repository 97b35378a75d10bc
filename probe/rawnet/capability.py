"""Whether this process can capture packets (root or CAP_NET_RAW, Linux packet sockets) and
whether an address is one the captures support (IPv4): the check every capture makes first."""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from probe.rawnet.headers import Details

NEEDS_RAW_NOTE = "raw-packet evidence needs root or CAP_NET_RAW; run as root to record TTL/IP-ID"
IPV6_NOTE = "raw-packet evidence is recorded for IPv4 only; {address} is an IPv6 address"

# linux/capability.h
CAP_NET_RAW = 13


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


def precheck(address: str) -> Details | None:
    """The "not available" details when nothing can be captured for `address`, else None."""
    capability = raw_capability()
    if not capability.available:
        return {"available": False, "note": capability.note}
    if ipaddress.ip_address(address).version != 4:
        return {"available": False, "note": IPV6_NOTE.format(address=address)}
    return None
