"""TCP facts: did any connect succeed, and did the control's connects to the same endpoints (or
for the same name and port) succeed; IPv6 failures are masked when IPv6 is broken run-wide. And
whether the connects were steady: each endpoint is connected twice a run (the runner's repeat),
so a path that drops some SYNs or some connections shows as slow or uneven attempts."""

from __future__ import annotations

from dataclasses import dataclass

from analysis.controls import ControlConnect
from analysis.facts.attempts import (
    Attempt,
    Split,
    address,
    control_state,
    dominant,
    endpoint,
    is_v6,
)
from analysis.facts.connects import ConnectPattern, connect_pattern
from analysis.facts.run import RunIndex
from analysis.rules import UNREACHABLE
from probe.model import Details


@dataclass(frozen=True, slots=True)
class TcpFacts:
    attempted: bool
    ok: bool
    failure: str | None
    ipv6_masked: int
    control_ok: bool | None
    pattern: ConnectPattern


def masked(index: RunIndex, attempt: Attempt[Details]) -> bool:
    """An unreachable IPv6 attempt in a run where IPv6 is broken everywhere: not evidence."""
    return index.ipv6_broken and attempt.failure in UNREACHABLE and is_v6(address(attempt.d))


def tcp_facts(index: RunIndex, host: str | None, s: Split) -> TcpFacts:
    live = [a for a in s.tcp if not masked(index, a)]
    failures = [a.failure for a in live if a.failure is not None]
    ok = any(a.failure is None for a in live)
    results = []
    seen_records: set[ControlConnect] = set()
    controls = index.controls
    for attempt in s.tcp:
        where = endpoint(attempt.d)
        if where is None:
            continue
        records = controls.tcp_for(*where)
        if host:
            records += controls.tcp_for_host(host, where[1])
        for record in records:
            # The helper's own missing IPv6 says nothing about the target.
            if record in seen_records or (is_v6(record.address) and record.failure in UNREACHABLE):
                continue
            seen_records.add(record)
            results.append(record.failure is None)
    return TcpFacts(
        attempted=bool(live),
        ok=ok,
        failure=None if ok else dominant(failures),
        ipv6_masked=len(s.tcp) - len(live),
        control_ok=control_state(results),
        pattern=connect_pattern(live),
    )
