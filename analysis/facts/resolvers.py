"""Which resolver is the network's, and which attempts went through its answers.

The first configured resolver (the runner marks its DNS measurement `primary`) is the network's:
what every application on the volunteer's machine uses, usually the system's. It is judged alone
(OONI Web Connectivity judges the probe's own resolver against the control's answer, ooni/spec
nettests/ts-017-web-connectivity.md), never pooled with the other resolvers the config lists,
whose answers are controls at best. The connects, handshakes and requests made to addresses only
another resolver gave are IP-level reachability (what a user who changed resolver gets): they
are reported beside the network's verdict, not in place of it.

Records made before the runner marked the primary resolver are read as before: every plain
resolver's answers are the network's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from analysis.facts.attempts import Attempt, Split, address
from probe.model import Details, DnsQuery

# Where an address came from when it was no resolver's answer: a literal target, or a record
# that does not say.
_NO_RESOLVER = frozenset({"literal", None})


@dataclass(frozen=True, slots=True)
class Paths:
    """A target's attempts split by where their address came from.

    `network`: the network resolver's lookups, and every attempt to its answers (all attempts
    when it gave none: then the runner measured the other resolvers' answers in their place).
    `elsewhere`: attempts to addresses only another resolver gave, while the network's resolver
    gave addresses of its own.
    """

    network: Split
    elsewhere: Split
    network_dns: tuple[Attempt[DnsQuery], ...]
    other_dns: tuple[Attempt[DnsQuery], ...]
    network_answered: bool


def network_dns(s: Split) -> tuple[tuple[Attempt[DnsQuery], ...], tuple[Attempt[DnsQuery], ...]]:
    """(the network resolver's lookups, the other plain resolvers' lookups)."""
    marked = tuple(a for a in s.dns if a.d.primary is True)
    if not marked:
        return tuple(s.dns), ()
    return marked, tuple(a for a in s.dns if a.d.primary is not True)


def _through_network(
    attempt: Attempt[Details], sources: frozenset[str | None], answers: frozenset[str]
) -> bool:
    source = getattr(attempt.d, "address_source", None)
    return source in sources or address(attempt.d) in answers


# The Split fields whose attempts went to an address (all but the DNS lookups), read once.
_ENDPOINT_LAYERS = tuple(
    f.name for f in dataclasses.fields(Split) if f.name not in ("dns", "dns_control")
)


def paths(s: Split) -> Paths:
    """The target's attempts by path: through the network resolver's answers, or elsewhere."""
    ours, others = network_dns(s)
    answers = frozenset(a for attempt in ours for a in attempt.d.addresses)
    marked = any(a.d.primary is True for a in ours)
    if not marked or not answers:
        return Paths(s, Split(), ours, others, bool(answers))
    sources = frozenset({*(a.d.resolver for a in ours), *_NO_RESOLVER})
    network, elsewhere = Split(dns=list(s.dns), dns_control=list(s.dns_control)), Split()
    for name in _ENDPOINT_LAYERS:
        attempts: list[Attempt[Details]] = getattr(s, name)
        if not attempts:
            continue  # most layers of a target have none: both stay empty
        through: list[Attempt[Details]] = []
        other: list[Attempt[Details]] = []
        for attempt in attempts:
            (through if _through_network(attempt, sources, answers) else other).append(attempt)
        setattr(network, name, through)
        setattr(elsewhere, name, other)
    return Paths(network, elsewhere, ours, others, True)


def reachable(s: Split) -> bool | None:
    """Whether the deepest layer attempted in `s` (HTTP, TLS, TCP) got through at least once;
    None when nothing was attempted."""
    layers: tuple[Sequence[Attempt[Details]], ...] = (s.http, s.tls, s.tcp)
    for attempts in layers:
        if attempts:
            return any(a.failure is None for a in attempts)
    return None


def ip_reachable(p: Paths) -> bool | None:
    """IP-level reachability of the name's true address, reported beside a DNS verdict: the
    attempts to addresses only another resolver gave, or, when the network's resolver gave none,
    every attempt (the runner then measured the other resolvers' answers)."""
    return reachable(p.elsewhere if p.network_answered else p.network)
