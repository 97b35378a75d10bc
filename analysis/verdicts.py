"""Measurements of one run -> one Verdict per target, each citing the rule that decided it and the
measurements it rests on.

This module turns a target's stored measurements (and the controls) into Facts; analysis.rules
decides. It performs no network I/O and reads no database: the caller passes the run's
measurements and, when a test helper answered, its ControlEvidence.

The runner's extra A/B measurements are recognised by `details["differential_kind"]`
(probe/runner.py): "sni", a TLS handshake to the same address:port with a harmless SNI; "host",
an HTTP request to the same address:port with a harmless Host header; "protocol", a TCP flow whose
first data is random bytes (the protocol allowlist). The A/B halves are paired across the whole
run by (address, port), so a harmless half recorded under another target counts as well, and a
target-name half sent to an unrelated server's address (same kinds, the target's own name)
works the same way.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from analysis.controls import (
    DIFFERENTIAL_KEY,
    PROTOCOL_PROBE,
    ControlEvidence,
    ControlHttp,
    controls_from_measurements,
    is_control_resolver,
    normalise_host,
)
from analysis.fingerprints import is_bogon, match_captcha, match_dns, match_http, parse_address
from analysis.model import AsnLookup
from analysis.rules import (
    CERTIFICATE_FAILURES,
    INTERRUPTED,
    RULES_VERSION,
    TIMEOUT,
    UNREACHABLE,
    Evidence,
    Facts,
    Rule,
    evaluate,
)
from probe.model import Layer, Measurement, Operation, Run, Target
from probe.records import Verdict

# The catalog's control sites (probe/catalog/controls.toml): never given a verdict of their own.
CONTROL_PLATFORMS: frozenset[str] = frozenset({"control"})


# Throttling: OONI designs for "extreme" throttling, 10x slower or worse (REFERENCE.md). The
# control must be fast for the ratio to mean anything, and a download must be long enough for
# its rate not to be dominated by latency (a short body reads slow on any line).
THROTTLE_RATIO = 10.0
FAST_CONTROL_KBPS = 1000.0
MIN_THROTTLE_BYTES = 64 * 1024

# HTTP comparison with the control (OONI web_connectivity): body-length proportion above 0.7
# matches; title words of 5+ letters; header names outside this common set.
BODY_PROPORTION_MATCH = 0.7
_TITLE_WORD = re.compile(r"[^\W\d_]{5,}")
COMMON_HEADERS = frozenset(
    {
        "accept-ranges",
        "age",
        "alt-svc",
        "cache-control",
        "cf-ray",
        "connection",
        "content-encoding",
        "content-language",
        "content-length",
        "content-type",
        "date",
        "etag",
        "expires",
        "keep-alive",
        "last-modified",
        "link",
        "location",
        "p3p",
        "pragma",
        "server",
        "set-cookie",
        "strict-transport-security",
        "transfer-encoding",
        "vary",
        "via",
        "x-content-type-options",
        "x-frame-options",
        "x-powered-by",
        "x-varnish",
        "x-xss-protection",
    }
)

_HANDSHAKE = str(Operation.TLS_HANDSHAKE)
_ROUND_TRIP = str(Operation.HTTP_ROUND_TRIP)
_READ = str(Operation.READ)
_CONNECT = str(Operation.CONNECT)
_CUT = INTERRUPTED | {TIMEOUT}

Endpoint = tuple[str, int]


# -- small readers over details dicts (stored data may be old or partial) ------------------------


def _text(details: Mapping[str, Any], key: str) -> str | None:
    value = details.get(key)
    return value if isinstance(value, str) and value else None


def _number(details: Mapping[str, Any], key: str) -> float | None:
    value = details.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _strings(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list | tuple) else []


def _dedup(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _is_v6(address: str | None) -> bool:
    return address is not None and ":" in address


def _op(m: Measurement) -> str | None:
    op = m.observation.failed_operation
    return None if op is None else str(op)


def _differential(m: Measurement) -> str | None:
    return _text(m.observation.details, DIFFERENTIAL_KEY)


def _endpoint(m: Measurement) -> Endpoint | None:
    details = m.observation.details
    address, port = _text(details, "address"), details.get("port")
    if address is None:
        return None
    if m.layer is Layer.HTTP:
        port = _url_port(_text(details, "url") or m.observation.endpoint)
    if not isinstance(port, int) or isinstance(port, bool):
        return None
    return address, port


def _is_plain_http(m: Measurement) -> bool:
    url = _text(m.observation.details, "url") or m.observation.endpoint
    return url.lower().startswith("http://")


def _url_port(url: str) -> int | None:
    try:
        parts = urlsplit(url)
        return parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        return None


def _dominant(failures: Sequence[str]) -> str | None:
    """The most common failure; ties go to the one seen first."""
    if not failures:
        return None
    return Counter(failures).most_common(1)[0][0]


def _handshake_reached_server(m: Measurement) -> bool:
    """The TLS handshake got the server's answer: it completed, or the certificate it presented
    was rejected (which still proves the ClientHello passed the path)."""
    failure = m.failure
    details = m.observation.details
    return failure is None or failure in CERTIFICATE_FAILURES or bool(details.get("certificates"))


def _control_state(results: Sequence[bool]) -> bool | None:
    """True when any control attempt succeeded, False when all failed, None when none exist."""
    if not results:
        return None
    return any(results)


# -- the run as a whole ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _RunIndex:
    run: Run
    controls: ControlEvidence
    asn_of: AsnLookup | None
    ipv6_broken: bool
    control_kbps: float | None
    control_site_ids: tuple[str, ...]
    # (address, port) -> (sni, measurement id) of every handshake in the run that reached a server.
    tls_reached: Mapping[Endpoint, tuple[tuple[str, str], ...]]
    # (address, port) -> (host header, measurement id) of every HTTP request answered.
    http_answered: Mapping[Endpoint, tuple[tuple[str, str], ...]]


def ipv6_broken_everywhere(measurements: Iterable[Measurement]) -> bool:
    """True when the run tried IPv6 connects and every one failed with host/network unreachable:
    the probe's LAN has no IPv6 (a known false positive, REFERENCE.md)."""
    failures: list[str | None] = []
    for m in measurements:
        connect = m.layer is Layer.TCP or (m.layer is Layer.TLS and _op(m) == _CONNECT)
        if connect and _is_v6(_text(m.observation.details, "address")):
            failures.append(m.failure)
    return bool(failures) and all(f in UNREACHABLE for f in failures)


