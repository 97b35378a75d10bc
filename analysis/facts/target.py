"""The Facts of one target: its measurements split by layer, each layer's facts built, and the
Facts assembled from them field by field (a checked constructor: a misspelt or mistyped field is
a type error, not a silent extra keyword)."""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType
from urllib.parse import urlsplit

from analysis.facts.attempts import Split, dedup, split, strip_port
from analysis.facts.dns import DnsFacts, dns_facts
from analysis.facts.http import HttpFacts, http_facts
from analysis.facts.protocol import ProtocolFacts, protocol_facts
from analysis.facts.resolvers import Paths, ip_reachable, paths
from analysis.facts.run import RunIndex
from analysis.facts.stall import StallFacts, stall_facts
from analysis.facts.tcp import TcpFacts, tcp_facts
from analysis.facts.tls import TlsFacts, tls_facts
from analysis.rules import UNKNOWN_AUTHORITY, Evidence, Facts
from probe.model import Measurement
from probe.names import normalise_host


def target_host(target: str, s: Split) -> str | None:
    """The name the target was measured for: its DNS query, TLS SNI or Host header, an address
    literal it connected to, else the target's own name or URL host."""
    for dns in s.dns + s.dns_control:
        if dns.d.query:
            return normalise_host(dns.d.query)
    for tls in s.tls:
        if tls.d.sni:
            return normalise_host(tls.d.sni)
    for http in s.http:
        if http.d.host_header:
            return strip_port(http.d.host_header)
    for tcp in s.tcp:
        if tcp.d.address_source == "literal":
            return tcp.d.address or None
    if "://" in target:
        try:
            hostname = urlsplit(target).hostname
        except ValueError:
            return None
        return normalise_host(hostname) if hostname else None
    return normalise_host(target) if target.strip() else None


def _assemble(
    index: RunIndex,
    platform: str,
    target: str,
    host: str | None,
    s: Split,
    own: Sequence[Measurement],
    p: Paths,
    *,
    dns: DnsFacts,
    tcp: TcpFacts,
    tls: TlsFacts,
    http: HttpFacts,
    protocol: ProtocolFacts,
    stall: StallFacts,
) -> Facts:
    run = index.run
    # The other names the target's untrusted issuer signed for in this run (interception).
    no_names: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset())
    shared = no_names
    if tls.issuer is not None and tls.cert_failure == UNKNOWN_AUTHORITY:
        shared = index.untrusted_issuers.get(tls.issuer, no_names)
    evidence = {
        Evidence.ALL: tuple(m.id for m in own),
        Evidence.DNS: tuple(a.id for a in s.dns),
        Evidence.DNS_CONTROL: tuple(a.id for a in s.dns_control),
        Evidence.TCP: tuple(a.id for a in s.tcp),
        Evidence.TLS: tuple(a.id for a in s.tls),
        Evidence.HTTP: tuple(a.id for a in s.http),
        Evidence.DIFFERENTIAL: dedup(
            [*tls.differential_ids, *http.differential_ids, *protocol.evidence]
        ),
        Evidence.PROBE: tuple(a.id for a in s.probes),
        Evidence.CONTROL_SITES: index.control_site_ids,
    }
    return Facts(
        platform,
        target,
        host=host,
        connectivity=run.connectivity,
        vpn_suspected=run.network.vpn_suspected is True,
        ipv6_broken=index.ipv6_broken,
        dns_addresses=dns.addresses,
        dns_failure=dns.failure,
        dns_fingerprints=dns.fingerprints,
        dns_bogons=dns.bogons,
        dns_injection=dns.injection,
        dns_injection_fingerprints=dns.injection_fingerprints,
        dns_consistent=dns.consistent,
        validated_addresses=dns.validated_addresses,
        control_addresses=dns.control_addresses,
        control_dns_ok=dns.control_ok,
        dns_other_site=dns.other_site,
        network_dns_broken=index.network_dns_broken,
        ip_reachable=ip_reachable(p),
        tcp_attempted=tcp.attempted,
        tcp_ok=tcp.ok,
        tcp_failure=tcp.failure,
        ipv6_masked=tcp.ipv6_masked,
        control_tcp_ok=tcp.control_ok,
        tcp_connects=tcp.pattern.attempts,
        tcp_connects_uneven=tcp.pattern.uneven,
        tcp_connects_slow=tcp.pattern.slow,
        control_connects_fast=index.control_connects.fast,
        control_connect_ms=index.control_connects.slowest_ms,
        tls_attempted=tls.attempted,
        tls_ok=tls.ok,
        tls_failure=tls.failure,
        tls_failed_operation=tls.failed_operation,
        tls_cert_failure=tls.cert_failure,
        tls_issuer=tls.issuer,
        sni_differential=tls.sni_differential,
        sni_differential_failed=tls.sni_differential_failed,
        control_tls_ok=tls.control_ok,
        control_tls_issuer=tls.control_issuer,
        tls_issuer_names=len(shared[0]),
        tls_issuer_addresses=len(shared[1]),
        control_sites_tls_valid=index.control_sites_tls_valid,
        http_attempted=http.attempted,
        http_ok=http.ok,
        http_status=http.status,
        http_failure=http.failure,
        http_failed_operation=http.failed_operation,
        http_plain=http.plain,
        http_fingerprints=http.fingerprints,
        http_captcha=http.captcha,
        http_matches_control=http.matches_control,
        http_comparison=http.comparison,
        host_differential=http.host_differential,
        control_http_ok=http.control_ok,
        throughput_kbps=http.throughput_kbps,
        control_kbps=http.control_kbps,
        throttled=http.throttled,
        ttfb_ms=http.ttfb_ms,
        control_ttfb_ms=http.control_ttfb_ms,
        first_byte_delayed=http.first_byte_delayed,
        protocol_filtered=protocol.proof is not None,
        protocol_silent=protocol.silent,
        protocol_proof=protocol.proof,
        speaks=protocol.speaks,
        stalled_layers=stall.layers,
        stall_ms=stall.longest_ms,
        evidence=MappingProxyType(evidence),
    )


def facts_of(index: RunIndex, platform: str, target: str, own: Sequence[Measurement]) -> Facts:
    """The Facts of one target from its own measurements (`own`) and the run's index."""
    if not own:
        run = index.run
        return Facts(
            platform,
            target,
            measured=False,
            connectivity=run.connectivity,
            vpn_suspected=run.network.vpn_suspected is True,
            ipv6_broken=index.ipv6_broken,
        )
    s = split(own)
    host = target_host(target, s)
    p = paths(s)
    # Every layer after DNS is judged on the network's path: the attempts to its resolver's
    # answers. Those to addresses only another resolver gave are IP-level reachability.
    net = p.network
    return _assemble(
        index,
        platform,
        target,
        host,
        s,
        own,
        p,
        dns=dns_facts(index, host, s, p),
        tcp=tcp_facts(index, host, net),
        tls=tls_facts(index, host, net),
        http=http_facts(index, host, net),
        protocol=protocol_facts(index, net),
        stall=stall_facts(s),
    )
