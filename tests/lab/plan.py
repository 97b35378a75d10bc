"""The lab's address plan: which address inside the `inet` namespace serves each catalog host, on
which ports and how, plus the fixed addresses of the lab's own machinery (client, censor, resolvers,
blockpage). Pure data computed from a list of Targets; nothing here touches the network.

Host names get public-looking addresses from the owner's real ranges (Facebook's names in
157.240.0.0/16, AS32934, as OONI's Facebook Messenger test expects, ooni/spec ts-019;
Twitter's in 104.244.42.0/24, ...), so address
and ASN based reasoning in the probe sees plausible answers. The mapping is deterministic: a
name's address is picked by hashing the name inside its pool (linear probing on collisions), so
it does not depend on the catalog's order, and each name gets its own address so that techniques
hit exactly the names they list. IP-literal targets (the Telegram DCs) keep their own addresses.
"""

from __future__ import annotations

import fnmatch
import hashlib
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from probe.addresses import is_ip
from probe.model import Target, TargetKind

# The lab's own links (RFC 6598 shared address space: what an ISP gives a subscriber behind CGNAT).
CLIENT_ADDRESS = "100.64.0.2"
CENSOR_CLIENT_SIDE = "100.64.0.1"
CLIENT_NETWORK = "100.64.0.0/24"
CENSOR_INET_SIDE = "100.64.1.1"
INET_CENSOR_SIDE = "100.64.1.2"
INET_CONTROL_SIDE = "100.64.2.1"
CONTROL_ADDRESS = "100.64.2.2"
PREFIX_LENGTH = 24

# The ISP's recursive resolver, in the censor namespace: where the client's resolv.conf points.
ISP_RESOLVER = "100.64.53.53"

# Iran's national blockpage servers and the address its DNS lies answer (OONI, https://ooni.org/post/iran-internet-censorship/).
BLOCKPAGE_ADDRESSES = ("10.10.34.34", "10.10.34.35", "10.10.34.36")
LIE_ADDRESS = "10.10.34.35"
LIE_ADDRESS6 = "d0::11"

# Another real site, hosted in inet beside the catalog's: HTTPS on 443 with a valid lab-CA
# certificate for its own name only (not the catalog's names). A resolver lie pointing a name at
# it is DNS tampering that TLS exposes (ssl_invalid_hostname), not a dead address.
OTHER_SITE_NAME = "www.example.org"
OTHER_SITE_ADDRESS = "93.184.216.34"

# Where the censor's intercepting TLS server listens (DNAT target, on its client-side address).
INTERCEPTION_PORT = 8443

# Honest public resolvers hosted in inet (UDP and TCP 53, DoH on 443 at /dns-query).
PUBLIC_RESOLVERS: dict[str, tuple[str, ...]] = {
    "dns.google": ("8.8.8.8", "8.8.4.4"),
    "cloudflare-dns.com": ("1.1.1.1", "1.0.0.1"),
    "one.one.one.one": ("1.1.1.1", "1.0.0.1"),
    "dns.quad9.net": ("9.9.9.9", "149.112.112.112"),
}

# Address pools by name suffix, first match wins; ranges are the real owners' where known.
_POOLS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("telegram.org", "t.me"), "149.154.167.0/24"),
    (("whatsapp.net", "whatsapp.com"), "157.240.9.0/24"),
    (("facebook.com", "fbcdn.net", "fbsbx.com", "messenger.com"), "157.240.1.0/24"),
    (("instagram.com", "cdninstagram.com"), "157.240.2.0/24"),
    (("twitter.com", "x.com", "twimg.com", "t.co"), "104.244.42.0/24"),
    (("googlevideo.com",), "173.194.0.0/24"),
    (("youtube.com", "ytimg.com", "google.com", "gstatic.com", "googleapis.com"), "142.250.0.0/24"),
    (("signal.org",), "13.248.212.0/24"),
    (("microsoft.com",), "20.70.246.0/24"),
    (("apple.com",), "17.253.144.0/24"),
    (("wikipedia.org", "wikimedia.org"), "185.15.59.0/24"),
)
_DEFAULT_POOL = "93.184.215.0/24"
# Second, equally legitimate addresses for the CDN scenario (an Akamai range).
_CDN_POOL = "23.32.0.0/22"