def _index_run(
    run: Run,
    measurements: Sequence[Measurement],
    controls: ControlEvidence | None,
    asn_of: AsnLookup | None,
    control_platforms: Collection[str],
) -> _RunIndex:
    rates, rate_ids = [], []
    tls_reached: dict[Endpoint, list[tuple[str, str]]] = {}
    http_answered: dict[Endpoint, list[tuple[str, str]]] = {}
    for m in measurements:
        details = m.observation.details
        if m.platform in control_platforms and m.layer is Layer.HTTP and m.failure is None:
            rate = _number(details, "throughput_kbps")
            # A short page arrives with its headers, so its "rate" measures the host's memory, not
            # the path (the lab's 2 KB control pages read at gigabits): long downloads only.
            if rate is not None and (_number(details, "body_length") or 0) >= MIN_THROTTLE_BYTES:
                rates.append(rate)
                rate_ids.append(m.id)
        endpoint = _endpoint(m)
        if endpoint is None:
            continue
        if m.layer is Layer.TLS and _handshake_reached_server(m):
            sni = _text(details, "sni")
            if sni:
                tls_reached.setdefault(endpoint, []).append((normalise_host(sni), m.id))
        elif m.layer is Layer.HTTP and isinstance(details.get("status"), int) and _is_plain_http(m):
            # Only plain-HTTP answers pair with a Host A/B test: an HTTPS answer on the same
            # address and port says nothing about a plain-HTTP request's Host header.
            host_header = _text(details, "host_header")
            if host_header:
                http_answered.setdefault(endpoint, []).append((_strip_port(host_header), m.id))
    own = controls_from_measurements(measurements)
    return _RunIndex(
        run=run,
        controls=own if controls is None else controls.merged(own),
        asn_of=asn_of,
        ipv6_broken=ipv6_broken_everywhere(measurements),
        control_kbps=round(statistics.median(rates), 1) if rates else None,
        control_site_ids=tuple(rate_ids),
        tls_reached=MappingProxyType({k: tuple(v) for k, v in tls_reached.items()}),
        http_answered=MappingProxyType({k: tuple(v) for k, v in http_answered.items()}),
    )


