"""Network identity: which network (ASN, AS name, country) the probe and its resolver are in, and
whether the probe seems to run through a VPN or proxy.

Sources, best first: the control test helper's view of the client (it sees the address the probe's
traffic arrives from, and which resolver asks on its behalf), then an offline IP-to-ASN database in
MaxMind DB format that the user points at (GeoLite2-ASN / GeoLite2-Country, DB-IP's lite files in
the GeoLite2 layout, IPinfo's country_asn). With neither, every field stays None ("unknown"):
nothing is guessed. The probe's own addresses are collected for the Scrubber (probe.privacy) and
are never part of the NetworkInfo that is stored.

VPN/proxy awareness (REFERENCE.md: "VPNs (results over a VPN are not the local network's)"): a
run is flagged when a proxy variable is set, when Internet traffic leaves through a tunnel
interface (the default route, OpenVPN's 0.0.0.0/1 + 128.0.0.0/1 pair, or the route the kernel
picks under policy routing as wg-quick sets up), or when the network the helper sees disagrees
with this machine's own public address or with its resolver's network.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import re
import socket
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import maxminddb

from probe.config import ConfigError
from probe.model import NetworkInfo
from probe.privacy import IPAddress, parse_address
from probe.resolvers import ResolverSpec

# The JSON document the control test helper returns about the client that called it. Every field
# is optional; a field with the wrong type counts as absent. `client_address` is only used to
# scrub and to look up, never stored.
HELPER_FIELDS: Mapping[str, str] = {
    "client_address": "the address the probe's request came from (str)",
    "client_asn": "its autonomous system number (int)",
    "client_as_name": "its AS name (str)",
    "client_country": "its ISO 3166-1 alpha-2 country code (str)",
    "resolver_address": "the address the probe's resolver queried the helper's zone from (str)",
    "resolver_asn": "the resolver's autonomous system number (int)",
    "resolver_as_name": "the resolver's AS name (str)",
    "resolver_country": "the resolver's ISO 3166-1 alpha-2 country code (str)",
}

# Anycast public resolvers: a probe that uses one sees a resolver ASN unlike its own without any
# VPN, so a mismatch with these says nothing. Google, Cloudflare, Quad9, Cisco OpenDNS.
PUBLIC_RESOLVER_ASNS = frozenset({15169, 13335, 19281, 36692})

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


# -- the helper's view -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HelperView:
    """What the control test helper saw of the probe and of its resolver (HELPER_FIELDS)."""

    client_address: str | None = None
    client_asn: int | None = None
    client_as_name: str | None = None
    client_country: str | None = None
    resolver_address: str | None = None
    resolver_asn: int | None = None
    resolver_as_name: str | None = None
    resolver_country: str | None = None

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> HelperView:
        """The view from the helper's JSON document; malformed fields count as unknown."""
        return cls(
            client_address=_address_field(document.get("client_address")),
            client_asn=_asn(document.get("client_asn")),
            client_as_name=_text(document.get("client_as_name")),
            client_country=_country(document.get("client_country")),
            resolver_address=_address_field(document.get("resolver_address")),
            resolver_asn=_asn(document.get("resolver_asn")),
            resolver_as_name=_text(document.get("resolver_as_name")),
            resolver_country=_country(document.get("resolver_country")),
        )


def _asn(value: Any) -> int | None:
    if isinstance(value, str):
        value = value.upper().removeprefix("AS")
        if not value.isdigit():
            return None
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**32:
        return value
    return None


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _country(value: Any) -> str | None:
    if isinstance(value, str) and len(value) == 2 and value.isascii() and value.isalpha():
        return value.upper()
    return None


