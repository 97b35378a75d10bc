"""Which addresses are the public Internet: the one test every guard against reaching the
volunteer's LAN or the helper host's own network shares (the helper's egress policy, the HTTP
check's redirects).

An IPv6 address that embeds an IPv4 one is judged by what it embeds too.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

# Iran's national blockpage (ooni/backend#543 added .36 in 2022): the DNS fingerprints of
# analysis.fingerprints, and the one exception of the HTTP check's redirect policy (a redirect
# there is recorded, never followed).
BLOCKPAGE_ADDRESSES: tuple[str, ...] = ("10.10.34.34", "10.10.34.35", "10.10.34.36")


def is_ip(text: str) -> bool:
    """Whether `text` is an IP address literal (IPv4 or IPv6), not a name."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def non_public_reason(address: str) -> str | None:
    """Why `address` is not a public Internet address ("loopback", "private", ...), or None when
    it is one. Anything that does not parse counts as not public. An IPv6 address that embeds an
    IPv4 one (IPv4-mapped, 6to4, Teredo, NAT64) is judged by what it embeds too: 2002:7f00:1::
    reaches 127.0.0.1 through a 6to4 relay, 64:ff9b::a00:1 reaches 10.0.0.1 through a NAT64."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "unparsable"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return _plain_reason(ip.ipv4_mapped)
        if ip in _NAT64_LOCAL:
            # Where the IPv4 address sits depends on the prefix length its operator chose
            # (RFC 6052 section 2.2); all of the local-use prefix is someone's own network.
            return "NAT64 local-use"
        for embedded, form in _embedded(ip):
            reason = _plain_reason(embedded)
            if reason is not None:
                return f"{reason} (in {form})"
    return _plain_reason(ip)


# RFC 6052 section 2.1 (the well-known NAT64 prefix) and RFC 8215 (the local-use one).
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


def _embedded(ip: ipaddress.IPv6Address) -> Iterator[tuple[ipaddress.IPv4Address, str]]:
    if ip.sixtofour is not None:  # RFC 3056
        yield ip.sixtofour, "6to4"
    if ip.teredo is not None:  # RFC 4380: the server and the (de-obfuscated) client
        server, client = ip.teredo
        yield server, "Teredo"
        yield client, "Teredo"
    if ip in _NAT64:
        yield ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), "NAT64"


def _plain_reason(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    checks = (
        (ip.is_unspecified, "unspecified"),
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local"),
        (ip.is_multicast, "multicast"),
        (ip.is_private, "private"),
        (ip.is_reserved, "reserved"),
        # 100.64.0.0/10 (carrier-grade NAT) and the like: neither private nor routable.
        (not ip.is_global, "non-global"),
    )
    for matched, reason in checks:
        if matched:
            return reason
    return None