# -- HTTP comparison -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HttpComparison:
    """How a response compares with the control's (None: no signal either way)."""

    status_match: bool | None
    body_proportion: float
    headers_match: bool | None
    title_match: bool | None

    @property
    def body_match(self) -> bool:
        return self.body_proportion > BODY_PROPORTION_MATCH

    @property
    def matches(self) -> bool:
        # OONI: accessible when the status matches and any of body length, headers, title do.
        if self.status_match is False:
            return False
        return self.body_match or self.headers_match is True or self.title_match is True

    def describe(self) -> str:
        return (
            f"status match {self.status_match}, body proportion {self.body_proportion:.2f},"
            f" uncommon headers match {self.headers_match}, title match {self.title_match}"
        )


def _uncommon(headers: Iterable[Sequence[str]]) -> frozenset[str]:
    names = (str(pair[0]).strip().lower() for pair in headers if len(pair) >= 1)
    return frozenset(n for n in names if n and n not in COMMON_HEADERS)


def _title_words(title: str | None) -> frozenset[str]:
    return frozenset(w.casefold() for w in _TITLE_WORD.findall(title or ""))


def compare_http(
    status: int | None,
    body_length: int,
    headers: Iterable[Sequence[str]],
    title: str | None,
    control: ControlHttp,
) -> HttpComparison:
    """Compare a response with the control's the way the field does (REFERENCE.md)."""
    if control.status is None or control.status >= 500:
        status_match = None  # the control's own server trouble says nothing about ours
    else:
        status_match = status == control.status
    a, b = max(body_length, 0), max(control.body_length, 0)
    proportion = 1.0 if a == b else min(a, b) / max(a, b)
    ours, theirs = _uncommon(headers), _uncommon(control.headers)
    headers_match = None if not (ours or theirs) else bool(ours & theirs)
    control_words = _title_words(control.title)
    title_match = None if not control_words else bool(control_words & _title_words(title))
    return HttpComparison(status_match, round(proportion, 3), headers_match, title_match)


# -- one target ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Split:
    dns: list[Measurement]
    dns_control: list[Measurement]
    tcp: list[Measurement]
    probes: list[Measurement]
    tls: list[Measurement]
    tls_ab: list[Measurement]
    http: list[Measurement]
    http_ab: list[Measurement]


# The runner's raw-packet captures (probe.runner.RAW_EVIDENCE): TTL / IP-ID evidence kept with
# the measurements, never counted as an attempt of their own.
RAW_EVIDENCE = "raw"


def _split(own: Iterable[Measurement]) -> _Split:
    s = _Split([], [], [], [], [], [], [], [])
    for m in own:
        kind = _differential(m)
        if kind == RAW_EVIDENCE:
            continue  # packet captures: evidence for a reader, not another attempt
        if m.layer is Layer.DNS:
            (s.dns_control if is_control_resolver(m.observation.details) else s.dns).append(m)
        elif m.layer is Layer.TCP:
            if kind is None:
                s.tcp.append(m)
            elif kind == PROTOCOL_PROBE:
                s.probes.append(m)
        elif m.layer is Layer.TLS:
            (s.tls if kind is None else s.tls_ab).append(m)
        elif m.layer is Layer.HTTP:
            (s.http if kind is None else s.http_ab).append(m)
    return s


def _strip_port(host_header: str) -> str:
    """The host of a Host header value ("example.com:8080", "[2001:db8::1]:80")."""
    try:
        hostname = urlsplit(f"//{host_header.strip()}").hostname
    except ValueError:
        hostname = None
    return normalise_host(hostname or host_header)


def _target_host(target: str, s: _Split) -> str | None:
    for m in s.dns + s.dns_control:
        query = _text(m.observation.details, "query")
        if query:
            return normalise_host(query)
    for m in s.tls:
        sni = _text(m.observation.details, "sni")
        if sni:
            return normalise_host(sni)
    for m in s.http:
        host = _text(m.observation.details, "host_header")
        if host:
            return _strip_port(host)
    for m in s.tcp:
        if m.observation.details.get("address_source") == "literal":
            return _text(m.observation.details, "address")
    if "://" in target:
        try:
            hostname = urlsplit(target).hostname
        except ValueError:
            return None
        return normalise_host(hostname) if hostname else None
    return normalise_host(target) if target.strip() else None


