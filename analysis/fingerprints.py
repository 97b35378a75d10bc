"""Blockpage and DNS-injection fingerprints as data, bogon detection, and the matchers the verdict
rules call.

A fingerprint is a frozen record (id, kind, pattern, country, confidence, source): a DNS answer
that only a censor gives, or a pattern in an HTTP body or header that only a blockpage carries.
A match makes a verdict "confirmed"; everything else that differs from a control is an "anomaly"
(OONI's distinction). Ids are stable: verdicts and reports cite them.

Known false positives are data too (EXCLUSIONS): a host listed there never matches, whatever its
answers or pages look like. Captcha pages (Cloudflare's bot checks) are a separate table: they are
a server's own gate, never censorship, and match_http never returns them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache

from probe.addresses import BLOCKPAGE_ADDRESSES
from probe.records import Confidence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class FingerprintKind(StrEnum):
    """Where a fingerprint looks.

    dns:         a DNS answer; `pattern` is an IP address or network.
    http_body:   a regular expression searched (case-insensitive) in the start of the body.
    http_header: a regular expression searched in the value of the header named `header`.
    http_title:  a regular expression searched in the page's <title> (captchas only).
    """

    DNS = "dns"
    HTTP_BODY = "http_body"
    HTTP_HEADER = "http_header"
    HTTP_TITLE = "http_title"


# What ends a run of literal characters in a pattern (required_literals), and what it cannot read.
_QUANTIFIERS = frozenset("?*{")
_UNREAD = frozenset("()[]")
_MIN_NEEDLE = 3
_CLASS_ESCAPES = frozenset("sSdDwWAZ")


def required_literals(pattern: str) -> tuple[str, ...] | None:
    """Lower-case ASCII texts one of which every match of `pattern` contains, as a case-insensitive
    match on ASCII text contains it: the longest run of literal characters of each alternative.
    None when the pattern has groups or classes, or an alternative has no run of 3 characters
    (then the pattern is searched as it is).

    A run ends at anything that is not one literal character (., ^, $, \\s, \\d, +...); a
    character made optional by ?, * or {m,n} leaves it. \\b is zero-width: a run goes through
    it (what the run spells is still in the text)."""
    if any(c in _UNREAD for c in pattern):
        return None
    needles: list[str] = []
    best, run = "", ""
    i = 0
    while i <= len(pattern):
        c = pattern[i] if i < len(pattern) else "|"
        literal: str | None = None
        if c == "\\" and i + 1 < len(pattern):
            escaped = pattern[i + 1]
            i += 2
            if escaped in "bB":
                continue
            if not escaped.isalnum():
                literal = escaped
            elif escaped not in _CLASS_ESCAPES:
                return None  # \\x41, \\u00e9, \\N{...}, octal, a back-reference: not read here
        else:
            i += 1
            if c in _QUANTIFIERS:
                run = run[:-1]
                if c == "{":
                    closing = pattern.find("}", i)
                    i = len(pattern) if closing == -1 else closing + 1
            elif c not in ".^$+|":
                literal = c
        if literal is not None:
            run += literal
            continue
        best = max(best, run, key=len)
        run = ""
        if c == "|" and literal is None:
            if len(best) < _MIN_NEEDLE or not best.isascii():
                return None
            needles.append(best.lower())
            best = ""
    return tuple(needles)


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """One censor's signature. `source` says where it is documented."""

    id: str
    kind: FingerprintKind
    pattern: str
    country: str | None
    confidence: Confidence
    source: str
    header: str | None = None
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)
    _network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = field(
        default=None, compare=False, repr=False
    )
    _needles: tuple[str, ...] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Compile once, and fail at import time on a malformed pattern (a bug in this table).
        if self.kind is FingerprintKind.DNS:
            object.__setattr__(self, "_network", ipaddress.ip_network(self.pattern, strict=True))
        else:
            object.__setattr__(self, "_regex", re.compile(self.pattern, re.IGNORECASE))
            object.__setattr__(self, "_needles", required_literals(self.pattern))
        if (self.kind is FingerprintKind.HTTP_HEADER) != (self.header is not None):
            raise ValueError(f"fingerprint {self.id}: `header` is for http_header fingerprints")

    def matches_address(self, address: IPAddress) -> bool:
        return self._network is not None and address in self._network

    def matches_text(self, text: str) -> bool:
        if self._regex is None:
            return False
        if self._needles is not None and text.isascii():
            # No needle in the text: the pattern cannot match (see required_literals), and a
            # substring test is ~10x cheaper than a case-insensitive search starting at \b.
            lowered = text.lower()
            if not any(needle in lowered for needle in self._needles):
                return False
        return self._regex.search(text) is not None


@dataclass(frozen=True, slots=True)
class Exclusion:
    """A host whose answers and pages must never be read as a blockpage."""

    id: str
    host: str
    comment: str


_IR_BLOCKPAGE_ADDRESSES = r"10\.10\.34\.3[4-6]"