HTTP_PORT = 80
HTTPS_PORT = 443
# The large resource every site serves for throughput tests (and at every transfer's path).
BULK_PATH = "/big"


class Service(StrEnum):
    """What listens on an address and port in inet."""

    HTTPS = "https"  # TLS with the lab CA's certificate, then HTTP
    HTTP = "http"  # plain HTTP (also the Telegram DCs on 443)
    TCP = "tcp"  # accepts and reads, says nothing (WhatsApp's 5222)


class PlanError(ValueError):
    """The targets cannot be laid out in the lab (conflicting services, a pool ran out)."""


@dataclass(frozen=True, slots=True)
class Listener:
    """One listening socket in inet."""

    address: str
    port: int
    service: Service


@dataclass(frozen=True, slots=True)
class AddressPlan:
    """Every address the lab hosts, and what each serves."""

    hosts: dict[str, str]  # host name -> its address in inet (the honest answer)
    cdn: dict[str, str]  # host name -> a second legitimate address (CDN scenario)
    records: dict[str, tuple[str, ...]]  # A records served by the honest resolvers
    ip_targets: tuple[str, ...]  # IP-literal targets (Telegram DCs), hosted as they are
    listeners: tuple[Listener, ...]
    resolvers: tuple[str, ...]  # honest resolver addresses (UDP/TCP 53, DoH 443)
    platforms: dict[str, str]  # host (name or IP literal) -> platform, for listings
    # Paths every site answers with the large resource: the catalog's transfer targets' (and
    # BULK_PATH), so that a transfer reads as much as its bounds allow.
    bulk_paths: tuple[str, ...] = ()

    def address_of(self, host: str) -> str:
        """The honest address of a host name (an IP literal is its own address)."""
        if is_ip(host):
            return str(ipaddress.ip_address(host))
        try:
            return self.hosts[host.lower().rstrip(".")]
        except KeyError:
            raise PlanError(f"the lab does not host {host!r}") from None

    def cdn_address_of(self, host: str) -> str:
        try:
            return self.cdn[host.lower().rstrip(".")]
        except KeyError:
            raise PlanError(f"the lab has no CDN address for {host!r}") from None

    @property
    def names(self) -> tuple[str, ...]:
        """Every host name served, sorted."""
        return tuple(sorted(self.records))

    @property
    def inet_addresses(self) -> tuple[str, ...]:
        """Every address to assign inside inet."""
        addresses = {listener.address for listener in self.listeners}
        addresses.update(self.hosts.values())
        addresses.update(self.cdn.values())
        addresses.update(self.resolvers)
        addresses.update(self.ip_targets)
        addresses.add(OTHER_SITE_ADDRESS)
        return tuple(sorted(addresses, key=ipaddress.ip_address))

    @property
    def tls_identities(self) -> tuple[str, ...]:
        """Names and IP addresses the lab certificate must cover."""
        return (*self.names, *self.resolvers)

    def select(self, selectors: Iterable[str]) -> tuple[str, ...]:
        """Expand selectors to hosts: an IP literal stays itself, a glob (`*.twimg.com`) matches
        served names, anything else must be a served name. An empty expansion is a mistake."""
        chosen: list[str] = []
        for selector in selectors:
            text = selector.strip().lower().rstrip(".")
            if is_ip(text):
                chosen.append(str(ipaddress.ip_address(text)))
            elif any(c in text for c in "*?["):
                matched = [name for name in self.names if fnmatch.fnmatchcase(name, text)]
                if not matched:
                    raise PlanError(f"{selector!r} matches no host the lab serves")
                chosen.extend(matched)
            elif text in self.records:
                chosen.append(text)
            else:
                raise PlanError(f"the lab does not host {selector!r}")
        return tuple(dict.fromkeys(chosen))

    def addresses_for(self, selectors: Iterable[str]) -> tuple[str, ...]:
        """The addresses (honest ones for names) that selectors stand for."""
        return tuple(dict.fromkeys(self.address_of(host) for host in self.select(selectors)))


def _pool_for(name: str) -> str:
    for suffixes, pool in _POOLS:
        if any(name == suffix or name.endswith(f".{suffix}") for suffix in suffixes):
            return pool
    return _DEFAULT_POOL