def _address_field(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return str(parse_address(value))
    except ValueError:
        return None


# -- the offline database ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AsnRecord:
    """What an IP-to-ASN database knows of one address."""

    asn: int | None = None
    as_name: str | None = None
    country: str | None = None

    def __bool__(self) -> bool:
        return self.asn is not None or self.country is not None


class AsnDatabase:
    """One or more MaxMind DB files (e.g. GeoLite2-ASN + GeoLite2-Country), read together: each
    field comes from the first file that has it."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = tuple(paths)
        self._readers: list[maxminddb.Reader] = []
        try:
            for path in self.paths:
                self._readers.append(_open_mmdb(path))
        except BaseException:
            self.close()
            raise

    def lookup(self, address: str) -> AsnRecord:
        """The ASN, AS name and country of an address; fields nobody knows stay None."""
        asn: int | None = None
        as_name: str | None = None
        country: str | None = None
        for reader in self._readers:
            try:
                record = reader.get(address)
            except ValueError:  # an IPv6 address in an IPv4-only file, or a malformed address
                continue
            if not isinstance(record, dict):
                continue
            asn = asn or _asn(record.get("autonomous_system_number")) or _asn(record.get("asn"))
            as_name = (
                as_name
                or _text(record.get("autonomous_system_organization"))
                or _text(record.get("as_name"))
            )
            country = country or _record_country(record)
        return AsnRecord(asn, as_name, country)

    def close(self) -> None:
        for reader in self._readers:
            reader.close()
        self._readers.clear()

    def __enter__(self) -> AsnDatabase:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _open_mmdb(path: Path) -> maxminddb.Reader:
    try:
        return maxminddb.open_database(str(path))
    except FileNotFoundError:
        raise ConfigError(f"IP-to-ASN database {path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"IP-to-ASN database {path}: {exc.strerror or exc}") from None
    except (maxminddb.InvalidDatabaseError, ValueError) as exc:
        raise ConfigError(
            f"IP-to-ASN database {path} is not a MaxMind DB (.mmdb) file: {exc}"
        ) from None


def _record_country(record: Mapping[str, Any]) -> str | None:
    # GeoLite2-Country/City: {"country": {"iso_code": "IR"}}; IPinfo: "country" or "country_code".
    country = record.get("country")
    if isinstance(country, dict):
        return _country(country.get("iso_code"))
    return _country(country) or _country(record.get("country_code"))


# -- this machine's network --------------------------------------------------------------------


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


# -- putting it together -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NetworkIdentity:
    """The network as stored (`network`), with what must not be stored kept apart.

    `own_addresses`: the probe's own addresses, for the Scrubber only.
    `vpn_reasons`: why a VPN or proxy is suspected, in words a volunteer understands.
    """

    network: NetworkInfo
    own_addresses: frozenset[str]
    vpn_reasons: tuple[str, ...] = ()


def is_public(address: IPAddress) -> bool:
    """Globally routable: not private, loopback, link-local, CGNAT or documentation space."""
    return address.is_global and not address.is_multicast


def _scrubbable(address: IPAddress) -> bool:
    # An address the helper or the user names as ours is scrubbed unless it identifies nobody.
    return not (
        address.is_loopback
        or address.is_link_local
        or address.is_unspecified
        or address.is_multicast
    )


def resolver_addresses(
    specs: Iterable[ResolverSpec], resolv_conf: Path = Path("/etc/resolv.conf")
) -> list[str]:
    """The IP addresses of the configured resolvers, the system resolver's read from
    resolv.conf (the file is read; the resolver is never queried). DoH names are skipped."""
    found: list[str] = []
    for spec in specs:
        if spec.transport == "system":
            with suppress(OSError, UnicodeDecodeError):
                for line in resolv_conf.read_text().splitlines():
                    fields = line.split()
                    if len(fields) >= 2 and fields[0] == "nameserver":
                        found.append(fields[1])
        elif spec.address:
            found.append(spec.address)
    valid = []
    for text in found:
        with suppress(ValueError):
            valid.append(str(parse_address(text)))
    return list(dict.fromkeys(valid))


def identify_network(
    *,
    helper: HelperView | None = None,
    database: AsnDatabase | None = None,
    configured_addresses: Sequence[str] = (),
    resolvers: Sequence[str] = (),
    local: LocalNetwork | None = None,
) -> NetworkIdentity:
    """The probe's network and its resolver's, the own addresses to scrub, and VPN signals.

    `configured_addresses`: public addresses the user says are the probe's (config).
    `resolvers`: the configured resolvers' addresses (see `resolver_addresses`).
    """
    local = local or LocalNetwork()
    helper = helper or HelperView()
    sources: set[str] = set()

    own: dict[str, IPAddress] = {}
    for text in (helper.client_address, *configured_addresses):
        if text:
            address = parse_address(text)
            if _scrubbable(address):
                own[str(address)] = address
    # This machine's own public addresses (no NAT in the way), tunnel devices' apart: a VPN's
    # address says nothing about the local network.
    home: list[str] = [str(a) for a in own.values() if str(a) != helper.client_address]
    for interface in local.interfaces:
        for text in interface.addresses:
            address = parse_address(text)
            if is_public(address):
                own[str(address)] = address
                if not interface.tunnel:
                    home.append(str(address))

    def look_up(addresses: Iterable[str | None]) -> AsnRecord:
        if database is None:
            return AsnRecord()
        for text in addresses:
            if text and is_public(parse_address(text)):
                record = database.lookup(text)
                if record:
                    return record
        return AsnRecord()

    probe_record = look_up([helper.client_address, *home])
    resolver_record = look_up([helper.resolver_address, *resolvers])
    asn, as_name, country = _merge(
        (helper.client_asn, helper.client_as_name, helper.client_country), probe_record, sources
    )
    r_asn, r_as_name, r_country = _merge(
        (helper.resolver_asn, helper.resolver_as_name, helper.resolver_country),
        resolver_record,
        sources,
    )

    reasons = [f"the proxy variable {name} is set" for name in local.proxy_variables]
    tunnels = [iface for _, iface in local.wide_routes if local.is_tunnel(iface)]
    tunnels += [iface for iface in local.egress if local.is_tunnel(iface)]
    reasons += [
        f"Internet traffic leaves through {iface}, a tunnel (VPN) interface"
        for iface in dict.fromkeys(tunnels)
    ]
    if helper.client_asn is not None and database is not None:
        home_asns = {r.asn for r in (database.lookup(a) for a in home) if r.asn is not None}
        if home_asns and helper.client_asn not in home_asns:
            listed = ", ".join(f"AS{n}" for n in sorted(home_asns))
            reasons.append(
                f"the test helper sees this probe in AS{helper.client_asn}, "
                f"but this machine's own public address is in {listed}"
            )
    if (
        helper.client_asn is not None
        and r_asn is not None
        and r_asn != helper.client_asn
        and r_asn not in PUBLIC_RESOLVER_ASNS
        # An ISP may use its upstream's resolvers (small Iranian ISPs use TCI's): a resolver in
        # another AS of the same country is no sign of a VPN; one abroad (or unknown) is.
        and not (country and r_country and country == r_country)
    ):
        reasons.append(
            f"the test helper sees this probe in AS{helper.client_asn}, "
            f"but its resolver is in AS{r_asn}"
        )

    # False means "looked and saw no sign" (a VPN on the router stays invisible); None means
    # there was nothing to look at.
    checked = local.routes_known or helper.client_asn is not None
    vpn_suspected = True if reasons else (False if checked else None)
    source = "+".join(s for s in ("helper", "mmdb") if s in sources) or "unknown"
    network = NetworkInfo(
        asn=asn,
        as_name=as_name,
        country=country,
        resolver_asn=r_asn,
        resolver_as_name=r_as_name,
        resolver_country=r_country,
        vpn_suspected=vpn_suspected,
        source=source,
    )
    return NetworkIdentity(network, frozenset(own), tuple(reasons))


def _merge(
    from_helper: tuple[int | None, str | None, str | None],
    from_database: AsnRecord,
    sources: set[str],
) -> tuple[int | None, str | None, str | None]:
    """The helper's fields first, the database's for what the helper did not say, unless the
    database describes another AS than the helper does (then its fields are not mixed in)."""
    helper_asn, helper_name, helper_country = from_helper
    if helper_asn is not None and from_database.asn not in (None, helper_asn):
        from_database = AsnRecord()
    merged = (
        helper_asn if helper_asn is not None else from_database.asn,
        helper_name or from_database.as_name,
        helper_country or from_database.country,
    )
    if any(v is not None for v in from_helper):
        sources.add("helper")
    filled = (
        (helper_asn is None and from_database.asn is not None)
        or (helper_name is None and from_database.as_name is not None)
        or (helper_country is None and from_database.country is not None)
    )
    if filled:
        sources.add("mmdb")
    return merged
