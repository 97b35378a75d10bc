"""Keep the probe's own IP address out of everything it stores: the Scrubber.

A volunteer's public address identifies them to anyone who reads the data (Filastò & Appelbaum,
"OONI: Open Observatory of Network Interference", FOCI 2012, on the risk to users; OONI df-000
strips the probe's IP from reports). Servers echo it (blockpages, "your IP is ..." pages,
X-Forwarded-For, cookies and JWTs), error messages quote it, reverse-DNS names spell it out
(`5-160-12-34.dyn.isp.ir`, `34.12.160.5.in-addr.arpa`). The Scrubber replaces every form of the
probe's own addresses with "[scrubbed]" in every string of a Measurement before the store sees it;
the store and the exports then never hold it.

One method for every form: candidate tokens are cut out of the text by a few linear regex passes
(one per family of spellings), each candidate is normalised to the number it spells, and the number
is compared with the own addresses. The families:

    IPv4, separated  four octets separated by ".", "-" or "_", forwards or reversed (rDNS names,
                     in-addr.arpa), each octet decimal (leading zeros allowed), octal ("0240") or
                     0x-hex, as inet_aton(3) reads them
    IPv4, one number decimal, octal ("0" prefix), hex or 0x-hex integers ("94374946", "05a00c22")
    IPv6, grouped    any textual form (compressed or not, any case, in URL brackets, with a dotted
                     IPv4 tail), groups separated by ":", "-" or "_" (rDNS names, both orders)
    IPv6, one number the 32-hex-digit form, and the /64 alone as 16 hex digits
    IPv6, nibbles    the ip6.arpa form (reversed nibbles) and the forward dotted-nibble form
    percent-encoded  a run with %XX escapes (%2E, %3A, %5B...) is decoded and scanned again
    HTML references  the same for a run with numeric character references ("&#53;", "&#x2e;")
                     or the named ones of the separators ("&period;", "&colon;", "&lsqb;"...),
                     as a page may write any text (HTML Living Standard, 13.1.4)
    base64           a run of the base64 (or base64url) alphabet is decoded at each of its 4
                     character offsets (so text glued in front does not hide it, and the address
                     may sit at any of the 3 byte alignments of the plaintext) and the bytes are
                     scanned again, and for the raw 4- or 8-byte forms (cookies, JWT claims)

An IPv6 address matches when it lies in one of the own /64s (one subscriber line: SLAAC privacy
addresses rotate inside it, RFC 8981) or embeds an own IPv4 address: IPv4-mapped and -compatible
(RFC 4291), 6to4 (RFC 3056), Teredo (RFC 4380) and NAT64 (64:ff9b::/96, RFC 6052; 64:ff9b:1::/48,
RFC 8215). Over-scrubbing a string is harmless; missing a form is not, so matching errs on the side
of scrubbing.
"""

from __future__ import annotations

import binascii
import dataclasses
import html
import ipaddress
import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from probe.model import Details, Measurement, Observation

D = TypeVar("D", bound=Details)

if TYPE_CHECKING:
    from probe.runner import MeasurementSink

SCRUBBED = "[scrubbed]"