def _allocate(name: str, pool: str, taken: set[str]) -> str:
    """A stable address for `name` in `pool`: hash, then probe past taken addresses."""
    network = ipaddress.ip_network(pool)
    candidates = list(network.hosts())[1:]  # skip .1, often a router
    start = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % len(candidates)
    for step in range(len(candidates)):
        address = str(candidates[(start + step) % len(candidates)])
        if address not in taken:
            taken.add(address)
            return address
    raise PlanError(f"address pool {pool} is full (while placing {name})")


def build_plan(targets: Sequence[Target], extra_hosts: Iterable[str] = ()) -> AddressPlan:
    """Lay the targets (and any extra host names) out in inet."""
    platforms: dict[str, str] = {}
    ip_targets: list[str] = []
    names: set[str] = set(PUBLIC_RESOLVERS)
    for target in targets:
        host = target.host.lower().rstrip(".")
        platforms.setdefault(host, target.platform)
        if is_ip(host):
            if ipaddress.ip_address(host).version != 4:
                raise PlanError(f"the lab is IPv4 only; cannot host {host}")
            ip_targets.append(str(ipaddress.ip_address(host)))
        else:
            names.add(host)
    for host in extra_hosts:
        names.add(host.lower().rstrip("."))
        platforms.setdefault(host.lower().rstrip("."), "extra")

    resolvers = tuple(dict.fromkeys(a for addrs in PUBLIC_RESOLVERS.values() for a in addrs))
    taken: set[str] = {*ip_targets, *resolvers}
    hosts: dict[str, str] = {}
    records: dict[str, tuple[str, ...]] = {}
    for name in sorted(names):
        if name in PUBLIC_RESOLVERS:
            hosts[name] = PUBLIC_RESOLVERS[name][0]
            records[name] = PUBLIC_RESOLVERS[name]
        else:
            hosts[name] = _allocate(name, _pool_for(name), taken)
            records[name] = (hosts[name],)
    cdn = {name: _allocate(f"cdn:{name}", _CDN_POOL, taken) for name in sorted(names)}

    services: dict[tuple[str, int], Service] = {}
    explicit: set[tuple[str, int]] = set()

    def declare(address: str, port: int, service: Service, *, strong: bool) -> None:
        key = (address, port)
        if strong:
            if key in explicit and services[key] is not service:
                raise PlanError(f"{address}:{port} is declared both {services[key]} and {service}")
            explicit.add(key)
            services[key] = service
        else:
            services.setdefault(key, service)

    for target in targets:
        address = (
            str(ipaddress.ip_address(target.host))
            if is_ip(target.host)
            else hosts[target.host.lower().rstrip(".")]
        )
        for port in target.ports:
            if target.kind is TargetKind.HTTPS:
                service = Service.HTTPS
            elif target.kind is TargetKind.HTTP:
                service = Service.HTTP
            else:
                service = Service.HTTPS if port == HTTPS_PORT else Service.TCP
            declare(address, port, service, strong=True)
    # Every name (and its CDN twin) answers plain HTTP on 80 and HTTPS on 443, as real sites do.
    for name in names:
        for address in {*records[name], cdn[name]}:
            declare(address, HTTP_PORT, Service.HTTP, strong=False)
            declare(address, HTTPS_PORT, Service.HTTPS, strong=False)
    listeners = tuple(
        Listener(address, port, service)
        for (address, port), service in sorted(
            services.items(), key=lambda item: (ipaddress.ip_address(item[0][0]), item[0][1])
        )
    )
    bulk_paths = {BULK_PATH}
    bulk_paths.update(urlsplit(t.path).path for t in targets if t.transfer)
    return AddressPlan(
        hosts=hosts,
        cdn=cdn,
        records=records,
        ip_targets=tuple(dict.fromkeys(ip_targets)),
        listeners=listeners,
        resolvers=resolvers,
        platforms=platforms,
        bulk_paths=tuple(sorted(bulk_paths)),
    )


def default_targets() -> list[Target]:
    """The probe's built-in catalog, the lab's default population."""
    from probe.catalog import builtin_targets

    return builtin_targets()
