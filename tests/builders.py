"""Typed builders of the probe's records, for tests and benchmarks: Measurements the way the runner
records them (the per-layer records of probe.model, address_source, the runner's A/B halves),
and a test helper's answer that reaches analysis through the product path (encoded with the
helper protocol, parsed and validated by probe.helper.protocol, turned into controls by
analysis.controls).

No database, no network. Defaults describe an ordinary success; keyword arguments describe the
scenario a test proves.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TypedDict, TypeVar, Unpack

from analysis.controls import ControlEvidence, controls_from_helper_targets
from probe.codec import encode_details
from probe.helper.protocol import (
    ClientView,
    ControlTarget,
    HelperResult,
    encode_response,
    parse_response,
)
from probe.model import (
    Certificate,
    Connectivity,
    Details,
    DifferentialKind,
    DnsAnswer,
    DnsQuery,
    DnsResponse,
    HttpTimings,
    HttpTransaction,
    Layer,
    Measurement,
    NetworkInfo,
    Observation,
    Operation,
    ProtocolProbe,
    Redirect,
    Run,
    TcpConnect,
    TlsHandshake,
)
from probe.records import Confidence, Status, Verdict

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
RUN_ID = "run-1"
SYSTEM = "system"
DOH = "https://1.1.1.1/dns-query"
REAL_CA = "CN=Real Trusted CA, O=Real"
MITM_CA = "CN=Fortinet CA, O=Fortinet"
PAGE = "<html><head><title>Example Domain Welcome</title></head><body>" + "x" * 400
TITLE = "Example Domain Welcome"
HEADERS: tuple[tuple[str, str], ...] = (("Content-Type", "text/html"), ("X-Site-Id", "42"))

_ids = itertools.count(1)


def make_run(
    connectivity: Connectivity = Connectivity.OK, *, vpn: bool | None = False, run_id: str = RUN_ID
) -> Run:
    return Run(
        id=run_id,
        probe_id="probe-1",
        started_at=T0,
        software_version="test",
        config_digest="digest",
        network=NetworkInfo(asn=58224, country="IR", vpn_suspected=vpn),
        connectivity=connectivity,
    )


def endpoint(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def observation(
    layer: Layer,
    where: str,
    details: Details,
    failure: str | None = None,
    operation: Operation | str | None = None,
    *,
    failure_detail: str | None = None,
    started_at: datetime = T0,
    duration_ms: float = 12.5,
) -> Observation[Details]:
    return Observation(
        layer=layer,
        endpoint=where,
        started_at=started_at,
        duration_ms=duration_ms,
        details=details,
        failure=failure,
        failed_operation=Operation(operation) if operation else None,
        failure_detail=failure_detail,
    )


def measurement(
    platform: str, target: str, obs: Observation[Details], *, run_id: str = RUN_ID
) -> Measurement:
    return Measurement(run_id, platform, target, obs, id=f"{obs.layer}-{next(_ids)}")


def stalled(m: Measurement, stall_ms: float = 1800.0) -> Measurement:
    """`m` as measured while the probe itself was stalled for `stall_ms` (probe.stall)."""
    obs = dataclasses.replace(m.observation, probe_stall_ms=stall_ms)
    return dataclasses.replace(m, observation=obs)


# -- the per-layer records -------------------------------------------------------------------------

_RCODES = {
    None: "NOERROR",
    "dns_nxdomain_error": "NXDOMAIN",
    "dns_servfail_error": "SERVFAIL",
    "dns_refused_error": "REFUSED",
    "dns_no_answer": "NOERROR",
}


def dns_query(
    host: str,
    addresses: Sequence[str] = (),
    failure: str | None = None,
    *,
    resolver: str = SYSTEM,
    responses: Sequence[Sequence[str]] | None = None,
    rcode: str | None = "",
    primary: bool | None = None,
) -> DnsQuery:
    """A DNS record; `responses` lists the addresses of each UDP response in arrival order."""
    transport = "system" if resolver == SYSTEM else "doh" if resolver.startswith("https") else "udp"
    return DnsQuery(
        query=host,
        resolver=resolver,
        transport=transport,
        rcode=_RCODES.get(failure) if rcode == "" else rcode,
        addresses=tuple(addresses),
        answers=tuple(DnsAnswer("AAAA" if ":" in a else "A", a, 300, host) for a in addresses),
        responses=tuple(
            DnsResponse(5.0 * (i + 1), "NOERROR", tuple(r), False, i + 1)
            for i, r in enumerate(responses or ())
        ),
        second_answer=len(responses or ()) > 1,
        primary=primary,
    )


def certificate(sni: str, *, issuer: str = REAL_CA, sha256: str = "ab" * 32) -> Certificate:
    return Certificate(
        sha256=sha256,
        subject=f"CN={sni}",
        issuer=issuer,
        sans=(sni,),
        not_before="2025-01-01T00:00:00+00:00",
        not_after="2026-01-01T00:00:00+00:00",
    )


def tls_handshake(
    address: str,
    port: int,
    sni: str,
    failure: str | None = None,
    *,
    issuer: str = REAL_CA,
    source: str | None = SYSTEM,
    differential_kind: DifferentialKind | None = None,
    target_sni: str | None = None,
) -> TlsHandshake:
    certificate_failure = (
        failure is not None and failure.startswith("ssl_") and failure != "ssl_failed_handshake"
    )
    presented = failure is None or certificate_failure
    return TlsHandshake(
        address=address,
        port=port,
        sni=sni,
        version="TLSv1.3" if presented else None,
        cipher="TLS_AES_128_GCM_SHA256" if presented else None,
        alpn="h2" if presented else None,
        certificates=(certificate(sni, issuer=issuer),) if presented else (),
        verified=failure is None,
        verify_failure=failure if certificate_failure else None,
        differential_kind=differential_kind,
        target_sni=target_sni,
        address_source=source,
    )


def http_transaction(
    url: str,
    address: str | None,
    status: int | None = 200,
    *,
    body: str = PAGE,
    body_length: int | None = None,
    title: str | None = TITLE,
    headers: Sequence[tuple[str, str]] = HEADERS,
    throughput: float | None = None,
    host_header: str | None = None,
    source: str | None = SYSTEM,
    redirects: Sequence[Redirect] = (),
    differential_kind: DifferentialKind | None = None,
    target_host: str | None = None,
    transfer: bool | None = None,
    truncated: bool = False,
    ttfb_ms: float = 30.0,
) -> HttpTransaction:
    host = url.split("://", 1)[1].split("/", 1)[0]
    answered = status is not None
    return HttpTransaction(
        url=url,
        method="GET",
        address=address,
        host_header=host_header or host,
        status=status,
        headers=tuple(headers) if answered else (),
        body_length=(len(body) if body_length is None else body_length) if status else 0,
        body_truncated=truncated,
        body_sha256="cd" * 32,
        title=title if answered else None,
        body_prefix=body[:2048] if answered else "",
        redirects=tuple(redirects),
        final_url=url,
        timings=HttpTimings(connect_ms=10.0, ttfb_ms=ttfb_ms, total_ms=ttfb_ms + 20.0),
        throughput_kbps=throughput,
        transfer=transfer,
        differential_kind=differential_kind,
        target_host=target_host,
        address_source=source,
    )


# -- measurements as the runner records them -------------------------------------------------------


def dns(
    platform: str,
    target: str,
    host: str,
    addresses: Sequence[str] = (),
    failure: str | None = None,
    *,
    resolver: str = SYSTEM,
    responses: Sequence[Sequence[str]] | None = None,
    rcode: str | None = "",
    run_id: str = RUN_ID,
    primary: bool | None = None,
) -> Measurement:
    """A DNS measurement; `responses` lists the addresses of each UDP response in arrival order.
    `primary` is the runner's mark of the first configured resolver (the network's); None is a
    record made before the runner marked it."""
    if failure is None and not addresses:
        failure = "dns_no_answer"
    details = dns_query(
        host,
        addresses,
        failure,
        resolver=resolver,
        responses=responses,
        rcode=rcode,
        primary=primary,
    )
    operation = (
        None
        if failure is None
        else Operation.RESOLVE
        if details.transport == "system"
        else Operation.DNS_ROUND_TRIP
    )
    obs = observation(Layer.DNS, resolver, details, failure, operation)
    return measurement(platform, target, obs, run_id=run_id)


def doh(
    platform: str,
    target: str,
    host: str,
    addresses: Sequence[str] = (),
    failure: str | None = None,
    *,
    rcode: str | None = "",
    primary: bool | None = None,
) -> Measurement:
    return dns(
        platform, target, host, addresses, failure, resolver=DOH, rcode=rcode, primary=primary
    )


def tcp(
    platform: str,
    target: str,
    address: str,
    port: int,
    failure: str | None = None,
    *,
    source: str | None = SYSTEM,
    attempt: int = 1,
    duration_ms: float = 12.5,
) -> Measurement:
    """A connect to address:port (`attempt` 2: the runner's repeat), taking `duration_ms`."""
    obs = observation(
        Layer.TCP,
        endpoint(address, port),
        TcpConnect(address, port, address_source=source, attempt=attempt),
        failure,
        Operation.CONNECT if failure is not None else None,
        duration_ms=duration_ms,
    )
    return measurement(platform, target, obs)


def protocol_probe(
    platform: str,
    target: str,
    address: str,
    port: int,
    failure: str | None = None,
    *,
    source: str | None = SYSTEM,
    speaks: str | None = None,
) -> Measurement:
    """The runner's protocol probe (random first data) to address:port; `speaks` is what the
    catalog says the endpoint's own traffic is."""
    details = ProtocolProbe(address, port, payload_bytes=64, address_source=source, speaks=speaks)
    obs = observation(
        Layer.TCP,
        endpoint(address, port),
        details,
        failure,
        Operation.READ if failure is not None else None,
    )
    return measurement(platform, target, obs)


def tls(
    platform: str,
    target: str,
    address: str,
    port: int,
    sni: str,
    failure: str | None = None,
    *,
    operation: str | None = None,
    issuer: str = REAL_CA,
    source: str | None = SYSTEM,
    differential_kind: DifferentialKind | None = None,
    target_sni: str | None = None,
) -> Measurement:
    details = tls_handshake(
        address,
        port,
        sni,
        failure,
        issuer=issuer,
        source=source,
        differential_kind=differential_kind,
        target_sni=target_sni,
    )
    if failure is not None and operation is None:
        operation = "tls_handshake"
    obs = observation(Layer.TLS, endpoint(address, port), details, failure, operation)
    return measurement(platform, target, obs)


class HttpFields(TypedDict, total=False):
    """http_transaction's keyword arguments, which http() passes on."""

    body: str
    body_length: int | None
    title: str | None
    headers: Sequence[tuple[str, str]]
    throughput: float | None
    host_header: str | None
    source: str | None
    redirects: Sequence[Redirect]
    differential_kind: DifferentialKind | None
    target_host: str | None
    transfer: bool | None
    truncated: bool
    ttfb_ms: float


def http(
    platform: str,
    target: str,
    url: str,
    address: str | None,
    status: int | None = 200,
    failure: str | None = None,
    *,
    operation: str | None = None,
    **fields: Unpack[HttpFields],
) -> Measurement:
    if failure is not None:
        status = None if operation in (None, "http_round_trip") else status
        operation = operation or "http_round_trip"
    details = http_transaction(url, address, status, **fields)
    obs = observation(Layer.HTTP, url, details, failure, operation)
    return measurement(platform, target, obs)


def control_site(kbps: float = 8000.0) -> list[Measurement]:
    """The run's control site, reached, with its download rate."""
    url, address = "https://www.google.com/", "142.250.1.1"
    return [
        dns("control", url, "www.google.com", [address]),
        tcp("control", url, address, 443),
        tls("control", url, address, 443, "www.google.com"),
        http("control", url, url, address, body_length=300_000, throughput=kbps),
    ]


def control_transfer(kbps: float = 80_000.0, *, ttfb_ms: float = 40.0) -> list[Measurement]:
    """The run's control transfer (a large file read within the transfer bounds), reached."""
    url = "https://upload.wikimedia.org/wikipedia/commons/3/3f/Fronalpstock_big.jpg"
    address = "185.15.59.240"
    return [
        dns("control", url, "upload.wikimedia.org", [address]),
        tcp("control", url, address, 443),
        tls("control", url, address, 443, "upload.wikimedia.org"),
        http(
            "control",
            url,
            url,
            address,
            body_length=512 * 1024,
            throughput=kbps,
            transfer=True,
            truncated=True,
            ttfb_ms=ttfb_ms,
        ),
    ]


def https_site(
    platform: str,
    url: str,
    host: str,
    address: str,
    *,
    tls_failure: str | None = None,
    source: str = SYSTEM,
    **http_kwargs: Any,
) -> list[Measurement]:
    """The runner's pipeline for an https target that resolves and connects; `http_kwargs` go to
    http()."""
    found = [
        dns(platform, url, host, [address]),
        tcp(platform, url, address, 443, source=source),
        tls(platform, url, address, 443, host, tls_failure, source=source),
    ]
    if tls_failure is None:
        found.append(http(platform, url, url, address, source=source, **http_kwargs))
    return found


# -- the test helper's answer ----------------------------------------------------------------------


def h_dns(host: str, addresses: Sequence[str], failure: str | None = None) -> Observation[Details]:
    details = DnsQuery(host, SYSTEM, "system", rcode="NOERROR", addresses=tuple(addresses))
    return observation(Layer.DNS, SYSTEM, details, failure, "resolve" if failure else None)


def h_tcp(address: str, port: int, failure: str | None = None) -> Observation[Details]:
    details = TcpConnect(address, port)
    operation = "connect" if failure else None
    return observation(Layer.TCP, endpoint(address, port), details, failure, operation)


def h_tls(
    address: str, port: int, sni: str, failure: str | None = None, *, issuer: str = REAL_CA
) -> Observation[Details]:
    details = TlsHandshake(
        address,
        port,
        sni,
        verified=failure is None,
        certificates=(Certificate("ef" * 32, subject=f"CN={sni}", issuer=issuer),),
    )
    operation = "tls_handshake" if failure else None
    return observation(Layer.TLS, endpoint(address, port), details, failure, operation)


def h_http(
    url: str,
    status: int | None = 200,
    failure: str | None = None,
    *,
    body_length: int = len(PAGE),
    title: str | None = TITLE,
    headers: Sequence[tuple[str, str]] = HEADERS,
    throughput: float | None = None,
    differential_kind: DifferentialKind | None = None,
    ttfb_ms: float | None = None,
) -> Observation[Details]:
    details = HttpTransaction(
        url,
        status=status,
        body_length=body_length,
        title=title,
        headers=tuple(headers),
        throughput_kbps=throughput,
        differential_kind=differential_kind,
        timings=HttpTimings(ttfb_ms=ttfb_ms),
    )
    operation = "http_round_trip" if failure else None
    return observation(Layer.HTTP, url, details, failure, operation)


def h_probe(address: str, port: int, failure: str | None) -> Observation[Details]:
    details = ProtocolProbe(address, port)
    operation = "read" if failure else None
    return observation(Layer.TCP, endpoint(address, port), details, failure, operation)


def h_target(
    platform: str, target: str, *measurements: Observation[Details], host: str | None = None
) -> ControlTarget:
    """One target of a helper's answer; its host defaults to the target's name or URL host."""
    if host is None:
        host = target.split("://", 1)[1].split("/", 1)[0] if "://" in target else target
    return ControlTarget(platform, target, host, tuple(measurements))


def helper_document(*targets: ControlTarget) -> dict[str, object]:
    """A helper's answer as the JSON document it sends."""
    return encode_response(HelperResult(client=ClientView(), targets=tuple(targets)))


def helper(*targets: ControlTarget) -> ControlEvidence:
    """Control evidence from a helper's answer through the product path: the JSON text the helper
    sends, parsed and validated by the helper protocol, turned into controls by analysis."""
    text = json.dumps(helper_document(*targets))
    return controls_from_helper_targets(parse_response(json.loads(text)).targets)


# -- reading records ------------------------------------------------------------------------------

R = TypeVar("R", bound=Details)


def record(kind: type[R], obs: Observation[Details]) -> R:
    """The observation's details, narrowed to the record type the test expects."""
    assert isinstance(obs.details, kind), obs
    return obs.details


def stored_observation(obs: Observation[Details]) -> dict[str, Any]:
    """The observation's details as stored (the codec's JSON: lists, nested objects)."""
    return dict(encode_details(obs.details))


def stored(m: Measurement) -> dict[str, Any]:
    """A measurement's details as stored (the codec's JSON: lists, nested objects)."""
    return stored_observation(m.observation)


# -- reading verdicts ------------------------------------------------------------------------------


def only(verdicts: list[Verdict], target: str) -> Verdict:
    matching = [v for v in verdicts if v.target == target]
    assert len(matching) == 1, verdicts
    return matching[0]


def outcome(v: Verdict) -> tuple[Status, str | None, Confidence | None]:
    return v.status, v.technique, v.confidence


BLOCKED_CONFIRMED = Status.BLOCKED, Confidence.CONFIRMED


class ListSink:
    """A measurement sink that keeps every batch the runner saves, in order."""

    def __init__(self) -> None:
        self.batches: list[list[Measurement]] = []

    def save_measurements(self, batch: Sequence[Measurement]) -> None:
        self.batches.append(list(batch))

    @property
    def all(self) -> list[Measurement]:
        return [m for batch in self.batches for m in batch]