@dataclass(slots=True)
class _Builder:
    """Accumulates the Facts fields of one target."""

    index: _RunIndex
    host: str | None
    s: _Split
    fields: dict[str, Any]
    differential_ids: list[str]

    def masked(self, m: Measurement) -> bool:
        return (
            self.index.ipv6_broken
            and m.failure in UNREACHABLE
            and _is_v6(_text(m.observation.details, "address"))
        )

    # DNS ------------------------------------------------------------------------------------
    def dns(self) -> None:
        host, controls = self.host, self.index.controls
        control_records = controls.dns_for(host) if host else ()
        control_addresses = frozenset(a for r in control_records for a in r.addresses)
        answers: list[str] = []
        seen: list[str] = []
        failures: list[str] = []
        injected, injected_fps = False, []
        for m in self.s.dns:
            details = m.observation.details
            addresses = _strings(details.get("addresses"))
            answers += addresses
            seen += addresses
            if m.failure is not None:
                failures.append(m.failure)
            for key in ("responses", "aaaa_responses"):
                responses = [r for r in details.get(key) or () if isinstance(r, Mapping)]
                for r in responses:
                    seen += _strings(r.get("addresses"))
                forged = self._forged_first(responses, control_addresses)
                if forged is not None:
                    injected = True
                    injected_fps += forged
        answers_t, seen_t = _dedup(answers), _dedup(seen)
        fingerprints = match_dns([a for a in seen_t if a not in control_addresses], host=host)
        validated = _dedup(
            _text(m.observation.details, "address") or ""
            for m in self.s.tls
            if m.failure is None
            and m.observation.details.get("verified") is True
            and normalise_host(_text(m.observation.details, "sni") or "") == host
        )
        self.fields.update(
            dns_addresses=answers_t,
            dns_failure=_dominant(failures) if self.s.dns and not answers_t else None,
            dns_fingerprints=tuple(fp.id for fp in fingerprints),
            dns_bogons=tuple(a for a in seen_t if is_bogon(a) and a not in control_addresses),
            dns_injection=injected,
            dns_injection_fingerprints=_dedup(injected_fps),
            dns_consistent=self._consistent(answers_t, validated, control_addresses),
            validated_addresses=tuple(a for a in validated if a),
            control_addresses=tuple(sorted(control_addresses)),
            control_dns_ok=_control_state([bool(r.addresses) for r in control_records]),
        )

    def _forged_first(
        self, responses: Sequence[Mapping[str, Any]], control: frozenset[str]
    ) -> list[str] | None:
        """Fingerprint ids (possibly none) when one of several different UDP responses is forged:
        the first being a fingerprint, a bogon, an error raced by a real answer, or an answer
        unlike the control's raced by one that matches it; or a later one being a fingerprint or
        a bogon (an injector that lost the race to the real answer is still an injector). None
        when no response is forged."""
        if len(responses) < 2:
            return None
        first = frozenset(_strings(responses[0].get("addresses")))
        later = [frozenset(_strings(r.get("addresses"))) for r in responses[1:]]
        if all(other == first for other in later):
            return None
        fps = [fp.id for fp in match_dns(first, host=self.host)]
        if fps or any(is_bogon(a) for a in first):
            return fps
        for other in later:
            late = [fp.id for fp in match_dns(other, host=self.host)]
            if other != first and (late or any(is_bogon(a) for a in other)):
                return late
        if not first and any(later):
            return []  # an NXDOMAIN/empty answer raced by a real one
        if control and not first & control and any(other & control for other in later):
            return []
        return None

    def _consistent(
        self, answers: tuple[str, ...], validated: tuple[str, ...], control: frozenset[str]
    ) -> bool | None:
        if not answers:
            return None
        if set(answers) & set(validated):
            return True  # a valid handshake for the name: legitimate whatever the control says
        if not control:
            return None
        if set(answers) & control:
            return True
        asn_of = self.index.asn_of
        if asn_of is not None:
            ours = {asn_of(a) for a in answers} - {None}
            theirs = {asn_of(a) for a in control} - {None}
            if ours & theirs:
                return True
        return False

    # TCP ------------------------------------------------------------------------------------
    def tcp(self) -> None:
        live = [m for m in self.s.tcp if not self.masked(m)]
        failures = [m.failure for m in live if m.failure is not None]
        ok = any(m.failure is None for m in live)
        results = []
        seen_records = set()
        controls = self.index.controls
        for m in self.s.tcp:
            endpoint = _endpoint(m)
            if endpoint is None:
                continue
            records = controls.tcp_for(*endpoint)
            if self.host:
                records += controls.tcp_for_host(self.host, endpoint[1])
            for record in records:
                # The helper's own missing IPv6 says nothing about the target.
                if record in seen_records or (
                    _is_v6(record.address) and record.failure in UNREACHABLE
                ):
                    continue
                seen_records.add(record)
                results.append(record.failure is None)
        self.fields.update(
            tcp_attempted=bool(live),
            tcp_ok=ok,
            tcp_failure=None if ok else _dominant(failures),
            ipv6_masked=len(self.s.tcp) - len(live),
            control_tcp_ok=_control_state(results),
        )

    # TLS ------------------------------------------------------------------------------------
    def tls(self) -> None:
        host = self.host
        live = [m for m in self.s.tls if not self.masked(m)]
        ok = any(m.failure is None for m in live)
        failed = [m for m in live if m.failure is not None]
        failure = None if ok else _dominant([m.failure for m in failed if m.failure])
        operation = next((_op(m) for m in failed if m.failure == failure), None)
        rejected = [
            m
            for m in failed
            if m.failure in CERTIFICATE_FAILURES or m.observation.details.get("verify_failure")
        ]
        issuer = None
        if rejected:
            chain = rejected[0].observation.details.get("certificates") or []
            if chain and isinstance(chain[0], Mapping):
                issuer = _text(chain[0], "issuer")
        sni_differential = self._sni_differential(live) if not ok else False
        ports = {e[1] for e in (_endpoint(m) for m in self.s.tls) if e is not None}
        records = [
            r
            for r in (self.index.controls.tls_for(host) if host else ())
            if (not ports or r.port in ports)
            and not (_is_v6(r.address) and r.failure in UNREACHABLE)
        ]
        good = [r for r in records if r.failure is None]
        self.fields.update(
            tls_attempted=bool(live),
            tls_ok=ok,
            tls_failure=failure,
            tls_failed_operation=operation,
            tls_cert_failure=(
                (_text(rejected[0].observation.details, "verify_failure") or rejected[0].failure)
                if rejected and not ok
                else None
            ),
            tls_issuer=issuer,
            sni_differential=sni_differential,
            sni_differential_failed=not ok
            and not sni_differential
            and any(
                m.failure is not None and not _handshake_reached_server(m) for m in self.s.tls_ab
            ),
            control_tls_ok=_control_state([r.failure is None for r in records]),
            control_tls_issuer=good[0].leaf_issuer if good else None,
        )

    def _sni_differential(self, live: Sequence[Measurement]) -> bool:
        host = self.host
        cut = [
            m
            for m in [*live, *self.s.tls_ab]
            if m.failure in _CUT
            and _op(m) == _HANDSHAKE
            and normalise_host(_text(m.observation.details, "sni") or "") == host
        ]
        return self._ab_proved(cut, self.index.tls_reached)

    def _ab_proved(
        self,
        cut: Sequence[Measurement],
        harmless_by_endpoint: Mapping[Endpoint, tuple[tuple[str, str], ...]],
    ) -> bool:
        """Whether any attempt in `cut` (failed with the target's name) has, on the same
        address and port, a harmless-name attempt that got through; records those pairs as the
        differential's evidence."""
        found = False
        for m in cut:
            endpoint = _endpoint(m)
            harmless = [
                i
                for name, i in harmless_by_endpoint.get(endpoint or ("", 0), ())
                if name != self.host
            ]
            if harmless:
                found = True
                self.differential_ids += [m.id, *harmless]
        return found

    # HTTP -----------------------------------------------------------------------------------
    def http(self) -> None:
        host, controls = self.host, self.index.controls
        attempts = self.s.http
        answered = [m for m in attempts if isinstance(m.observation.details.get("status"), int)]
        good = [m for m in answered if m.failure is None]
        fingerprints: list[str] = []
        captchas: list[str] = []
        for m in answered:
            d = m.observation.details
            headers = [p for p in d.get("headers") or () if isinstance(p, list | tuple)]
            prefix, title = _text(d, "body_prefix") or "", _text(d, "title")
            fingerprints += [
                fp.id for fp in match_http(d["status"], headers, prefix, title, host=host)
            ]
            for hop in d.get("redirects") or ():
                if isinstance(hop, Mapping) and isinstance(hop.get("location"), str):
                    hits = match_http(
                        hop.get("status"), [("location", hop["location"])], "", None, host=host
                    )
                    fingerprints += [fp.id for fp in hits]
            captchas += [fp.id for fp in match_captcha(headers, prefix, title)]
        records = [
            r
            for m in attempts
            for r in controls.http_for(
                _text(m.observation.details, "url") or m.observation.endpoint
            )
        ]
        records = list(dict.fromkeys(records))
        failure = None if good else _dominant([m.failure for m in attempts if m.failure])
        operation = next((_op(m) for m in attempts if m.failure == failure), None)
        comparison: HttpComparison | None = None
        control_ok = [r for r in records if r.status is not None and r.failure is None]
        if good and control_ok:
            d = good[0].observation.details
            comparison = compare_http(
                d.get("status"),
                int(_number(d, "body_length") or 0),
                [p for p in d.get("headers") or () if isinstance(p, list | tuple)],
                _text(d, "title"),
                control_ok[0],
            )
        final_url = (
            (
                _text(good[0].observation.details, "final_url")
                or _text(good[0].observation.details, "url")
                or good[0].observation.endpoint
            )
            if good
            else ""
        )
        self.fields.update(
            http_attempted=bool(attempts),
            http_ok=bool(good),
            http_status=answered[0].observation.details.get("status") if answered else None,
            http_failure=failure,
            http_failed_operation=operation,
            http_plain=final_url.lower().startswith("http://"),
            http_fingerprints=_dedup(fingerprints),
            http_captcha=_dedup(captchas),
            http_matches_control=None if comparison is None else comparison.matches,
            http_comparison="" if comparison is None else comparison.describe(),
            host_differential=self._host_differential() if not good else False,
            control_http_ok=_control_state(
                [r.status is not None and r.failure is None for r in records]
            ),
        )
        self._throughput(attempts, records)

    def _host_differential(self) -> bool:
        host = self.host
        cut = [
            m
            for m in [*self.s.http, *self.s.http_ab]
            if m.failure in _CUT
            and _op(m) == _ROUND_TRIP
            and _is_plain_http(m)
            and _strip_port(_text(m.observation.details, "host_header") or "") == host
        ]
        return self._ab_proved(cut, self.index.http_answered)

    def _throughput(self, attempts: Sequence[Measurement], records: Sequence[ControlHttp]) -> None:
        rates = []
        for m in attempts:
            d = m.observation.details
            rate = _number(d, "throughput_kbps")
            long_enough = (_number(d, "body_length") or 0) >= MIN_THROTTLE_BYTES
            stalled = m.failure == TIMEOUT and _op(m) == _READ
            if rate is not None and (long_enough or stalled):
                rates.append(rate)
        local = round(max(rates), 1) if rates else None
        # A resource the helper also downloads slowly is slow at its server, not on our path.
        helper = [r.throughput_kbps for r in records if r.throughput_kbps is not None]
        slow_everywhere = (
            local is not None and bool(helper) and max(helper) < THROTTLE_RATIO * local
        )
        # The reference: the run's control sites' long downloads, else the helper's long download
        # of the same resource (the uncensored vantage's own rate).
        long_helper = [
            r.throughput_kbps
            for r in records
            if r.throughput_kbps is not None and r.body_length >= MIN_THROTTLE_BYTES
        ]
        control = self.index.control_kbps
        if control is None and long_helper:
            control = round(max(long_helper), 1)
        throttled = (
            local is not None
            # A download that runs at what counts as fast is not extreme throttling, whatever
            # the ratio: between two fast transfers the ratio measures host load, not the path
            # (the lab's unthrottled 1 MiB downloads vary 150-800 Mbit/s with the CPU).
            and local < FAST_CONTROL_KBPS
            and control is not None
            and control >= FAST_CONTROL_KBPS
            and control >= THROTTLE_RATIO * local
            and not slow_everywhere
        )
        self.fields.update(throughput_kbps=local, control_kbps=control, throttled=throttled)

    # Protocol allowlist ---------------------------------------------------------------------
    def protocol(self) -> None:
        filtered = False
        for m in self.s.probes:
            endpoint = _endpoint(m)
            if endpoint is None or m.failure != TIMEOUT or _op(m) != _READ:
                continue
            # A server may well wait in silence for more bytes; only a control that got an
            # answer from the same endpoint makes the silence the path's doing.
            if any(p.failure != TIMEOUT for p in self.index.controls.probes_for(*endpoint)):
                filtered = True
        self.fields["protocol_filtered"] = filtered


