"""HTTP facts: blockpage and captcha fingerprints of the answers (and of redirect targets), the
comparison with the control's response, the harmless-Host A/B proof, and throttling against the
run's control sites or the helper's download of the same resource."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from analysis.controls import ControlHttp
from analysis.facts.attempts import (
    Attempt,
    Split,
    control_state,
    dedup,
    dominant,
    is_plain_http,
    strip_port,
)
from analysis.facts.run import MIN_THROTTLE_BYTES, RunIndex, gives_rate
from analysis.facts.tls import CUT, ab_proved
from analysis.fingerprints import match_captcha, match_http
from analysis.http_compare import HttpComparison, compare_http
from probe.model import HttpTransaction, Operation

# Throttling: OONI designs for "extreme" throttling, 10x slower or worse. The control must be
# fast for the ratio to mean anything.
THROTTLE_RATIO = 10.0
FAST_CONTROL_KBPS = 1000.0
# A transfer's first byte counts as held back only this much later than the control transfers'
# (ms) as well as THROTTLE_RATIO times later: a CDN fetching a large file from its origin on a
# cache miss takes hundreds of milliseconds, which is no censor's doing.
FIRST_BYTE_DELAY_MS = 2000.0


@dataclass(frozen=True, slots=True)
class HttpFacts:
    attempted: bool
    ok: bool
    status: int | None
    failure: str | None
    failed_operation: str | None
    plain: bool
    fingerprints: tuple[str, ...]
    captcha: tuple[str, ...]
    matches_control: bool | None
    comparison: str
    host_differential: bool
    control_ok: bool | None
    throughput_kbps: float | None
    control_kbps: float | None
    throttled: bool
    ttfb_ms: float | None
    control_ttfb_ms: float | None
    first_byte_delayed: bool
    differential_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Throughput:
    local: float | None
    control: float | None
    throttled: bool


@dataclass(frozen=True, slots=True)
class _FirstByte:
    local: float | None
    control: float | None
    delayed: bool


def _throughput(
    index: RunIndex, attempts: Sequence[Attempt[HttpTransaction]], records: Sequence[ControlHttp]
) -> _Throughput:
    rates = [
        a.d.throughput_kbps
        for a in attempts
        if a.d.throughput_kbps is not None
        and gives_rate(a.d, a.failure, a.m.observation.failed_operation)
    ]
    local = round(max(rates), 1) if rates else None
    # A resource the helper also downloads slowly is slow at its server, not on our path.
    helper = [r.throughput_kbps for r in records if r.throughput_kbps is not None]
    slow_everywhere = local is not None and bool(helper) and max(helper) < THROTTLE_RATIO * local
    # The reference: the run's control sites' long downloads, else the helper's long download
    # of the same resource (the uncensored vantage's own rate).
    long_helper = [
        r.throughput_kbps
        for r in records
        if r.throughput_kbps is not None and r.body_length >= MIN_THROTTLE_BYTES
    ]
    control = index.control_kbps
    if control is None and long_helper:
        control = round(max(long_helper), 1)
    throttled = (
        local is not None
        # A download that runs at what counts as fast is not extreme throttling, whatever the
        # ratio: between two fast transfers the ratio measures host load, not the path (the
        # lab's unthrottled 1 MiB downloads vary 150-800 Mbit/s with the CPU).
        and local < FAST_CONTROL_KBPS
        and control is not None
        and control >= FAST_CONTROL_KBPS
        and control >= THROTTLE_RATIO * local
        and not slow_everywhere
    )
    return _Throughput(local, control, throttled)


def _first_byte(
    index: RunIndex, attempts: Sequence[Attempt[HttpTransaction]], records: Sequence[ControlHttp]
) -> _FirstByte:
    """A transfer's time to first byte against the control sites' transfers': a response held
    back THROTTLE_RATIO times longer, and FIRST_BYTE_DELAY_MS more, while the helper's own
    request for the same resource was answered promptly (or not asked)."""
    first = [
        a.d.timings.ttfb_ms
        for a in attempts
        if a.d.transfer and a.d.status is not None and a.d.timings.ttfb_ms is not None
    ]
    local = round(min(first), 1) if first else None
    control = index.control_ttfb_ms
    helper = [r.ttfb_ms for r in records if r.ttfb_ms is not None and r.status is not None]
    slow_everywhere = local is not None and bool(helper) and THROTTLE_RATIO * min(helper) > local
    delayed = (
        local is not None
        and control is not None
        and local >= THROTTLE_RATIO * control
        and local - control >= FIRST_BYTE_DELAY_MS
        and not slow_everywhere
    )
    return _FirstByte(local, control, delayed)


def http_facts(index: RunIndex, host: str | None, s: Split) -> HttpFacts:
    controls = index.controls
    attempts = s.http
    answered = [a for a in attempts if a.d.status is not None]
    good = [a for a in answered if a.failure is None]
    fingerprints: list[str] = []
    captchas: list[str] = []
    for a in answered:
        d = a.d
        fingerprints += [
            fp.id for fp in match_http(d.status, d.headers, d.body_prefix, d.title, host=host)
        ]
        for hop in d.redirects:
            hits = match_http(hop.status, [("location", hop.location)], "", None, host=host)
            fingerprints += [fp.id for fp in hits]
        captchas += [fp.id for fp in match_captcha(d.headers, d.body_prefix, d.title)]
    urls = [a.d.url or a.m.observation.endpoint for a in attempts]
    records = list(dict.fromkeys(r for url in urls for r in controls.http_for(url)))
    failure = None if good else dominant([a.failure for a in attempts if a.failure])
    operation = next((a.operation for a in attempts if a.failure == failure), None)
    comparison: HttpComparison | None = None
    control_ok = [r for r in records if r.status is not None and r.failure is None]
    if good and control_ok:
        d = good[0].d
        comparison = compare_http(d.status, d.body_length, d.headers, d.title, control_ok[0])
    final_url = (good[0].d.final_url or good[0].d.url) if good else ""
    differential_ids: tuple[str, ...] = ()
    if not good:
        cut = [
            a
            for a in [*s.http, *s.http_ab]
            if a.failure in CUT
            and a.operation == Operation.HTTP_ROUND_TRIP
            and is_plain_http(a.d)
            and strip_port(a.d.host_header or "") == host
        ]
        differential_ids = ab_proved(host, cut, index.http_answered)
    rate = _throughput(index, attempts, records)
    first_byte = _first_byte(index, attempts, records)
    return HttpFacts(
        attempted=bool(attempts),
        ok=bool(good),
        status=answered[0].d.status if answered else None,
        failure=failure,
        failed_operation=operation,
        plain=final_url.lower().startswith("http://"),
        fingerprints=dedup(fingerprints),
        captcha=dedup(captchas),
        matches_control=None if comparison is None else comparison.matches,
        comparison="" if comparison is None else comparison.describe(),
        host_differential=bool(differential_ids),
        control_ok=control_state([r.status is not None and r.failure is None for r in records]),
        throughput_kbps=rate.local,
        control_kbps=rate.control,
        throttled=rate.throttled,
        ttfb_ms=first_byte.local,
        control_ttfb_ms=first_byte.control,
        first_byte_delayed=first_byte.delayed,
        differential_ids=differential_ids,
    )
