"""Which of our targets an OONI document's observations belong to.

OONI's platform experiments test one service through many hosts (Telegram's data centres and
web.telegram.org, WhatsApp's e1..e16 endpoints, Signal's backends, Facebook's Messenger
endpoints); web_connectivity tests one URL. Our verdicts are per target, so every df-xxx
observation is routed to the target of its host: the built-in catalog's target when the catalog
has that host (so imported runs line up with our own runs of the same platform, with the same
names and groups), otherwise a target made from the observation (its URL, or its host).

A TCP connect names only an address: its host comes from the document's DNS answers (an address
several hosts resolved to counts for each), or is the address itself (Telegram's DCs are tested
by address). A DNS query counts for every target of its host.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from urllib.parse import urlsplit

from probe.catalog import builtin_platforms
from probe.model import Target, TargetKind
from probe.names import normalise_host, normalise_url
from probe.ooni.dataformat import DnsQuery, HttpTransaction, TcpConnect, TlsHandshake
from probe.ooni.document import OoniDocument

# Our platform for each OONI experiment (web_connectivity inputs come from test lists: our
# test-list targets' platform, unless the URL is one of the catalog's).
PLATFORM_OF_EXPERIMENT = {
    "telegram": "telegram",
    "whatsapp": "whatsapp",
    "signal": "signal",
    "facebook_messenger": "facebook",
    "web_connectivity": "testlist",
}
WEB_PLATFORM = "testlist"

_DEFAULT_PORT = {"http": 80, "https": 443}


@dataclass(slots=True)
class Routed:
    """One target and the observations of the document that belong to it, in document order."""

    target: Target
    queries: list[DnsQuery] = field(default_factory=list)
    tcp_connect: list[TcpConnect] = field(default_factory=list)
    tls_handshakes: list[TlsHandshake] = field(default_factory=list)
    requests: list[HttpTransaction] = field(default_factory=list)


@cache
def _catalog() -> tuple[dict[str, list[Target]], dict[str, Target]]:
    """The built-in catalog by host, and its URL targets by normalised URL."""
    by_host: dict[str, list[Target]] = {}
    by_url: dict[str, Target] = {}
    for platform in builtin_platforms():
        for target in platform.targets:
            by_host.setdefault(normalise_host(target.host), []).append(target)
            if target.url is not None:
                by_url[normalise_url(target.url)] = target
    return by_host, by_url


def host_of_target(target: str) -> str:
    """The host a target name stands for: a URL's host, else the name itself."""
    if "://" in target:
        try:
            return normalise_host(urlsplit(target).hostname or "")
        except ValueError:
            return ""
    return normalise_host(target)


def _split_url(url: str) -> tuple[str, str, int, str] | None:
    """(scheme, host, port, path?query) of an http(s) URL; None when it is not one."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORT or not parts.hostname:
        return None
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return parts.scheme, normalise_host(parts.hostname), port or _DEFAULT_PORT[parts.scheme], path


def _url_target(platform: str, url: str, method: str = "GET") -> Target | None:
    """The catalog's target for this URL, else one made from it (None: not an http(s) URL)."""
    by_host, by_url = _catalog()
    known = by_url.get(normalise_url(url))
    if known is not None and (platform == WEB_PLATFORM or known.platform == platform):
        return known
    split = _split_url(url)
    if split is None:
        return None
    scheme, host, port, path = split
    kind = TargetKind(scheme)
    for candidate in by_host.get(host, ()):
        # Telegram's DCs: a catalog http target with the port among its ports.
        if candidate.platform == platform and candidate.kind is kind and port in candidate.ports:
            return candidate
    return Target(
        platform=platform,
        name=url,
        kind=kind,
        host=host,
        ports=(port,),
        path=path,
        method=method.upper(),
        source="ooni",
    )