# An IPv6 /64 is one subscriber line: SLAAC privacy addresses rotate inside it.
IPV6_SUBSCRIBER_PREFIX = 64

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# -- candidate tokens, one pattern per family, each found in one linear pass ------------------
# A run is never trusted to be exactly one address ("id:2001:db8::1" glues a hex word on,
# "%5B2001:db8::1%5D" is a percent-encoded URL host): candidates are cut out of it.
# An octet as inet_aton(3) reads it: decimal, octal with a leading 0, or 0x-hex.
_V4_PIECE = re.compile(r"0[xX][0-9A-Fa-f]{1,2}|[0-9]{1,4}")
_V4_RUN = re.compile(r"[0-9]{1,4}(?:[._-][0-9]{1,4}){3,}")
# The same with 0x-hex octets: a slower pattern, used only on text with an "0x" in it.
_V4_HEX_RUN = re.compile(
    r"(?:0[xX][0-9A-Fa-f]{1,2}|[0-9]{1,4})(?:[._-](?:0[xX][0-9A-Fa-f]{1,2}|[0-9]{1,4})){3,}"
)
# Maximal runs of hex digits (greedy and unbounded, so a match never starts inside a run).
_HEX_RUN = re.compile(r"[0-9A-Fa-f]{7,}")
_OCTAL = re.compile(r"[0-7]+")
# An IPv4 address as one number: 7-8 hex digits (1.0.0.0 is 0x1000000), up to 10 decimal digits,
# up to 12 octal digits with the leading 0 (0o37777777777).
_V4_NUMBER_MAX = 12
_PREFIX_HEX = 16  # a /64 written as one hex number
_ADDRESS_HEX = 32  # an IPv6 address written as one hex number
# Runs with at least two colons (an IPv6 address has two or more).
_V6_RUN = re.compile(r"(?<![0-9A-Fa-f.:])[0-9A-Fa-f.]*:[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*")
_NOT_TRIPLE_COLON = re.compile(r"(?:[^:]|:(?!::)|(?<=[^:]):(?=:[^:]))+")
# 16 to 32 dotted single nibbles: an ip6.arpa name (16 cover a /64).
_NIBBLE_RUN = re.compile(r"(?<![0-9A-Za-z.])(?:[0-9A-Fa-f]\.){15,31}[0-9A-Fa-f](?![0-9A-Za-z])")
# A %XX escape, and the run around it of what may sit in an address or a URL query value.
_PERCENT_RUN_CHARS = frozenset(
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz.:_[]%-"
)
_PERCENT_RUN_END = re.compile(r"[0-9A-Za-z.:_\[\]%-]*")
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
# A numeric character reference (the ";" is optional in HTML), or a named one of a character an
# address form has outside digits and hex letters ("&amp;" and the like are no candidates).
_REFERENCE = re.compile(
    r"&#(?:[0-9]{1,7}|[xX][0-9A-Fa-f]{1,6});?"
    r"|&(?:period|colon|lsqb|rsqb|lbrack|rbrack|lowbar|UnderBar|percnt|num);"
)
_REFERENCE_RUN_CHARS = _PERCENT_RUN_CHARS | frozenset("&#;")
_REFERENCE_RUN_END = re.compile(r"[0-9A-Za-z.:_\[\]%&#;-]*")
# Runs of the base64 and base64url alphabets long enough to hold 4 raw bytes (with padding).
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{6,}={0,2}")
_BASE64_MIN = 8
_URLSAFE = str.maketrans("-_", "+/")
_UPPER = re.compile("[A-Z]")
_PRINTABLE_RUN = re.compile(rb"[\x20-\x7e]{7,}")
# How many decodings deep (percent inside base64 inside percent...) a token is followed.
_DEPTH_MAX = 3
# Only a string with a digit or a colon can spell an address outside base64 (a C-speed test).
_CANDIDATE = re.compile(r"[0-9:]")
# Short strings (addresses, endpoints, resolver specs) repeat across a run's measurements: their
# scrubbed form is remembered, up to this many (then the memo starts over).
_MEMO_TEXT_MAX = 256
_MEMO_ENTRIES = 8192
_HEX_PIECE_MAX = 4
# Colon-separated pieces in one IPv6 address: 8 groups, or fewer with "::" (which adds an empty
# piece at either end) or a dotted IPv4 tail; more than 9 pieces cannot be one address.
_V6_PIECES_MAX = 9

