"""What this machine shows of its own network, read without sending a packet (Linux): its
interfaces and their addresses, which of them are tunnel (VPN) devices, the routes carrying half
the Internet or more, the interfaces Internet traffic leaves from, and proxy variables."""

from __future__ import annotations

import fcntl
import ipaddress
import os
import re
import socket
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

# Proxy variables that HTTP clients (curl, requests, aiohttp with trust_env) obey.
PROXY_VARIABLES = (
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "ALL_PROXY",
    "https_proxy",
    "http_proxy",
    "all_proxy",
)

# Interface names VPN software gives its devices. "ppp" is left out on purpose: PPPoE (DSL, common
# in Iran) and mobile modems use it for the ordinary uplink.
_TUNNEL_NAME = re.compile(
    r"^(tun|tap|wg|utun|ipsec|vti|gpd|cscotun|nordlynx|proton|mullvad|tailscale|zt|ovpn)|vpn",
    re.IGNORECASE,
)
# Link types (ARPHRD_*, /sys/class/net/<if>/type) of IP-in-IP tunnels: TUNNEL (ipip), TUNNEL6,
# SIT (6in4, e.g. tunnel brokers), IPGRE, IP6GRE. ARPHRD_NONE is not enough on its own: LTE
# modems in raw-IP mode share it with tun and WireGuard, which are told apart below by their
# tun_flags file and their uevent DEVTYPE.
_TUNNEL_LINK_TYPES = frozenset({768, 769, 776, 778, 823})
_TUNNEL_DEVTYPES = frozenset({"wireguard", "ipip", "gre", "sit", "vti", "ip6tnl"})

# Routes at least this wide (prefix length <= 1) carry half the Internet or more: a default
# route, or the 0.0.0.0/1 + 128.0.0.0/1 pair OpenVPN's def1 installs to override it.
_WIDE_ROUTE_MAX_PREFIX = 1

# Destinations for the kernel's route lookup (connect() on a UDP socket sends no packet).
_ROUTE_PROBE_DESTINATIONS = (("8.8.8.8", socket.AF_INET), ("2001:4860:4860::8888", socket.AF_INET6))

_SIOCGIFADDR = 0x8915
_RTF_UP = 0x0001
_RTF_REJECT = 0x0200


@dataclass(frozen=True, slots=True)
class Interface:
    """A network interface, its addresses, and whether it is a tunnel (VPN) device."""

    name: str
    tunnel: bool
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LocalNetwork:
    """What this machine shows of its own network, read without sending a packet.

    `wide_routes`: (prefix, interface) of the routes carrying half the Internet or more.
    `egress`: the interfaces the kernel would send Internet traffic from (IPv4, IPv6), policy
    routing included. `routes_known`: whether the routing table could be read at all.
    """

    interfaces: tuple[Interface, ...] = ()
    wide_routes: tuple[tuple[str, str], ...] = ()
    egress: tuple[str, ...] = ()
    proxy_variables: tuple[str, ...] = ()
    routes_known: bool = False

    def interface(self, name: str) -> Interface | None:
        return next((i for i in self.interfaces if i.name == name), None)

    def is_tunnel(self, name: str) -> bool:
        found = self.interface(name)
        return found.tunnel if found else bool(_TUNNEL_NAME.search(name))


def read_local_network(
    env: Mapping[str, str] | None = None,
    *,
    proc: Path = Path("/proc"),
    sys_class_net: Path = Path("/sys/class/net"),
    ipv4_address: Callable[[str], str | None] | None = None,
    egress_sources: Callable[[], Iterable[str]] | None = None,
) -> LocalNetwork:
    """This machine's interfaces, wide routes, egress interfaces and proxy variables (Linux).

    The readers of kernel state can be swapped (tests): `proc` and `sys_class_net` directories,
    `ipv4_address(interface)` (default: SIOCGIFADDR) and `egress_sources()` (default: the
    kernel's route lookup for a public IPv4 and IPv6 destination).
    """
    ipv4_address = ipv4_address or _ipv4_address
    egress_sources = egress_sources or _egress_sources
    env = os.environ if env is None else env
    names = _interface_names(proc, sys_class_net)
    v6 = _ipv6_addresses(proc / "net" / "if_inet6")
    interfaces = tuple(
        Interface(
            name=name,
            tunnel=_is_tunnel_device(name, sys_class_net),
            addresses=tuple(a for a in (ipv4_address(name), *v6.get(name, ())) if a),
        )
        for name in names
    )
    wide: list[tuple[str, str]] = []
    known = False
    for reader in (_ipv4_wide_routes, _ipv6_wide_routes):
        with suppress(OSError, ValueError):
            wide.extend(reader(proc))
            known = True
    by_address = {a: i.name for i in interfaces for a in i.addresses}
    egress = tuple(dict.fromkeys(n for n in map(by_address.get, egress_sources()) if n))
    proxies = tuple(name for name in PROXY_VARIABLES if env.get(name, "").strip())
    return LocalNetwork(interfaces, tuple(wide), egress, proxies, known)


