"""Protocol-allowlist facts: a flow of random first data that met silence, and what proves the
silence is the path's: the helper's flow to the same endpoint got an answer, or (without a
helper) the same address and port answered HTTP or TLS in this run, which an allowlist lets
through (the protocol A/B test: the endpoint's own handshake or request against other bytes).
A helper whose own flow met silence too shows the server keeps quiet: no evidence either way."""

from __future__ import annotations

from dataclasses import dataclass

from analysis.facts.attempts import Split, dedup, endpoint
from analysis.facts.run import RunIndex
from analysis.rules import PROOF_CONTROL, PROOF_RUN, TIMEOUT
from probe.model import Operation


@dataclass(frozen=True, slots=True)
class ProtocolFacts:
    silent: bool  # a probe met silence that no control's probe met as well
    proof: str | None  # PROOF_CONTROL, PROOF_RUN or None
    speaks: str | None
    evidence: tuple[str, ...]  # the silent probes and what proves them


def endpoint_speaks(s: Split) -> str | None:
    """What the endpoint's own traffic is, as the runner recorded it on its protocol probes."""
    return next((a.d.speaks for a in s.probes if a.d.speaks), None)


def protocol_facts(index: RunIndex, s: Split) -> ProtocolFacts:
    silent, proof, evidence = False, None, []
    for attempt in s.probes:
        where = endpoint(attempt.d)
        if where is None or attempt.failure != TIMEOUT or attempt.operation != Operation.READ:
            continue
        # A server may well wait in silence for more bytes: only an answer to the same kind of
        # flow elsewhere (the helper's), or an answer in HTTP/TLS on this very address and port,
        # makes the silence the path's doing.
        controls = index.controls.probes_for(*where)
        if any(p.failure != TIMEOUT for p in controls):
            silent, proof = True, PROOF_CONTROL
            evidence.append(attempt.id)
            continue
        if controls:
            continue  # the helper's flow met silence as well: the server's own
        silent = True
        spoken = index.spoken.get(where, ())
        if spoken and proof is None:
            proof = PROOF_RUN
        evidence += [attempt.id, *spoken]
    return ProtocolFacts(silent, proof, endpoint_speaks(s), dedup(evidence))