def _facts(index: _RunIndex, platform: str, target: str, own: Sequence[Measurement]) -> Facts:
    run = index.run
    base: dict[str, Any] = {
        "connectivity": run.connectivity,
        "vpn_suspected": run.network.vpn_suspected is True,
        "ipv6_broken": index.ipv6_broken,
    }
    if not own:
        return Facts(platform, target, measured=False, **base)
    s = _split(own)
    host = _target_host(target, s)
    builder = _Builder(index, host, s, base, [])
    builder.dns()
    builder.tcp()
    builder.tls()
    builder.http()
    builder.protocol()
    evidence = {
        Evidence.ALL: tuple(m.id for m in own),
        Evidence.DNS: tuple(m.id for m in s.dns),
        Evidence.DNS_CONTROL: tuple(m.id for m in s.dns_control),
        Evidence.TCP: tuple(m.id for m in s.tcp),
        Evidence.TLS: tuple(m.id for m in s.tls),
        Evidence.HTTP: tuple(m.id for m in s.http),
        Evidence.DIFFERENTIAL: _dedup(builder.differential_ids),
        Evidence.PROBE: tuple(m.id for m in s.probes),
        Evidence.CONTROL_SITES: index.control_site_ids,
    }
    return Facts(
        platform,
        target,
        host=host,
        literal=host is not None and parse_address(host) is not None,
        evidence=MappingProxyType(evidence),
        **builder.fields,
    )


