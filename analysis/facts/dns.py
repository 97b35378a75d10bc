"""DNS facts: the probe's own answers against the controls' (fingerprints, bogons, injection,
consistency with the control or with a valid TLS handshake)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from analysis.facts.attempts import Split, control_state, dedup, dominant
from analysis.facts.run import RunIndex
from analysis.fingerprints import is_bogon, match_dns
from probe.model import DnsResponse
from probe.names import normalise_host


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


def dns_facts(index: RunIndex, host: str | None, s: Split) -> DnsFacts:
    control_records = index.controls.dns_for(host) if host else ()
    control_addresses = frozenset(a for r in control_records for a in r.addresses)
    answers: list[str] = []
    seen: list[str] = []
    failures: list[str] = []
    injected, injected_fps = False, []
    for attempt in s.dns:
        d = attempt.d
        answers += d.addresses
        seen += d.addresses
        if attempt.failure is not None:
            failures.append(attempt.failure)
        for responses in (d.responses, d.aaaa_responses):
            for r in responses:
                seen += r.addresses
            forged = _forged_first(responses, control_addresses, host)
            if forged is not None:
                injected = True
                injected_fps += forged
    answers_t, seen_t = dedup(answers), dedup(seen)
    fingerprints = match_dns([a for a in seen_t if a not in control_addresses], host=host)
    validated = dedup(
        t.d.address
        for t in s.tls
        if t.failure is None and t.d.verified and normalise_host(t.d.sni) == host
    )
    return DnsFacts(
        addresses=answers_t,
        failure=dominant(failures) if s.dns and not answers_t else None,
        fingerprints=tuple(fp.id for fp in fingerprints),
        bogons=tuple(a for a in seen_t if is_bogon(a) and a not in control_addresses),
        injection=injected,
        injection_fingerprints=dedup(injected_fps),
        consistent=_consistent(index, answers_t, validated, control_addresses),
        validated_addresses=tuple(a for a in validated if a),
        control_addresses=tuple(sorted(control_addresses)),
        control_ok=control_state([bool(r.addresses) for r in control_records]),
    )
