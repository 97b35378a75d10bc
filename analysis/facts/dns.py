"""DNS facts: the network resolver's answers against the controls' (fingerprints, bogons,
injection, consistency with the control or with a valid TLS handshake, another site's address)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from analysis.controls import ControlDns
from analysis.facts.attempts import Attempt, Split, control_state, dedup, dominant
from analysis.facts.resolvers import Paths
from analysis.facts.run import RunIndex
from analysis.fingerprints import is_bogon, match_dns
from probe.model import DnsQuery, DnsResponse, Failure
from probe.names import normalise_host

SSL_INVALID_HOSTNAME = str(Failure.SSL_INVALID_HOSTNAME)


@dataclass(frozen=True, slots=True)
class DnsFacts:
    addresses: tuple[str, ...]
    failure: str | None
    fingerprints: tuple[str, ...]
    bogons: tuple[str, ...]
    injection: bool
    injection_fingerprints: tuple[str, ...]
    consistent: bool | None
    validated_addresses: tuple[str, ...]
    control_addresses: tuple[str, ...]
    control_ok: bool | None
    # The network's answer is another real site's address: TLS to it presented a certificate
    # for another name while the control's address validated for this one.
    other_site: bool


def _forged_first(
    responses: Sequence[DnsResponse], control: frozenset[str], host: str | None
) -> list[str] | None:
    """Fingerprint ids (possibly none) when one of several different UDP responses is forged:
    the first being a fingerprint, a bogon, an error raced by a real answer, or an answer
    unlike the control's raced by one that matches it; or a later one being a fingerprint or
    a bogon (an injector that lost the race to the real answer is still an injector). None
    when no response is forged."""
    if len(responses) < 2:
        return None
    first = frozenset(responses[0].addresses)
    later = [frozenset(r.addresses) for r in responses[1:]]
    if all(other == first for other in later):
        return None
    fps = [fp.id for fp in match_dns(first, host=host)]
    if fps or any(is_bogon(a) for a in first):
        return fps
    for other in later:
        late = [fp.id for fp in match_dns(other, host=host)]
        if other != first and (late or any(is_bogon(a) for a in other)):
            return late
    if not first and any(later):
        return []  # an NXDOMAIN/empty answer raced by a real one
    if control and not first & control and any(other & control for other in later):
        return []
    return None


def _consistent(
    index: RunIndex, answers: tuple[str, ...], validated: tuple[str, ...], control: frozenset[str]
) -> bool | None:
    if not answers:
        return None
    if set(answers) & set(validated):
        return True  # a valid handshake for the name: legitimate whatever the control says
    if not control:
        return None
    if set(answers) & control:
        return True
    asn_of = index.asn_of
    if asn_of is not None:
        ours = {asn_of(a) for a in answers} - {None}
        theirs = {asn_of(a) for a in control} - {None}
        if ours & theirs:
            return True
    return False


def _validated(s: Split, host: str | None) -> tuple[str, ...]:
    """Addresses that completed a TLS handshake for `host` whose certificate verified."""
    return dedup(
        t.d.address
        for t in s.tls
        if t.failure is None and t.d.verified and normalise_host(t.d.sni) == host and t.d.address
    )


def _wrong_name(s: Split, host: str | None) -> frozenset[str]:
    """Addresses whose TLS handshake for `host` presented a certificate for another name."""
    return frozenset(
        t.d.address
        for t in s.tls
        if t.failure == SSL_INVALID_HOSTNAME and normalise_host(t.d.sni) == host and t.d.address
    )


def _validated_controls(
    others: Sequence[Attempt[DnsQuery]], validated: Sequence[str]
) -> list[ControlDns]:
    """Another plain resolver's answer is a control when an address of it completed a valid TLS
    handshake for the name: the certificate, not the resolver, vouches for it (the DNS
    consistency check of OONI Web Connectivity counts an answer that TLS validates as
    consistent, ooni/spec nettests/ts-017-web-connectivity.md)."""
    good = set(validated)
    return [
        ControlDns(
            normalise_host(a.d.query), a.d.resolver or "", a.d.addresses, a.failure, a.d.rcode
        )
        for a in others
        if good & set(a.d.addresses)
    ]


def dns_facts(index: RunIndex, host: str | None, s: Split, p: Paths) -> DnsFacts:
    """The network resolver's answers (p.network_dns) judged against the controls: the run's
    DoH answers, a helper's, and another plain resolver's answer that TLS validated. Every plain
    resolver's responses are read for injection and fingerprints: a forged answer to any query
    on this network is the network's."""
    validated = _validated(s, host)
    control_records = [
        *(index.controls.dns_for(host) if host else ()),
        *_validated_controls(p.other_dns, validated),
    ]
    control_addresses = frozenset(a for r in control_records for a in r.addresses)
    answers: list[str] = []
    seen: list[str] = []
    failures: list[str] = []
    injected, injected_fps = False, []
    for attempt in p.network_dns:
        answers += attempt.d.addresses
        if attempt.failure is not None:
            failures.append(attempt.failure)
    for attempt in s.dns:
        d = attempt.d
        seen += d.addresses
        for responses in (d.responses, d.aaaa_responses):
            for r in responses:
                seen += r.addresses
            forged = _forged_first(responses, control_addresses, host)
            if forged is not None:
                injected = True
                injected_fps += forged
    answers_t = dedup(answers)
    # An address that completed a valid handshake for the name is the name's, whatever it looks
    # like (a bogon on a corporate network, an address a fingerprint lists): never evidence.
    suspects = dedup(a for a in seen if a not in control_addresses and a not in validated)
    fingerprints = match_dns(suspects, host=host)
    wrong = _wrong_name(s, host)
    return DnsFacts(
        addresses=answers_t,
        failure=dominant(failures) if p.network_dns and not answers_t else None,
        fingerprints=tuple(fp.id for fp in fingerprints),
        bogons=tuple(a for a in suspects if is_bogon(a)),
        injection=injected,
        injection_fingerprints=dedup(injected_fps),
        consistent=_consistent(index, answers_t, validated, control_addresses),
        validated_addresses=validated,
        control_addresses=tuple(sorted(control_addresses)),
        control_ok=control_state([bool(r.addresses) for r in control_records]),
        other_site=bool(answers_t)
        and not set(answers_t) & set(validated)
        and bool(set(answers_t) & wrong)
        and bool(control_addresses & set(validated)),
    )