DNS_FINGERPRINTS: tuple[Fingerprint, ...] = (
    # Iran's DNS injection points answers at the national blockpage (OONI, https://ooni.org/post/iran-internet-censorship/;
    # https://github.com/ooni/blocking-fingerprints; OONI backend#543 added .36 and d0::11 in 2022).
    *(
        Fingerprint(
            id=f"ir.dns.{address}",
            kind=FingerprintKind.DNS,
            pattern=address,
            country="IR",
            confidence=Confidence.CONFIRMED,
            source=(
                "Iran's national blockpage address (ooni/blocking-fingerprints; ooni/backend#543)"
            ),
        )
        for address in BLOCKPAGE_ADDRESSES
    ),
    Fingerprint(
        id="ir.dns.d0::11",
        kind=FingerprintKind.DNS,
        pattern="d0::11",
        country="IR",
        confidence=Confidence.CONFIRMED,
        source="Iran's IPv6 injection answer (ooni/blocking-fingerprints; ooni/backend#543)",
    ),
)

HTTP_FINGERPRINTS: tuple[Fingerprint, ...] = (
    Fingerprint(
        id="ir.http.iframe",
        kind=FingerprintKind.HTTP_BODY,
        # The whole blockpage is a frame around the national filter's page (OONI, https://ooni.org/post/iran-internet-censorship/).
        pattern=rf"<iframe\s[^>]*src\s*=\s*[\"']?https?://{_IR_BLOCKPAGE_ADDRESSES}(?![\d])",
        country="IR",
        confidence=Confidence.CONFIRMED,
        source='Iran blockpage body: <iframe src="http://10.10.34.34?type=Invalid Site...',
    ),
    Fingerprint(
        id="ir.http.invalid_site_policy",
        kind=FingerprintKind.HTTP_BODY,
        pattern=r"\?type=Invalid\s*Site&(?:amp;)?policy=MainPolicy",
        country="IR",
        confidence=Confidence.CONFIRMED,
        source="Iran blockpage frame URL query (ooni/blocking-fingerprints)",
    ),
    Fingerprint(
        id="ir.http.peyvandha",
        kind=FingerprintKind.HTTP_BODY,
        pattern=r"\bpeyvandha\.ir\b",
        country="IR",
        confidence=Confidence.CONFIRMED,
        source=(
            "Iran's older blockpage points at peyvandha.ir (ooni.org/post/iran-internet-censorship)"
        ),
    ),
    Fingerprint(
        id="ir.http.internet_ir",
        kind=FingerprintKind.HTTP_BODY,
        pattern=r"\binternet\.ir/1-2",
        country="IR",
        confidence=Confidence.CONFIRMED,
        source="Iran's older blockpage points at internet.ir/1-2 (ooni/blocking-fingerprints)",
    ),
    Fingerprint(
        id="ir.http.location",
        kind=FingerprintKind.HTTP_HEADER,
        header="location",
        # A redirect to the filter's page rather than a frame around it.
        pattern=(
            rf"^\s*https?://(?:{_IR_BLOCKPAGE_ADDRESSES}(?![\d])|(?:www\.)?peyvandha\.ir\b"
            r"|(?:www\.)?internet\.ir/1-2)"
        ),
        country="IR",
        confidence=Confidence.CONFIRMED,
        source=(
            "Iran's blockpage addresses and hosts as a redirect target (ooni/blocking-fingerprints)"
        ),
    ),
)

CAPTCHA_FINGERPRINTS: tuple[Fingerprint, ...] = (
    # Cloudflare's bot checks: the server answering, not a censor (a known OONI false positive,
    # ooni/probe#2528). They often answer 403/503 with a small page, like a blockpage would.
    Fingerprint(
        id="captcha.cloudflare.attention_required",
        kind=FingerprintKind.HTTP_TITLE,
        pattern=r"Attention Required!?\s*\|\s*Cloudflare",
        country=None,
        confidence=Confidence.CONFIRMED,
        source="Cloudflare's captcha interstitial title",
    ),
    Fingerprint(
        id="captcha.cloudflare.just_a_moment",
        kind=FingerprintKind.HTTP_TITLE,
        pattern=r"^\s*Just a moment\.*\s*$",
        country=None,
        confidence=Confidence.CONFIRMED,
        source="Cloudflare's JavaScript challenge title",
    ),
    Fingerprint(
        id="captcha.cloudflare.challenge_body",
        kind=FingerprintKind.HTTP_BODY,
        pattern=r"/cdn-cgi/challenge-platform/|\bcf_chl_opt\b|\bcf-browser-verification\b",
        country=None,
        confidence=Confidence.CONFIRMED,
        source="Cloudflare's challenge scripts in the page",
    ),
    Fingerprint(
        id="captcha.cloudflare.mitigated",
        kind=FingerprintKind.HTTP_HEADER,
        header="cf-mitigated",
        pattern=r"^\s*challenge\b",
        country=None,
        confidence=Confidence.CONFIRMED,
        source="Cloudflare marks challenge responses with cf-mitigated: challenge",
    ),
)

EXCLUSIONS: tuple[Exclusion, ...] = (
    Exclusion(
        id="fp.ir.ebaystatic",
        host="ir.ebaystatic.com",
        comment=(
            "eBay's image host answers Iranian users itself (a sanctions 403 'Access Denied' from"
            " its CDN), not a censor's page: a false positive of Iran blockpage detection"
        ),
    ),
)

