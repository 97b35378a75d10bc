"""The identify step: the probe's network and its resolver's from the helper's view and the
offline database (helper first), the own addresses to scrub, and the VPN/proxy signals.

VPN/proxy awareness (results over a VPN are not the local network's: OONI's FAQ,
https://ooni.org/support/faq/): a
run is flagged when a proxy variable is set, when Internet traffic leaves through a tunnel
interface (the default route, OpenVPN's 0.0.0.0/1 + 128.0.0.0/1 pair, or the route the kernel
picks under policy routing as wg-quick sets up), or when the network the helper sees disagrees
with this machine's own public address or with its resolver's network.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from probe.model import NetworkInfo
from probe.netid.helper_view import HelperView
from probe.netid.local import LocalNetwork
from probe.netid.mmdb import AsnDatabase, AsnRecord
from probe.privacy import IPAddress, parse_address
from probe.resolvers import ResolverSpec

# Anycast public resolvers: a probe that uses one sees a resolver ASN unlike its own without any
# VPN, so a mismatch with these says nothing. Google, Cloudflare, Quad9, Cisco OpenDNS.
PUBLIC_RESOLVER_ASNS = frozenset({15169, 13335, 19281, 36692})


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