# -- IPv6 forms that embed an IPv4 address -------------------------------------------------
_PREFIX_SHIFT = 128 - IPV6_SUBSCRIBER_PREFIX
_LOW32 = 0xFFFFFFFF
# The upper 96 bits of the forms whose low 32 bits are the IPv4 address: IPv4-compatible (::/96)
# and IPv4-mapped (::ffff:0:0/96, RFC 4291 2.5.5), NAT64 well-known (64:ff9b::/96, RFC 6052).
_EMBEDS_LOW32 = frozenset({0, 0xFFFF, 0x0064FF9B << 64})
# NAT64 local-use 64:ff9b:1::/48 (RFC 8215), in the /96 format of RFC 6052 below it.
_NAT64_LOCAL = 0x0064FF9B0001
_SIX_TO_FOUR = 0x2002  # 2002::/16, the IPv4 address in bits 16-47 (RFC 3056)
_TEREDO = 0x20010000  # 2001::/32, the client address inverted in the low 32 bits (RFC 4380)


def parse_address(text: str) -> IPAddress:
    """An address from text such as "203.0.113.7", "[2001:db8::1]" or "fe80::1%eth0".

    Raises ValueError for anything else: an unparsable address is a configuration error.
    """
    cleaned = text.strip().removeprefix("[").removesuffix("]").split("%", 1)[0]
    return ipaddress.ip_address(cleaned)