def facts_for_target(
    run: Run,
    measurements: Sequence[Measurement],
    platform: str,
    target: str,
    *,
    controls: ControlEvidence | None = None,
    asn_of: AsnLookup | None = None,
    control_platforms: Collection[str] = CONTROL_PLATFORMS,
) -> Facts:
    """The Facts of one target, from all of the run's `measurements` (the run-wide ones, IPv6
    health, control sites' speed, A/B handshakes, are read from them too)."""
    index = _index_run(run, measurements, controls, asn_of, control_platforms)
    own = [m for m in measurements if m.platform == platform and m.target == target]
    return _facts(index, platform, target, own)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"Run.started_at must be timezone-aware, got {moment!r}")
    return moment.astimezone(UTC)


def verdict_from(run: Run, facts: Facts, rule: Rule) -> Verdict:
    """The Verdict a rule gives for a target's facts."""
    evidence = facts.ids(rule.evidence) or facts.ids((Evidence.ALL,))
    return Verdict(
        run_id=run.id,
        probe_id=run.probe_id,
        measured_at=_utc(run.started_at),
        asn=run.network.asn,
        country=run.network.country,
        platform=facts.platform,
        target=facts.target,
        status=rule.outcome.status,
        technique=rule.outcome.technique,
        confidence=rule.outcome.confidence,
        rule_id=rule.rule_id,
        rules_version=RULES_VERSION,
        evidence=evidence,
        detail=rule.describe(facts),
    )


