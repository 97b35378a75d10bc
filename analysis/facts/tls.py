"""TLS facts: the handshakes with the target's name, the certificate a rejected one presented,
the harmless-SNI A/B proof, and the control's handshakes for the same name."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from analysis.facts.attempts import (
    Attempt,
    Endpoint,
    Split,
    control_state,
    dominant,
    endpoint,
    handshake_reached_server,
    is_v6,
)
from analysis.facts.run import RunIndex
from analysis.facts.tcp import masked
from analysis.rules import CERTIFICATE_FAILURES, INTERRUPTED, TIMEOUT, UNREACHABLE
from probe.model import Details, Operation
from probe.names import normalise_host

# A handshake or exchange cut by the path: reset, aborted, closed, or stalled.
CUT = INTERRUPTED | {TIMEOUT}


@dataclass(frozen=True, slots=True)
class TlsFacts:
    attempted: bool
    ok: bool
    failure: str | None
    failed_operation: str | None
    cert_failure: str | None
    issuer: str | None
    sni_differential: bool
    sni_differential_failed: bool
    control_ok: bool | None
    control_issuer: str | None
    differential_ids: tuple[str, ...]


def ab_proved(
    host: str | None,
    cut: Sequence[Attempt[Details]],
    harmless_by_endpoint: Mapping[Endpoint, tuple[tuple[str, str], ...]],
) -> tuple[str, ...]:
    """The ids of every attempt in `cut` (failed with the target's name) that has, on the same
    address and port, a harmless-name attempt that got through, and of those harmless attempts:
    the differential's evidence (empty: not proved)."""
    ids: list[str] = []
    for attempt in cut:
        where = endpoint(attempt.d)
        harmless = [i for name, i in harmless_by_endpoint.get(where or ("", 0), ()) if name != host]
        if harmless:
            ids += [attempt.id, *harmless]
    return tuple(ids)


def tls_facts(index: RunIndex, host: str | None, s: Split) -> TlsFacts:
    live = [a for a in s.tls if not masked(index, a)]
    ok = any(a.failure is None for a in live)
    failed = [a for a in live if a.failure is not None]
    failure = None if ok else dominant([a.failure for a in failed if a.failure])
    operation = next((a.operation for a in failed if a.failure == failure), None)
    rejected = [a for a in failed if a.failure in CERTIFICATE_FAILURES or a.d.verify_failure]
    issuer = None
    if rejected and rejected[0].d.certificates:
        issuer = rejected[0].d.certificates[0].issuer or None
    differential_ids: tuple[str, ...] = ()
    if not ok:
        cut = [
            a
            for a in [*live, *s.tls_ab]
            if a.failure in CUT
            and a.operation == Operation.TLS_HANDSHAKE
            and normalise_host(a.d.sni) == host
        ]
        differential_ids = ab_proved(host, cut, index.tls_reached)
    ports = {e[1] for e in (endpoint(a.d) for a in s.tls) if e is not None}
    records = [
        r
        for r in (index.controls.tls_for(host) if host else ())
        if (not ports or r.port in ports) and not (is_v6(r.address) and r.failure in UNREACHABLE)
    ]
    good = [r for r in records if r.failure is None]
    sni_differential = bool(differential_ids)
    return TlsFacts(
        attempted=bool(live),
        ok=ok,
        failure=failure,
        failed_operation=operation,
        cert_failure=(
            (rejected[0].d.verify_failure or rejected[0].failure) if rejected and not ok else None
        ),
        issuer=issuer,
        sni_differential=sni_differential,
        sni_differential_failed=not ok
        and not sni_differential
        and any(
            a.failure is not None and not handshake_reached_server(a.failure, a.d) for a in s.tls_ab
        ),
        control_ok=control_state([r.failure is None for r in records]),
        control_issuer=good[0].leaf_issuer if good else None,
        differential_ids=differential_ids,
    )
