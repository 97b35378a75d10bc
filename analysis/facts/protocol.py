"""Protocol-allowlist facts: a flow of random first data that met silence where the control's
flow to the same endpoint got an answer."""

from __future__ import annotations

from analysis.facts.attempts import Split, endpoint
from analysis.facts.run import RunIndex
from analysis.rules import TIMEOUT
from probe.model import Operation


def endpoint_speaks(s: Split) -> str | None:
    """What the endpoint's own traffic is, as the runner recorded it on its protocol probes."""
    return next((a.d.speaks for a in s.probes if a.d.speaks), None)


def protocol_filtered(index: RunIndex, s: Split) -> bool:
    for attempt in s.probes:
        where = endpoint(attempt.d)
        if where is None or attempt.failure != TIMEOUT or attempt.operation != Operation.READ:
            continue
        # A server may well wait in silence for more bytes; only a control that got an answer
        # from the same endpoint makes the silence the path's doing.
        if any(p.failure != TIMEOUT for p in index.controls.probes_for(*where)):
            return True
    return False