# Address space that no public name should resolve to (IANA special-purpose registries,
# RFC 6890 / RFC 6598 / RFC 5737 / RFC 3849 / RFC 9637). ipaddress' own flags are consulted as
# well; this table adds what they miss (CGNAT is neither private nor global; multicast counts
# as global for IPv4).
BOGON_NETWORKS: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this network", unspecified
        "10.0.0.0/8",  # private
        "100.64.0.0/10",  # carrier-grade NAT (shared address space)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation (TEST-NET-1)
        "192.88.99.0/24",  # deprecated 6to4 relay anycast
        "192.168.0.0/16",  # private
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation (TEST-NET-2)
        "203.0.113.0/24",  # documentation (TEST-NET-3)
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and the limited broadcast address
        "::/128",  # unspecified
        "::1/128",  # loopback
        "100::/64",  # discard-only
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation (RFC 9637)
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # deprecated site-local
        "ff00::/8",  # multicast
    )
)
_GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")


# The same few addresses come back in target after target and run after run (a service's
# servers, a censor's blockpage address): both lookups below are pure functions of the text,
# cached so that an import of a million OONI documents parses each address once. Bounded: a
# hostile file can hold any number of distinct addresses.
_ADDRESS_CACHE = 16384


def parse_address(text: str) -> IPAddress | None:
    """An IP address, or None for anything else (a hostile control may send garbage)."""
    return _parse_text(text) if type(text) is str else _parse(text)


def _parse(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.strip().split("%", 1)[0])
    except (ValueError, AttributeError):
        return None


_parse_text = lru_cache(maxsize=_ADDRESS_CACHE)(_parse)


def is_bogon(address: str) -> bool:
    """True when `address` is not a public unicast address: private, loopback, link-local, CGNAT,
    unspecified, multicast, reserved, documentation, or IPv6 outside 2000::/3. Unparseable text
    counts as a bogon: a resolver that answers it is not giving a usable address."""
    if type(address) is str:
        return _is_bogon_text(address)
    return _is_bogon(address)


@lru_cache(maxsize=_ADDRESS_CACHE)
def _is_bogon_text(address: str) -> bool:
    return _is_bogon(address)


def _is_bogon(address: str) -> bool:
    ip = parse_address(address)
    if ip is None:
        return True
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped
        if mapped is not None:
            return is_bogon(str(mapped))
        if ip not in _GLOBAL_UNICAST_V6:
            return True
    if any(ip in network for network in BOGON_NETWORKS if network.version == ip.version):
        return True
    return bool(
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def is_excluded(host: str | None) -> Exclusion | None:
    """The exclusion that covers `host` (exactly, case-insensitive), if any."""
    if not host:
        return None
    name = host.strip().rstrip(".").lower()
    for exclusion in EXCLUSIONS:
        if name == exclusion.host:
            return exclusion
    return None


def match_dns(addresses: Iterable[str], *, host: str | None = None) -> list[Fingerprint]:
    """The DNS fingerprints any of `addresses` matches (each once, table order); none for an
    excluded host."""
    if is_excluded(host):
        return []
    parsed = [ip for ip in (parse_address(a) for a in addresses) if ip is not None]
    return [fp for fp in DNS_FINGERPRINTS if any(fp.matches_address(ip) for ip in parsed)]


def _match_page(
    table: Sequence[Fingerprint],
    headers: Iterable[Sequence[str]],
    body_prefix: str,
    title: str | None,
) -> list[Fingerprint]:
    header_values: dict[str, list[str]] = {}
    for pair in headers:
        if len(pair) >= 2:
            header_values.setdefault(str(pair[0]).strip().lower(), []).append(str(pair[1]))
    found = []
    for fp in table:
        if fp.kind is FingerprintKind.HTTP_BODY:
            hit = fp.matches_text(body_prefix)
        elif fp.kind is FingerprintKind.HTTP_HEADER:
            hit = any(fp.matches_text(v) for v in header_values.get(fp.header or "", ()))
        elif fp.kind is FingerprintKind.HTTP_TITLE:
            hit = title is not None and fp.matches_text(title)
        else:
            hit = False
        if hit:
            found.append(fp)
    return found


def match_http(
    status: int | None,
    headers: Iterable[Sequence[str]],
    body_prefix: str,
    title: str | None,
    *,
    host: str | None = None,
) -> list[Fingerprint]:
    """The blockpage fingerprints an HTTP response matches; none for an excluded host.

    `status` is accepted for fingerprints keyed on it, but none is: a 403 alone is what many
    servers answer (geo-blocks, bot checks) and would be a false positive on its own."""
    del status
    if is_excluded(host):
        return []
    return _match_page(HTTP_FINGERPRINTS, headers, body_prefix, title)


def match_captcha(
    headers: Iterable[Sequence[str]], body_prefix: str, title: str | None
) -> list[Fingerprint]:
    """The captcha fingerprints an HTTP response matches (a server's bot check, not blocking)."""
    return _match_page(CAPTCHA_FINGERPRINTS, headers, body_prefix, title)