class Scrubber:
    """Replaces the given addresses, in every form, with "[scrubbed]"."""

    def __init__(self, addresses: Iterable[str | IPAddress]) -> None:
        v4: set[int] = set()
        prefixes: set[int] = set()
        for item in addresses:
            address = parse_address(item) if isinstance(item, str) else item
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
                address = address.ipv4_mapped
            if isinstance(address, ipaddress.IPv4Address):
                v4.add(int(address))
            else:
                prefixes.add(int(address) >> _PREFIX_SHIFT)
        self._v4 = frozenset(v4)
        # Octet tuples both ways round: the reversed order is how in-addr.arpa names spell it.
        octets = [tuple(n.to_bytes(4, "big")) for n in v4]
        self._v4_octets = frozenset([*octets, *(o[::-1] for o in octets)])
        self._v4_first = frozenset(o[0] for o in self._v4_octets)
        self._prefixes = frozenset(prefixes)
        # The first group an own IPv6 address can start with: an own /64's, or that of a form
        # embedding an own IPv4 address (0 also stands for a leading "::").
        embedding = {0, _SIX_TO_FOUR, _TEREDO >> 16, 0x64} if v4 else set()
        self._v6_first = frozenset({p >> 48 for p in prefixes} | embedding)
        # The raw forms a binary token (a decoded cookie) could hold.
        self._packed = tuple(
            [n.to_bytes(4, "big") for n in v4] + [p.to_bytes(8, "big") for p in prefixes]
        )
        self._memo: dict[str, str] = {}

    def __bool__(self) -> bool:
        return bool(self._v4 or self._prefixes)

    def __repr__(self) -> str:
        # Never print the addresses themselves: reprs end up in logs and tracebacks.
        return f"Scrubber({len(self._v4)} IPv4, {len(self._prefixes)} IPv6 /64)"

    # -- comparing a normalised candidate -------------------------------------------------

    def _own_v6(self, value: int) -> bool:
        """Whether the 128-bit address is in an own /64 or embeds an own IPv4 address."""
        if value >> _PREFIX_SHIFT in self._prefixes:
            return True
        if not self._v4:
            return False
        low32 = value & _LOW32
        high = value >> 32
        if high in _EMBEDS_LOW32 or value >> 80 == _NAT64_LOCAL:  # mapped, compatible, NAT64
            return low32 in self._v4
        if value >> 112 == _SIX_TO_FOUR:
            return (value >> 80) & _LOW32 in self._v4
        if value >> 96 == _TEREDO:
            return (~value & _LOW32) in self._v4  # the client address, bits inverted
        return False

    def _own_v6_text(self, text: str) -> bool:
        colons = text.count(":")
        # Cheap shape test first: parsing (and failing) costs far more, and bodies are long.
        if colons == 3 and "." not in text and "::" not in text:  # a /64 written alone
            try:
                groups = [int(g, 16) for g in text.split(":") if len(g) <= _HEX_PIECE_MAX]
            except ValueError:
                return False
            return len(groups) == 4 and _join16(groups) in self._prefixes
        if not (colons == 7 or (colons == 6 and "." in text) or ("::" in text and colons <= 7)):
            return False
        if ":::" in text or text.count("::") > 1:  # hostile runs of colons: never an address
            return False
        try:
            address = ipaddress.IPv6Address(text)
        except ValueError:
            return False
        return self._own_v6(int(address))

    # -- the families of spellings ---------------------------------------------------------

    def _v4_separated(self, text: str) -> Iterator[tuple[int, int]]:
        pattern = _V4_HEX_RUN if "0x" in text or "0X" in text else _V4_RUN
        for run in pattern.finditer(text):
            pieces = [
                (m.start(), m.end(), _octet_values(m.group()))
                for m in _V4_PIECE.finditer(run.group())
            ]
            base = run.start()
            for i in range(len(pieces) - 3):
                if not any(v in self._v4_first for v in pieces[i][2]):
                    continue  # a cheap test first: hostile text may hold a million pieces
                window = pieces[i : i + 4]
                if any(o in self._v4_octets for o in _products([p[2] for p in window])):
                    yield base + window[0][0], base + window[3][1]

    def _numbers(self, text: str) -> Iterator[tuple[int, int]]:
        for run in _HEX_RUN.finditer(text):
            token = run.group()
            size = len(token)
            if size <= _V4_NUMBER_MAX:
                own = self._v4_number(token)
            elif size == _PREFIX_HEX:
                own = int(token, 16) in self._prefixes
            else:
                own = size == _ADDRESS_HEX and self._own_v6(int(token, 16))
            if own:
                start = run.start()
                # "0x05a00c22": the prefix goes too ("0" ends the hex run before the "x").
                if start >= 2 and text[start - 1] in "xX" and text[start - 2] == "0":
                    start -= 2
                yield start, run.end()

    def _v4_number(self, token: str) -> bool:
        if not self._v4:
            return False
        if token.isdigit():
            if int(token) in self._v4:
                return True
            if token[0] == "0" and _OCTAL.fullmatch(token) and int(token, 8) in self._v4:
                return True
        return len(token) <= 8 and int(token, 16) in self._v4

    def _v6_grouped(self, text: str) -> Iterator[tuple[int, int]]:
        # Dashes and underscores (rDNS names; "--" stands for "::") read as colons: the same
        # length, so spans map back one to one, and one pass finds every separator.
        separated = "-" in text or "_" in text
        grouped = text.replace("-", ":").replace("_", ":") if separated else text
        for run in _V6_RUN.finditer(grouped):
            value = run.group().rstrip(".")
            yield from self._v6_run(value, run.start())
            original = text[run.start() : run.start() + len(value)]
            if separated and ("-" in original or "_" in original):
                # Reversed group order (rDNS names written least significant group first):
                # a piece that starts at offset s in the reversed run ends at len - s here.
                backward = ":".join(reversed(value.split(":")))
                for start, end in self._v6_run(backward, 0):
                    yield _widen(value, len(value) - end, len(value) - start, run.start())

    def _v6_run(self, value: str, base: int) -> Iterator[tuple[int, int]]:
        if ":::" in value:  # no address spans three colons: scan the stretches between them
            for part in _NOT_TRIPLE_COLON.finditer(value):
                yield from self._v6_run(part.group(), base + part.start())
            return
        colons = value.count(":")
        if colons < 3 or ("::" not in value and colons not in (3, 6, 7)):
            return
        # Colons split the run into pieces; try every stretch of up to _V6_PIECES_MAX pieces.
        # A first or last piece longer than a hex group has neighbouring hex letters glued on
        # ("%5B2001:..." leaves "5B2001"): then try its last (first) 1-4 characters.
        bounds = [-1, *(i for i, ch in enumerate(value) if ch == ":"), len(value)]
        for a in range(len(bounds) - 1):
            end = bounds[a + 1]
            # Only starts whose first group can begin an own address (a cheap test that spares
            # the parses below for nearly every run, and for hostile text a million of them).
            starts = [
                s for s in _cuts(bounds[a] + 1, end, from_end=True) if self._first(value[s:end])
            ]
            if not starts:
                continue
            for b in range(a + 2, min(len(bounds), a + 1 + _V6_PIECES_MAX)):
                if b - 2 > a and bounds[b - 1] - bounds[b - 2] - 1 > _HEX_PIECE_MAX:
                    break  # a middle piece longer than a hex group: no address spans it
                last_start, last_end = bounds[b - 1] + 1, bounds[b]
                dot = value.find(".", last_start, last_end)
                if dot < 0:
                    ends = _cuts(last_start, last_end, from_end=False)
                else:  # a dotted IPv4 tail, or a hex group that a dot follows
                    ends = [last_end, *_cuts(last_start, dot, from_end=False)]
                for s in starts:
                    for e in ends:
                        if self._own_v6_text(value[s:e]):
                            yield base + s, base + e

    def _first(self, group: str) -> bool:
        if not group:
            return 0 in self._v6_first
        try:
            return int(group, 16) in self._v6_first
        except ValueError:
            return False

    def _nibbles(self, text: str) -> Iterator[tuple[int, int]]:
        for run in _NIBBLE_RUN.finditer(text):
            nibbles = run.group()[::2]
            # ip6.arpa: least significant nibble first, so the /64 is the last 16, reversed.
            reverse = nibbles[::-1]
            forward = nibbles
            for spelled in (reverse, forward):
                if len(spelled) == _ADDRESS_HEX and self._own_v6(int(spelled, 16)):
                    yield run.span()
                    break
                if int(spelled[:_PREFIX_HEX], 16) in self._prefixes:
                    yield run.span()
                    break

    def _escaped(
        self,
        text: str,
        depth: int,
        escape: re.Pattern[str],
        run_chars: frozenset[str],
        run_end: re.Pattern[str],
        unescape: Callable[[re.Match[str]], str],
    ) -> Iterator[tuple[int, int]]:
        """The own addresses in the runs of `text` that hold an escape (percent-encoding, HTML
        references): each run decoded and scanned again, spans mapped back into `text`."""
        covered = 0
        for found in escape.finditer(text):
            if found.start() < covered:
                continue
            # The run around the escape: found from it (a search for runs with an escape in
            # them would try every word of a page).
            start = found.start()
            while start > covered and text[start - 1] in run_chars:
                start -= 1
            end = run_end.match(text, found.start()).end()  # type: ignore[union-attr]
            covered = end
            decoded, offsets = _decode(text[start:end], escape, unescape)
            for s, e in self._spans(decoded, depth + 1):
                yield start + offsets[s], start + offsets[e]

    def _base64(self, text: str, depth: int) -> Iterator[tuple[int, int]]:
        for run in _BASE64_RUN.finditer(text):
            token = run.group()
            # Every textual form puts one of its characters first in a 3-byte group, and all
            # of them but "x" (0x30-0x3a, "." "-" "_" "%" and hex letters) encode there as an
            # uppercase letter: a run without one cannot hide a textual form (a C-speed test
            # that skips most words of a page).
            if _UPPER.search(token) and self._in_base64(token, depth):
                yield run.span()

    def _in_base64(self, token: str, depth: int) -> bool:
        token = token.rstrip("=").translate(_URLSAFE)
        for offset in range(4):
            chunk = token[offset:]
            size = len(chunk) & ~3
            rest = len(chunk) - size
            if rest == 1:
                chunk = chunk[:size]
            elif rest:
                chunk += "=" * (4 - rest)
            if len(chunk) < _BASE64_MIN:
                return False
            try:
                data = binascii.a2b_base64(chunk)
            except binascii.Error:
                continue
            if any(packed in data for packed in self._packed):
                return True
            # Decoded bytes are mostly noise: only their printable stretches can hold a textual
            # form (or a nested encoding), and random bytes rarely have 7 printable in a row.
            for stretch in _PRINTABLE_RUN.finditer(data):
                if self._spans(stretch.group().decode("ascii"), depth + 1):
                    return True
        return False

    def _spans(self, text: str, depth: int = 0) -> list[tuple[int, int]]:
        spans: list[tuple[int, int]] = []
        if _CANDIDATE.search(text):
            spans.extend(self._v4_separated(text))
            spans.extend(self._numbers(text))
            spans.extend(self._v6_grouped(text))
            # ip6.arpa names (a C-speed test: the nibble pattern costs a pass of its own).
            if "ip6" in text or "IP6" in text:
                spans.extend(self._nibbles(text))
            if "%" in text and depth < _DEPTH_MAX:
                spans.extend(
                    self._escaped(
                        text, depth, _PERCENT, _PERCENT_RUN_CHARS, _PERCENT_RUN_END, _unpercent
                    )
                )
        if "&" in text and depth < _DEPTH_MAX:
            # Outside the digit test: "&period;" joins digits that may all be references.
            spans.extend(
                self._escaped(
                    text, depth, _REFERENCE, _REFERENCE_RUN_CHARS, _REFERENCE_RUN_END, _unreference
                )
            )
        if depth < _DEPTH_MAX:
            spans.extend(self._base64(text, depth))
        return spans

    def text(self, value: str) -> str:
        """The string with every form of the own addresses replaced by "[scrubbed]"."""
        if not self:
            return value
        if len(value) > _MEMO_TEXT_MAX:
            return self._scrub(value)
        scrubbed = self._memo.get(value)
        if scrubbed is None:
            if len(self._memo) >= _MEMO_ENTRIES:
                self._memo.clear()
            scrubbed = self._memo[value] = self._scrub(value)
        return scrubbed

    def cut_at(self, value: str, size: int) -> int:
        """Where `value` may be cut at `size` characters or later without cutting through an
        own address: `size`, or the end of the address that runs across it. A prefix cut inside
        "5.160.12.34" keeps "5.160.1", which no longer spells the address for the scrubber but
        still narrows the volunteer down to a few thousand addresses."""
        if not self or len(value) <= size:
            return size
        for start, end in self._merged(value):
            if start < size < end:
                return end
        return size

    def _merged(self, value: str) -> list[list[int]]:
        """The spans of own addresses in `value`, sorted, overlapping ones joined."""
        merged: list[list[int]] = []
        for start, end in sorted(set(self._spans(value))):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        return merged

    def _scrub(self, value: str) -> str:
        merged = self._merged(value)
        if not merged:
            return value
        out, last = [], 0
        for start, end in merged:
            out.append(value[last:start])
            out.append(SCRUBBED)
            last = end
        out.append(value[last:])
        return "".join(out)

    # -- records -----------------------------------------------------------------------------

    def value(self, value: Any) -> Any:
        """A value scrubbed throughout: a string, a record (every field), a tuple, list or
        mapping (keys included); enums and numbers are left as they are."""
        if isinstance(value, StrEnum) or not isinstance(value, str | tuple | list | Mapping):
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                changes = {
                    f.name: self.value(getattr(value, f.name)) for f in dataclasses.fields(value)
                }
                return dataclasses.replace(value, **changes)
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, tuple):
            return tuple(self.value(v) for v in value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        scrubbed = {self.value(k): self.value(v) for k, v in value.items()}
        return MappingProxyType(scrubbed) if isinstance(value, MappingProxyType) else scrubbed

    def scrub_observation(self, obs: Observation[D]) -> Observation[D]:
        """The observation with its endpoint, failure strings and details scrubbed."""
        if not self:
            return obs
        detail = obs.failure_detail
        return dataclasses.replace(
            obs,
            endpoint=self.text(obs.endpoint),
            failure=None if obs.failure is None else self.text(obs.failure),
            failure_detail=None if detail is None else self.text(detail),
            details=self.value(obs.details),
        )

    def scrub_measurement(self, measurement: Measurement) -> Measurement:
        """The measurement with every string in it scrubbed (its observation above all)."""
        if not self:
            return measurement
        return dataclasses.replace(
            measurement,
            platform=self.text(measurement.platform),
            target=self.text(measurement.target),
            observation=self.scrub_observation(measurement.observation),
        )


def _join16(groups: Sequence[int]) -> int:
    value = 0
    for group in groups:
        value = value << 16 | group
    return value


def _octet_values(piece: str) -> tuple[int, ...]:
    """The octet values one piece of a separated IPv4 address may spell (inet_aton(3) reads
    "012" as octal 10; a dotted quad with leading zeros is usually meant as decimal 12)."""
    if piece[:2] in ("0x", "0X"):
        return (int(piece, 16),)
    values = []
    if len(piece) <= 3:
        values.append(int(piece))
    if len(piece) > 1 and piece[0] == "0" and _OCTAL.fullmatch(piece):
        values.append(int(piece, 8))
    return tuple(v for v in values if v <= 255)


def _products(choices: Sequence[tuple[int, ...]]) -> Iterator[tuple[int, ...]]:
    if all(len(c) == 1 for c in choices):
        yield tuple(c[0] for c in choices)
    else:
        yield from itertools.product(*choices)


def _unpercent(escape: re.Match[str]) -> str:
    return chr(int(escape.group(1), 16))  # as Latin-1: one character per byte


def _unreference(reference: re.Match[str]) -> str:
    return html.unescape(reference.group())


def _decode(
    run: str, escape: re.Pattern[str], unescape: Callable[[re.Match[str]], str]
) -> tuple[str, list[int]]:
    """The run with its escapes decoded and, for each decoded character and the end, its offset
    in the run."""
    out: list[str] = []
    offsets: list[int] = []
    last = 0
    for found in escape.finditer(run):
        for i in range(last, found.start()):
            out.append(run[i])
            offsets.append(i)
        for ch in unescape(found):
            out.append(ch)
            offsets.append(found.start())
        last = found.end()
    for i in range(last, len(run)):
        out.append(run[i])
        offsets.append(i)
    offsets.append(len(run))
    return "".join(out), offsets


def _widen(value: str, start: int, end: int, base: int) -> tuple[int, int]:
    """The span widened to whole colon-delimited pieces, offset by base."""
    start = value.rfind(":", 0, start) + 1 if start > 0 else 0
    stop = value.find(":", end) if end < len(value) else -1
    return base + start, base + (len(value) if stop < 0 else stop)


def _cuts(start: int, end: int, *, from_end: bool) -> list[int]:
    """Where an address may start (from_end: within the piece's last 4 characters) or end
    (within its first 4) inside the piece [start, end) of a run."""
    if end - start <= _HEX_PIECE_MAX:
        return [start] if from_end else [end]
    if from_end:
        return [end - k for k in range(_HEX_PIECE_MAX, 0, -1)]
    return [start + k for k in range(_HEX_PIECE_MAX, 0, -1)]


class ScrubbingSink:
    """A measurement sink (the runner's MeasurementSink) that scrubs each batch before passing
    it on, so that nothing unscrubbed reaches the store."""

    def __init__(self, sink: MeasurementSink, scrubber: Scrubber) -> None:
        self._sink = sink
        self._scrubber = scrubber

    def save_measurements(self, batch: Sequence[Measurement]) -> None:
        self._sink.save_measurements([self._scrubber.scrub_measurement(m) for m in batch])