def _interface_names(proc: Path, sys_class_net: Path) -> list[str]:
    with suppress(OSError):
        return sorted(p.name for p in sys_class_net.iterdir())
    with suppress(OSError):
        lines = (proc / "net" / "dev").read_text().splitlines()[2:]
        return sorted(line.split(":", 1)[0].strip() for line in lines if ":" in line)
    return []


def _is_tunnel_device(name: str, sys_class_net: Path) -> bool:
    if _TUNNEL_NAME.search(name):
        return True
    device = sys_class_net / name
    if (device / "tun_flags").exists():  # tun and tap devices, whatever their name
        return True
    with suppress(OSError, ValueError):
        if int((device / "type").read_text().strip()) in _TUNNEL_LINK_TYPES:
            return True
    with suppress(OSError):
        for line in (device / "uevent").read_text().splitlines():
            if line.startswith("DEVTYPE=") and line.removeprefix("DEVTYPE=") in _TUNNEL_DEVTYPES:
                return True
    return False


def _ipv4_address(name: str) -> str | None:
    """The interface's IPv4 address (SIOCGIFADDR), or None when it has none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            request = struct.pack("256s", name.encode()[:15])
            answer = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, request)
        except OSError:
            return None
    return socket.inet_ntoa(answer[20:24])


def _ipv6_addresses(path: Path) -> dict[str, list[str]]:
    """Interface name -> IPv6 addresses, from /proc/net/if_inet6."""
    found: dict[str, list[str]] = {}
    with suppress(OSError):
        for line in path.read_text().splitlines():
            fields = line.split()
            if len(fields) == 6 and len(fields[0]) == 32:
                address = ipaddress.IPv6Address(bytes.fromhex(fields[0]))
                found.setdefault(fields[5], []).append(str(address))
    return found


def _ipv4_wide_routes(proc: Path) -> Iterator[tuple[str, str]]:
    lines = (proc / "net" / "route").read_text().splitlines()
    for line in lines[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        iface, destination, flags, mask = fields[0], fields[1], int(fields[3], 16), fields[7]
        # Destination and mask are the kernel's in-memory (little-endian) words, in hex.
        prefix = bin(int(mask, 16)).count("1")
        if flags & _RTF_UP and not flags & _RTF_REJECT and prefix <= _WIDE_ROUTE_MAX_PREFIX:
            network = socket.inet_ntoa(struct.pack("<I", int(destination, 16)))
            yield f"{network}/{prefix}", iface


def _ipv6_wide_routes(proc: Path) -> Iterator[tuple[str, str]]:
    for line in (proc / "net" / "ipv6_route").read_text().splitlines():
        fields = line.split()
        if len(fields) != 10:
            continue
        prefix, flags, iface = int(fields[1], 16), int(fields[8], 16), fields[9]
        if flags & _RTF_UP and not flags & _RTF_REJECT and prefix <= _WIDE_ROUTE_MAX_PREFIX:
            network = ipaddress.IPv6Address(bytes.fromhex(fields[0]))
            yield f"{network}/{prefix}", iface


def _egress_sources() -> Iterator[str]:
    """The source address the kernel picks for Internet traffic, per family. connect() on a UDP
    socket only runs the route lookup (policy rules included); no packet leaves."""
    for destination, family in _ROUTE_PROBE_DESTINATIONS:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            try:
                sock.connect((destination, 443))
                yield str(sock.getsockname()[0]).split("%", 1)[0]
            except OSError:
                continue