class _Router:
    def __init__(self, platform: str) -> None:
        self.platform = platform
        self.routed: dict[tuple[str, str], Routed] = {}
        self.by_host: dict[str, list[Routed]] = {}

    def add(self, target: Target) -> Routed:
        key = (target.platform, target.name)
        found = self.routed.get(key)
        if found is None:
            found = self.routed[key] = Routed(target)
            self.by_host.setdefault(normalise_host(target.host), []).append(found)
        return found

    def find_endpoint(self, host: str, port: int, *, tls: bool) -> list[Routed]:
        """The targets of `host` that use `port` (TLS: the https or tcp ones), adding the
        catalog's when first seen; empty when neither this document nor the catalog has one."""
        found = [
            r
            for r in self.by_host.get(host, ())
            if port in r.target.ports and (r.target.kind is TargetKind.HTTPS or not tls)
        ]
        if found:
            return found
        by_host, _ = _catalog()
        for candidate in by_host.get(host, ()):
            if candidate.platform != self.platform or port not in candidate.ports:
                continue
            if tls and candidate.kind not in (TargetKind.HTTPS, TargetKind.TCP):
                continue
            found.append(self.add(candidate))
        return found

    def for_endpoints(self, hosts: Sequence[str], port: int, *, tls: bool) -> list[Routed]:
        """The targets an endpoint observation belongs to. An address several hosts resolved to
        counts for each host that has a target on `port`; when none has, for a target made for
        the first host (a plain TCP target, or https on 443 for a handshake)."""
        found = [r for host in hosts for r in self.find_endpoint(host, port, tls=tls)]
        if found or not hosts:
            return found
        host = hosts[0]
        kind = TargetKind.HTTPS if tls and port == 443 else TargetKind.TCP
        name = f"https://{host}/" if kind is TargetKind.HTTPS else host
        return [self.add(Target(self.platform, name, kind, host, (port,), source="ooni"))]

    def for_host(self, host: str) -> list[Routed]:
        found = self.by_host.get(host)
        if found:
            return list(found)
        by_host, _ = _catalog()
        catalog = [c for c in by_host.get(host, ()) if c.platform == self.platform]
        if catalog:
            return [self.add(c) for c in catalog]
        return [self.add(Target(self.platform, host, TargetKind.DNS, host, source="ooni"))]


def _hosts_of_addresses(queries: Iterable[DnsQuery]) -> dict[str, list[str]]:
    hosts: dict[str, list[str]] = {}
    for query in queries:
        name = normalise_host(query.hostname)
        for address in query.addresses:
            listed = hosts.setdefault(address, [])
            if name not in listed:
                listed.append(name)
    return hosts


def _tls_endpoint(handshake: TlsHandshake) -> tuple[str | None, int]:
    if not handshake.address:
        return None, 443
    host, _, port = handshake.address.rpartition(":")
    host = host[1:-1] if host.startswith("[") else host
    return host or None, int(port) if port.isdigit() else 443


def _route_web(document: OoniDocument) -> list[Routed]:
    """web_connectivity: every observation belongs to the input URL's target."""
    target = _url_target(WEB_PLATFORM, document.input or "")
    if target is None:
        return []
    o = document.observations
    return [
        Routed(
            target, list(o.queries), list(o.tcp_connect), list(o.tls_handshakes), list(o.requests)
        )
    ]


def route(document: OoniDocument) -> list[Routed]:
    """The document's targets with their observations, in the order first seen."""
    if document.test_name == "web_connectivity":
        return _route_web(document)
    platform = PLATFORM_OF_EXPERIMENT[document.test_name]
    router = _Router(platform)
    o = document.observations
    for transaction in o.requests:
        target = _url_target(platform, transaction.request.url, transaction.request.method)
        if target is not None:
            router.add(target).requests.append(transaction)
    hosts_of = _hosts_of_addresses(o.queries)
    for handshake in o.tls_handshakes:
        address, port = _tls_endpoint(handshake)
        names: Sequence[str] = (
            [normalise_host(handshake.server_name)]
            if handshake.server_name
            else hosts_of.get(address or "", [])
        )
        for routed in router.for_endpoints(names, port, tls=True):
            routed.tls_handshakes.append(handshake)
    for connect in o.tcp_connect:
        hosts = hosts_of.get(connect.ip) or [connect.ip]
        for routed in router.for_endpoints(hosts, connect.port, tls=False):
            routed.tcp_connect.append(connect)
    for query in o.queries:
        if query.hostname:
            for routed in router.for_host(normalise_host(query.hostname)):
                routed.queries.append(query)
    routed_targets = list(router.routed.values())
    for routed in routed_targets:
        routed.tcp_connect = _one_per_endpoint(routed.tcp_connect)
    return routed_targets


def _one_per_endpoint(connects: Sequence[TcpConnect]) -> list[TcpConnect]:
    """One connect per address and port: the first that succeeded, else the first failure.

    WhatsApp's e1..e16 resolve to the same few addresses and OONI connects to each of them
    for every endpoint (ts-018), so a target would otherwise get every endpoint's connects to
    the shared addresses; what an address:port does is the same whichever name led there."""
    chosen: dict[tuple[str, int], TcpConnect] = {}
    for connect in connects:
        key = (connect.ip, connect.port)
        if key not in chosen or (connect.success and not chosen[key].success):
            chosen[key] = connect
    return list(chosen.values())
