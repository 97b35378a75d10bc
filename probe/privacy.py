"""Keep the probe's own IP address out of everything it stores: the Scrubber.

A volunteer's public address identifies them to anyone who reads the data (REFERENCE.md, "Volunteer
safety"). Servers echo it (blockpages, "your IP is ..." pages, X-Forwarded-For), error messages
quote it, reverse-DNS names spell it out (`5-160-12-34.dyn.isp.ir`, `34.12.160.5.in-addr.arpa`).
The Scrubber replaces every textual form of the probe's own addresses with "[scrubbed]" in every
string of a Measurement before the store sees it; the store and the exports then never hold it.

What is matched: an IPv4 address in dotted or dashed form, forwards or reversed (in-addr.arpa),
leading zeros allowed; an IPv6 address in any textual form (compressed or not, any case, in URL
brackets, percent-encoded brackets) and, since a /64 identifies one subscriber's line as surely
as the full address (privacy-extension addresses rotate inside it), any address in the same /64;
an IPv6 address that embeds one of the IPv4 addresses (IPv4-mapped, 6to4, Teredo). Over-scrubbing
a string is harmless; missing a form is not, so matching errs on the side of scrubbing.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
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

# Runs of characters an address can be written with, found in one linear pass. Candidates are
# cut out of these runs and parsed; a run is never trusted to be exactly one address
# ("id:2001:db8::1" glues a hex word on, "%5B2001:db8::1%5D" is a percent-encoded URL host).
_V4_RUN = re.compile(r"[0-9][0-9.-]*[0-9]")
_V6_RUN = re.compile(r"[0-9A-Fa-f:.]+")
_DIGITS = re.compile(r"[0-9]+")
# Only a string with a digit or a colon can hold an address (a C-speed test before any parsing).
_CANDIDATE = re.compile(r"[0-9:]")
# Short strings (addresses, endpoints, resolver specs) repeat across a run's measurements: their
# scrubbed form is remembered, up to this many (then the memo starts over).
_MEMO_TEXT_MAX = 256
_MEMO_ENTRIES = 8192
_HEX_PIECE_MAX = 4
# Colon-separated pieces in one IPv6 address: 8 groups, or fewer with "::" (which adds an empty
# piece at either end) or a dotted IPv4 tail; more than 9 pieces cannot be one address.
_V6_PIECES_MAX = 9


def parse_address(text: str) -> IPAddress:
    """An address from text such as "203.0.113.7", "[2001:db8::1]" or "fe80::1%eth0".

    Raises ValueError for anything else: an unparsable address is a configuration error.
    """
    cleaned = text.strip().removeprefix("[").removesuffix("]").split("%", 1)[0]
    return ipaddress.ip_address(cleaned)


class Scrubber:
    """Replaces the given addresses, in every textual form, with "[scrubbed]"."""

    def __init__(self, addresses: Iterable[str | IPAddress]) -> None:
        v4: set[ipaddress.IPv4Address] = set()
        v6_nets: set[ipaddress.IPv6Network] = set()
        for item in addresses:
            address = parse_address(item) if isinstance(item, str) else item
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
                address = address.ipv4_mapped
            if isinstance(address, ipaddress.IPv4Address):
                v4.add(address)
            else:
                v6_nets.add(ipaddress.IPv6Network((address, IPV6_SUBSCRIBER_PREFIX), strict=False))
        self._v4 = frozenset(v4)
        self._v4_octets = frozenset(tuple(a.packed) for a in v4)
        self._v6 = frozenset(v6_nets)
        self._memo: dict[str, str] = {}

    def __bool__(self) -> bool:
        return bool(self._v4 or self._v6)

    def __repr__(self) -> str:
        # Never print the addresses themselves: reprs end up in logs and tracebacks.
        return f"Scrubber({len(self._v4)} IPv4, {len(self._v6)} IPv6 /64)"

    # -- matching ----------------------------------------------------------------------------

    def _is_own_v4(self, pieces: Sequence[str]) -> bool:
        # Compared as octet tuples: building address objects here dominated a run's scrubbing.
        numbers = tuple(int(p) for p in pieces)
        return numbers in self._v4_octets or numbers[::-1] in self._v4_octets

    def _is_own_v6(self, text: str) -> bool:
        colons = text.count(":")
        # Cheap shape test first: parsing (and failing) costs far more, and bodies are long.
        if not (colons == 7 or (colons == 6 and "." in text) or ("::" in text and colons <= 7)):
            return False
        try:
            address = ipaddress.IPv6Address(text)
        except ValueError:
            return False
        if any(address in net for net in self._v6):
            return True
        embedded = (address.ipv4_mapped, address.sixtofour, (address.teredo or (None, None))[1])
        return any(v4 is not None and v4 in self._v4 for v4 in embedded)

    def _v4_spans(self, text: str) -> Iterable[tuple[int, int]]:
        for run in _V4_RUN.finditer(text):
            # Octets and their offsets; separators are "." or "-" (dashed rDNS names).
            pieces = [(m.group(), run.start() + m.start()) for m in _DIGITS.finditer(run.group())]
            for i in range(len(pieces) - 3):
                window = pieces[i : i + 4]
                if all(len(p) <= 3 for p, _ in window) and self._is_own_v4([p for p, _ in window]):
                    yield window[0][1], window[3][1] + len(window[3][0])

    def _v6_spans(self, text: str) -> Iterable[tuple[int, int]]:
        for run in _V6_RUN.finditer(text):
            # A sentence's full stop is no part of an address.
            value, base = run.group().rstrip("."), run.start()
            if value.count(":") < 2 or ("::" not in value and value.count(":") < 6):
                continue
            # Colons split the run into pieces; try every stretch of up to _V6_PIECES_MAX pieces.
            # A first or last piece longer than a hex group has neighbouring hex letters glued
            # on ("%5B2001:..." leaves "5B2001"): then try its last (first) 1-4 characters.
            bounds = [-1, *(i for i, ch in enumerate(value) if ch == ":"), len(value)]
            for a in range(len(bounds) - 1):
                first_start, first_end = bounds[a] + 1, bounds[a + 1]
                starts = _cuts(first_start, first_end, from_end=True)
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
                            if self._is_own_v6(value[s:e]):
                                yield base + s, base + e

    def text(self, value: str) -> str:
        """The string with every form of the own addresses replaced by "[scrubbed]"."""
        if not self or not _CANDIDATE.search(value):
            return value
        if len(value) > _MEMO_TEXT_MAX:
            return self._scrub(value)
        scrubbed = self._memo.get(value)
        if scrubbed is None:
            if len(self._memo) >= _MEMO_ENTRIES:
                self._memo.clear()
            scrubbed = self._memo[value] = self._scrub(value)
        return scrubbed

    def _scrub(self, value: str) -> str:
        spans = sorted({*self._v4_spans(value), *self._v6_spans(value)})
        if not spans:
            return value
        merged: list[list[int]] = []
        for start, end in spans:
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
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