def verdicts_for_run(
    run: Run,
    measurements: Sequence[Measurement],
    *,
    controls: ControlEvidence | None = None,
    asn_of: AsnLookup | None = None,
    targets: Sequence[Target] | None = None,
    control_platforms: Collection[str] = CONTROL_PLATFORMS,
) -> list[Verdict]:
    """One verdict per target of the run (control sites excluded), sorted by platform and target.

    controls:  a test helper's evidence (parse_helper_response); the run's own DoH answers are
               added to it. Without either, failures are inconclusive, never blocked.
    asn_of:    an IP -> ASN lookup, when one is available: answers in the control's ASN agree.
    targets:   the run's planned targets; those with no measurement get an inconclusive verdict
               (the runner cancels targets when the network is down).
    """
    foreign = {m.run_id for m in measurements} - {run.id}
    if foreign:
        raise ValueError(f"measurements of other runs passed for run {run.id}: {sorted(foreign)}")
    index = _index_run(run, measurements, controls, asn_of, control_platforms)
    grouped: dict[tuple[str, str], list[Measurement]] = {}
    for t in targets or ():
        if not t.control and t.platform not in control_platforms:
            grouped.setdefault((t.platform, t.name), [])
    for m in measurements:
        if m.platform not in control_platforms:
            grouped.setdefault((m.platform, m.target), []).append(m)
    verdicts = []
    for (platform, target), own in sorted(grouped.items()):
        facts = _facts(index, platform, target, own)
        verdicts.append(verdict_from(run, facts, evaluate(facts)))
    return verdicts
