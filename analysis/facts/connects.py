"""Connect patterns: whether a set of TCP connect attempts (a target's, or the run's control
sites') connected steadily, or some took a SYN retransmission or failed where another attempt to
the same address and port connected: what intermittent interference looks like when each
endpoint is connected twice a run.

Why a share of failed or retransmitted connects is a censorship signature, not only a flaky
path: censors are documented to interfere with some connections and let others through. Wu et
al., "How the Great Firewall of China Detects and Blocks Fully Encrypted Traffic" (USENIX
Security 2023, https://gfw.report/publications/usenixsecurity23/en/): a connection the GFW's rule
selects is blocked with a probability of about 26.3%, as the authors state in their OONI
experiment proposal (https://github.com/ooni/probe-cli/pull/1026, https://github.com/ooni/spec/pull/271).
OONI's 2016 Egypt report found the blocking of Tor connections did not happen every time, so a
client got through with enough retries (ooni/ooni.org content/post/egypt-network-interference.md,
https://github.com/ooni/ooni.org/pull/77)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from analysis.facts.attempts import Attempt
from probe.model import TcpConnect

# A connect that completes only after its SYN was retransmitted: the first retransmission comes
# after the initial RTO of 1 s (RFC 6298 section 2, https://www.rfc-editor.org/rfc/rfc6298;
# Linux's TCP_TIMEOUT_INIT) and the next one a doubled RTO later (section 5.5), 3 s in, so a
# connect whose first one or two SYNs were dropped takes 1-4 s; a clean path connects in
# milliseconds.
SYN_RETRANSMIT_MS = (1000.0, 4000.0)


@dataclass(frozen=True, slots=True)
class ConnectPattern:
    """How a set of connect attempts went: how many there were, how many failed at an endpoint
    that another attempt connected to (uneven), how many took a SYN retransmission (slow), and
    the slowest that connected (ms)."""

    attempts: int = 0
    uneven: int = 0
    slow: int = 0
    slowest_ms: float | None = None

    @property
    def fast(self) -> bool:
        """Some attempt connected, every one that did in under a SYN retransmission, and none
        failed where another connected: a path that connects in milliseconds, every time."""
        return (
            self.slowest_ms is not None
            and self.slowest_ms < SYN_RETRANSMIT_MS[0]
            and self.uneven == 0
        )

    @property
    def interfered(self) -> int:
        """The attempts that were slow or uneven."""
        return self.uneven + self.slow


def connect_pattern(attempts: Iterable[Attempt[TcpConnect]]) -> ConnectPattern:
    connected: set[tuple[str, int]] = set()
    failed: list[tuple[str, int]] = []
    slow, total, slowest = 0, 0, None
    for attempt in attempts:
        total += 1
        where = (attempt.d.address, attempt.d.port)
        if attempt.failure is not None:
            failed.append(where)
            continue
        connected.add(where)
        ms = attempt.m.observation.duration_ms
        slowest = ms if slowest is None else max(slowest, ms)
        if SYN_RETRANSMIT_MS[0] <= ms <= SYN_RETRANSMIT_MS[1]:
            slow += 1
    uneven = sum(1 for where in failed if where in connected)
    return ConnectPattern(total, uneven, slow, slowest)
