"""What one run measures and with what limits (RunPlan), and what a run needs of probe.rawnet.

Below the runner and the flows: the runner takes the targets, controls and limits from the plan;
each target's flow takes its check context, resolvers and packet-evidence taker from it. Every
dependency a run has comes in here, so tests swap them by building a plan, never by patching.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from probe.checks import CheckContext
from probe.model import Target
from probe.resolvers import ResolverSpec

# How long the end of a run keeps retrying measurements the store refused (seconds): the
# database locked by another process (a `probe merge --into` it, a sqlite3 shell, a backup).
STORE_PATIENCE = 60.0


class PacketEvidence(Protocol):
    """What a run needs of probe.rawnet (the module satisfies it; tests pass a fake, since raw
    sockets need root)."""

    async def dns_packet_evidence(
        self,
        resolver_ip: str,
        port: int,
        qname: str,
        timeout: float,  # noqa: ASYNC109 (how long the capture listens: part of what it measures)
        window: float,
    ) -> dict[str, Any]: ...

    async def tcp_reset_evidence(
        self,
        address: str,
        port: int,
        payload: bytes | None,
        timeout: float,  # noqa: ASYNC109 (as above)
    ) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class RunPlan:
    """What one run does and with what limits."""

    targets: Sequence[Target]
    controls: Sequence[Target]
    resolvers: Sequence[ResolverSpec]
    context: CheckContext = field(default_factory=CheckContext)
    concurrency: int = 256
    max_addresses: int = 4
    # The harmless names of the SNI and Host A/B tests: the run's control sites whose TLS
    # handshake got through, set by the runner once they are measured (a name the censor
    # demonstrably let pass on this network, whatever it allows), and before that, or when none
    # did, `differential_name`, a name no censor has reason to target.
    differential_names: tuple[str, ...] = ()
    differential_name: str = "example.com"
    # Who takes raw-packet evidence (IP TTL / IP-ID of DNS answers and of TCP resets): probe.rawnet
    # when the process may open raw sockets, a fake in tests, None for no captures this run.
    rawnet: PacketEvidence | None = None
    store_patience: float = STORE_PATIENCE

    def harmless_name(self, host: str) -> str:
        """The name an A/B test of `host` sends instead: the first control site that passed and
        is not `host` itself, else `differential_name`."""
        wanted = host.lower().rstrip(".")
        return next((n for n in self.differential_names if n != wanted), self.differential_name)
