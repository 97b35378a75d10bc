"""Resolver specs: which resolver a DNS check asks, parsed once from the config's text.

A resolver is the system's (getaddrinfo), or one spoken to over UDP or TCP by address, or DNS over
HTTPS by URL (RFC 8484). The config parses each spec once (a bad one is a one-line ConfigError
naming it); the DNS check, the helper and the network identity read the parsed ResolverSpec.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from probe.checks import format_endpoint

__all__ = [
    "DEFAULT_RESOLVERS",
    "DEFAULT_RESOLVER_TEXTS",
    "SYSTEM_RESOLVER",
    "ResolverSpec",
    "TransportName",
    "ip_text",
    "parse_resolver",
]

TransportName = Literal["system", "udp", "tcp", "doh"]

DNS_PORT = 53
HTTPS_PORT = 443
_USAGE = (
    "expected 'system', 'udp://IP[:port]', 'tcp://IP[:port]' (IPv6 in brackets, e.g. "
    "udp://[2001:db8::53]:53) or a DNS-over-HTTPS URL 'https://host[:port]/path'"
)
_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


@dataclass(frozen=True, slots=True)
class ResolverSpec:
    """A resolver to ask: the system's (getaddrinfo), or one spoken to over udp, tcp or doh.

    `spec` is the canonical text (port always given for udp/tcp, default port left out of a DoH
    URL); it is the observation's endpoint. For doh, `address` is the URL's host and `url` the URL.
    """

    transport: TransportName
    spec: str
    address: str | None = None
    port: int | None = None
    url: str | None = None

    def __str__(self) -> str:
        return self.spec


SYSTEM_RESOLVER = ResolverSpec("system", "system")

# The resolvers of a probe whose config names none. The first is the network's (the system's:
# what every application on the machine uses), judged alone. Then DNS over HTTPS to two
# independent providers, Cloudflare and Google, given by address so that reaching them never
# depends on the network's resolver: nobody on the path can rewrite their answers, so they are
# the DNS controls (OONI's test helper plays this role, ooni/spec ts-017). Last, Google's
# resolver over plain UDP: a forged answer racing the real one on its socket reveals on-path
# injection, which DoH cannot see (ICLab Centinel's second-answer test).
DEFAULT_RESOLVER_TEXTS = (
    "system",
    "https://1.1.1.1/dns-query",
    "https://8.8.8.8/dns-query",
    "udp://8.8.8.8",
)


def ip_text(text: str) -> str | None:
    """The canonical text of an IP address, or None when `text` is not one."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _port(raw: str, text: str | None, default: int) -> int:
    if text is None:
        return default
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"resolver {raw!r}: the port must be a number from 1 to 65535")
    return int(text)


def _ip_endpoint(raw: str, scheme: str, rest: str) -> tuple[str, int]:
    """The address and port of 'IP[:port]' or '[IPv6][:port]'."""
    if rest.startswith("["):
        end = rest.find("]")
        if end < 0:
            raise ValueError(f"resolver {raw!r}: missing ']' after the IPv6 address")
        host, tail = rest[1:end], rest[end + 1 :]
        if tail and not tail.startswith(":"):
            raise ValueError(f"resolver {raw!r}: unexpected {tail!r} after the address; {_USAGE}")
        port_text = tail[1:] if tail else None
        address = ip_text(host)
        if address is None or ":" not in address:
            raise ValueError(f"resolver {raw!r}: {host!r} in brackets is not an IPv6 address")
    else:
        if rest.count(":") > 1:
            raise ValueError(
                f"resolver {raw!r}: put an IPv6 address in brackets, e.g. {scheme}://[{rest}]:53"
            )
        host, colon, port_text_or_empty = rest.partition(":")
        port_text = port_text_or_empty if colon else None
        address = ip_text(host)
        if address is None:
            raise ValueError(
                f"resolver {raw!r}: {host!r} is not an IP address; a {scheme} resolver is given "
                f"by address (a name would itself need a resolver)"
            )
    return address, _port(raw, port_text, DNS_PORT)


def _doh(raw: str) -> ResolverSpec:
    parts = urlsplit(raw)
    try:
        explicit_port = parts.port
    except ValueError:
        raise ValueError(f"resolver {raw!r}: the port must be a number from 1 to 65535") from None
    host = parts.hostname
    if not host:
        raise ValueError(f"resolver {raw!r}: the DNS-over-HTTPS URL has no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"resolver {raw!r}: credentials in a DNS-over-HTTPS URL are not supported")
    if parts.query or parts.fragment:
        raise ValueError(
            f"resolver {raw!r}: a DNS-over-HTTPS URL takes no query or fragment (the probe "
            "POSTs the query as the body, RFC 8484)"
        )
    if not parts.path:
        raise ValueError(
            f"resolver {raw!r}: the DNS-over-HTTPS URL needs a path; servers usually use "
            f"/dns-query (https://{parts.netloc}/dns-query)"
        )
    address = ip_text(host)
    if address is None:
        labels = host.rstrip(".").split(".")
        if not all(_HOST_LABEL.match(label) for label in labels):
            raise ValueError(f"resolver {raw!r}: {host!r} is not a valid host name")
        address = host
    netloc = f"[{address}]" if ":" in address else address
    if explicit_port not in (None, HTTPS_PORT):
        netloc = f"{netloc}:{explicit_port}"
    url = f"https://{netloc}{parts.path}"
    return ResolverSpec("doh", url, address=address, port=explicit_port or HTTPS_PORT, url=url)


def parse_resolver(text: str) -> ResolverSpec:
    """Parse a resolver from config text; raise ValueError with a message meant for the user."""
    raw = text.strip()
    if not raw:
        raise ValueError(f"empty resolver: {_USAGE}")
    if raw.lower() == "system":
        return SYSTEM_RESOLVER
    scheme, separator, rest = raw.partition("://")
    scheme = scheme.lower()
    if not separator:
        if ip_text(raw.strip("[]")) is not None:
            raise ValueError(
                f"resolver {raw!r} has no scheme: write udp://{raw} (or tcp://, or a DoH URL)"
            )
        raise ValueError(f"unsupported resolver {raw!r}: {_USAGE}")
    if scheme in ("udp", "tcp"):
        if "/" in rest:
            raise ValueError(f"resolver {raw!r}: a {scheme} resolver takes no path; {_USAGE}")
        address, port = _ip_endpoint(raw, scheme, rest)
        transport: TransportName = "udp" if scheme == "udp" else "tcp"
        return ResolverSpec(
            transport, f"{scheme}://{format_endpoint(address, port)}", address=address, port=port
        )
    if scheme == "https":
        return _doh(raw)
    if scheme == "http":
        raise ValueError(f"resolver {raw!r}: DNS over HTTPS needs an https:// URL")
    raise ValueError(f"unsupported resolver scheme {scheme!r} in {raw!r}: {_USAGE}")


DEFAULT_RESOLVERS: tuple[ResolverSpec, ...] = tuple(map(parse_resolver, DEFAULT_RESOLVER_TEXTS))
