"""Checks: small async functions that perform one network operation and return an Observation.

Every check takes its dependencies in a CheckContext (timeouts, TLS trust, HTTP limits), puts every
network await under an explicit timeout, and never raises for a network outcome: failures are
OONI strings in the returned Observation. Checks know nothing of storage or analysis.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from probe.model import to_the_second, utcnow


class TextScrubber(Protocol):
    """What the checks need of probe.privacy's Scrubber: the text with the own address removed."""

    def text(self, value: str) -> str: ...

    def cut_at(self, value: str, size: int) -> int:
        """Where `value` may be cut at `size` or later without cutting through an address."""
        ...


def as_stored(data: bytes, scrubber: TextScrubber | None) -> bytes:
    """Bytes a server sent as the store may know them: with the probe's own address removed. A
    length or digest a check keeps of them is taken over these, never the raw bytes (a page
    echoing the visitor's address would make its sha256 an oracle for it)."""
    if scrubber is None:
        return data
    # Latin-1 maps bytes to characters one to one, and every form of an address is ASCII.
    text = data.decode("latin-1")
    scrubbed = scrubber.text(text)
    return data if scrubbed == text else scrubbed.encode("latin-1")


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Per-phase timeouts in seconds."""

    dns: float = 3.0
    connect: float = 5.0
    tls: float = 5.0
    http: float = 10.0


def default_ssl_context(ca_file: str | None = None) -> ssl.SSLContext:
    """A verifying client context: `ca_file` if given, else SSL_CERT_FILE / the system store."""
    context = ssl.create_default_context(cafile=ca_file or None)
    return context


# A common browser's User-Agent: a probe that announces itself is easier to single out.
DEFAULT_USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0 Safari/537.36"
)


@dataclass(frozen=True, slots=True)
class CheckContext:
    """Everything a check depends on, passed in so that tests can swap it."""

    timeouts: Timeouts = field(default_factory=Timeouts)
    ssl_context: ssl.SSLContext = field(default_factory=default_ssl_context)
    max_body_bytes: int = 1 << 20
    # A transfer target (Target.transfer) is read for its goodput up to this many bytes and for
    # at most this many seconds after its headers: enough for a rate, cheap on a metered line.
    transfer_bytes: int = 512 * 1024
    transfer_seconds: float = 3.0
    body_prefix_bytes: int = 2048
    max_redirects: int = 5
    user_agent: str = DEFAULT_USER_AGENT
    # How long a UDP DNS query keeps listening after its first answer, to catch a second
    # (injected or real) one: ICLab Centinel's technique (https://github.com/iclab/centinel/blob/master/centinel/primitives/dnslib.py).
    dns_second_answer_window: float = 0.5
    # The probe's own addresses, for what a check digests before the store's scrubbing sees it:
    # the HTTP body's sha256 and length are taken over the body with them removed, or a page
    # that echoes the visitor's address would let anyone recover it by hashing each candidate.
    scrubber: TextScrubber | None = None


class Stopwatch:
    """A UTC start time (to the second, as stored) and a monotonic duration (precise), as every
    observation records."""

    __slots__ = ("_t0", "started_at")

    def __init__(self) -> None:
        self.started_at: datetime = to_the_second(utcnow())
        self._t0 = time.monotonic()

    def elapsed_ms(self) -> float:
        return round((time.monotonic() - self._t0) * 1000.0, 3)


def format_endpoint(address: str, port: int) -> str:
    """`address:port`, with IPv6 addresses in brackets."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
