"""Control evidence: what an uncensored vantage saw for the same names, endpoints and URLs.

Two sources feed it. (a) The run's own answers from encrypted resolvers (DoH, not the probe's
primary resolver): they say what a name resolves to when nobody on the path can rewrite the
answer. (b) A test helper's JSON response, measured from an uncensored network with the same
checks and the same details schema as the probe's own measurements (OONI's test helper plays
this role). Without a working control the verdict rules say "inconclusive", never "blocked".

The helper's JSON (version 1):

    {"version": 1,
     "targets": [{"platform": str, "target": str, "host": str (optional),
                  "measurements": [{"layer": "dns"|"tcp"|"tls"|"http", "endpoint": str,
                                    "failure": str|null, "failed_operation": str|null,
                                    "details": {... the probe's details schema ...}}]}]}

parse_helper_response() validates it and raises HelperResponseError (a ValueError) naming the
offending path on anything else: a control that lies about its shape must not become evidence.
Keys beyond these (probe.helper's "client", "complete", "refused", "started_at", ...) are
ignored; controls_from_helper_targets() takes a response the helper client already decoded. The
helper's own A/B halves (details["differential_kind"] "sni"/"host") are left out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from analysis.fingerprints import parse_address
from probe.model import Layer, Measurement, Observation, Operation

HELPER_SCHEMA_VERSION = 1

# Bounds on what a helper may send: a control answer is small; anything bigger is garbage.
MAX_HELPER_TARGETS = 10_000
MAX_HELPER_MEASUREMENTS = 1_000

# details["differential_kind"] marks the runner's extra A/B measurements (probe/runner.py): "sni",
# "host", and "protocol": a TCP flow whose first data is random bytes (protocol allowlist).
DIFFERENTIAL_KEY = "differential_kind"
PROTOCOL_PROBE = "protocol"

HELPER_SOURCE = "helper"


class HelperResponseError(ValueError):
    """The test helper's response is not a valid control document."""


@dataclass(frozen=True, slots=True)
class ControlDns:
    """What a control resolver answered for `host`. `failure` None means addresses came back."""

    host: str
    source: str
    addresses: tuple[str, ...]
    failure: str | None
    rcode: str | None = None


@dataclass(frozen=True, slots=True)
class ControlConnect:
    """A control TCP connect to address:port, made for `host` (None when unknown)."""

    address: str
    port: int
    host: str | None
    failure: str | None
    source: str = HELPER_SOURCE


@dataclass(frozen=True, slots=True)
class ControlTls:
    """A control TLS handshake. `failure` None means it completed and verified for `sni`."""

    address: str
    port: int
    sni: str
    failure: str | None
    verified: bool
    leaf_issuer: str | None
    leaf_sha256: str | None
    source: str = HELPER_SOURCE


@dataclass(frozen=True, slots=True)
class ControlHttp:
    """A control HTTP response for `url` (status None: no response)."""

    url: str
    status: int | None
    body_length: int
    title: str | None
    headers: tuple[tuple[str, str], ...]
    failure: str | None
    throughput_kbps: float | None = None
    source: str = HELPER_SOURCE


@dataclass(frozen=True, slots=True)
class ControlProbe:
    """A control protocol probe (random first data) to address:port: did the server answer?"""

    address: str
    port: int
    payload: str
    failure: str | None
    source: str = HELPER_SOURCE


def normalise_host(host: str) -> str:
    return host.strip().rstrip(".").lower()


def normalise_url(url: str) -> str:
    """A URL compared by scheme, host, port and path: `https://X.com` equals `https://x.com/`."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return url.strip()
    scheme = parts.scheme.lower()
    host = normalise_host(parts.hostname or "")
    default = {"http": 80, "https": 443}.get(scheme)
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != default:
        netloc = f"{netloc}:{port}"
    path = parts.path or "/"
    query = f"?{parts.query}" if parts.query else ""
    return f"{scheme}://{netloc}{path}{query}"


@dataclass(frozen=True, slots=True)
class ControlEvidence:
    """Everything the controls saw, with lookups by host, endpoint and URL."""

    dns: tuple[ControlDns, ...] = ()
    tcp: tuple[ControlConnect, ...] = ()
    tls: tuple[ControlTls, ...] = ()
    http: tuple[ControlHttp, ...] = ()
    probes: tuple[ControlProbe, ...] = ()
    # (platform, target) pairs the helper measured.
    targets: frozenset[tuple[str, str]] = frozenset()

    def dns_for(self, host: str) -> tuple[ControlDns, ...]:
        name = normalise_host(host)
        return tuple(d for d in self.dns if d.host == name)

    def addresses_for(self, host: str) -> frozenset[str]:
        return frozenset(a for d in self.dns_for(host) for a in d.addresses)

    def tcp_for(self, address: str, port: int) -> tuple[ControlConnect, ...]:
        return tuple(c for c in self.tcp if c.address == address and c.port == port)

    def tcp_for_host(self, host: str, port: int) -> tuple[ControlConnect, ...]:
        name = normalise_host(host)
        return tuple(c for c in self.tcp if c.host == name and c.port == port)

    def tls_for(self, sni: str) -> tuple[ControlTls, ...]:
        name = normalise_host(sni)
        return tuple(t for t in self.tls if t.sni == name)

    def http_for(self, url: str) -> tuple[ControlHttp, ...]:
        key = normalise_url(url)
        return tuple(h for h in self.http if normalise_url(h.url) == key)

    def probes_for(self, address: str, port: int) -> tuple[ControlProbe, ...]:
        return tuple(p for p in self.probes if p.address == address and p.port == port)

    def covers(self, platform: str, target: str) -> bool:
        return (platform, target) in self.targets

    def merged(self, other: ControlEvidence) -> ControlEvidence:
        return ControlEvidence(
            dns=(*self.dns, *other.dns),
            tcp=(*self.tcp, *other.tcp),
            tls=(*self.tls, *other.tls),
            http=(*self.http, *other.http),
            probes=(*self.probes, *other.probes),
            targets=self.targets | other.targets,
        )

    @property
    def empty(self) -> bool:
        return not (self.dns or self.tcp or self.tls or self.http or self.probes)


# -- the run's own encrypted resolvers ----------------------------------------------------------


def is_control_resolver(details: Mapping[str, Any]) -> bool:
    """Whether a DNS measurement's resolver serves as a control: one the runner marked
    non-primary ("primary": false) that speaks DoH; without the mark, any DoH resolver. DoH is
    the control because nobody on the path can rewrite its answers."""
    if details.get("transport") != "doh":
        return False
    return details.get("primary") is not True


def controls_from_measurements(measurements: Iterable[Measurement]) -> ControlEvidence:
    """Control DNS answers from the run's own DoH measurements.

    A DoH exchange that failed in transport (timeout, reset: the censor may block the DoH server
    itself) is no control at all and is left out; one that completed counts, NXDOMAIN included
    (then the name does not exist, which makes a failing site down, not blocked)."""
    found = []
    for m in measurements:
        obs = m.observation
        details = obs.details
        if obs.layer is not Layer.DNS or not is_control_resolver(details):
            continue
        query = details.get("query")
        rcode = details.get("rcode")
        addresses = tuple(str(a) for a in details.get("addresses") or ())
        if not isinstance(query, str) or (rcode is None and not addresses):
            continue
        found.append(
            ControlDns(
                host=normalise_host(query),
                source=str(details.get("resolver") or obs.endpoint),
                addresses=addresses,
                failure=obs.failure,
                rcode=str(rcode) if rcode is not None else None,
            )
        )
    return ControlEvidence(dns=tuple(found))


# -- the test helper's JSON ---------------------------------------------------------------------


def _fail(path: str, message: str) -> HelperResponseError:
    return HelperResponseError(f"helper response: {path}: {message}")


def _mapping(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(path, f"expected an object, got {type(value).__name__}")
    return value


def _list(value: Any, path: str, limit: int) -> Sequence[Any]:
    if not isinstance(value, list):
        raise _fail(path, f"expected a list, got {type(value).__name__}")
    if len(value) > limit:
        raise _fail(path, f"{len(value)} entries, more than the {limit} a control may send")
    return value


def _string(value: Any, path: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, f"expected a non-empty string, got {value!r:.80}")
    return value


def _required_string(value: Any, path: str) -> str:
    text = _string(value, path)
    assert text is not None  # _string(optional=False) never returns None
    return text


def _address(value: Any, path: str) -> str:
    text = _required_string(value, path)
    ip = parse_address(text)
    if ip is None:
        raise _fail(path, f"{text!r:.80} is not an IP address")
    return str(ip)


def _port(value: Any, path: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
        raise _fail(path, f"expected a port number 1-65535, got {value!r:.80}")
    return value


def _optional_int(value: Any, path: str, *, minimum: int = 0) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise _fail(path, f"expected an integer >= {minimum}, got {value!r:.80}")
    return value


def _optional_number(value: Any, path: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise _fail(path, f"expected a non-negative number, got {value!r:.80}")
    return float(value)


def _headers(value: Any, path: str) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    pairs = []
    for i, pair in enumerate(_list(value, path, 1_000)):
        if (
            not isinstance(pair, list | tuple)
            or len(pair) != 2
            or not all(isinstance(x, str) for x in pair)
        ):
            raise _fail(f"{path}[{i}]", "expected a [name, value] pair of strings")
        pairs.append((pair[0], pair[1]))
    return tuple(pairs)


def _host_of(entry: Mapping[str, Any], measurements: Sequence[Any], path: str) -> str | None:
    """The name a helper target was measured for: `host` if given, else its DNS query, TLS SNI,
    or URL host, else the target itself when it is a host name or address."""
    if "host" in entry:
        return normalise_host(_required_string(entry["host"], f"{path}.host"))
    for item in measurements:
        if isinstance(item, Mapping) and isinstance(item.get("details"), Mapping):
            details = item["details"]
            for key in ("query", "sni"):
                if isinstance(details.get(key), str) and details[key].strip():
                    return normalise_host(details[key])
            url = details.get("url")
            if isinstance(url, str):
                try:
                    hostname = urlsplit(url).hostname
                except ValueError:
                    hostname = None
                if hostname:
                    return normalise_host(hostname)
    target = str(entry.get("target", ""))
    if "://" in target:
        try:
            hostname = urlsplit(target).hostname
        except ValueError:
            hostname = None
        return normalise_host(hostname) if hostname else None
    return normalise_host(target) if target.strip() else None


@dataclass(slots=True)
class _Collector:
    dns: list[ControlDns]
    tcp: list[ControlConnect]
    tls: list[ControlTls]
    http: list[ControlHttp]
    probes: list[ControlProbe]

    def evidence(self, covered: Iterable[tuple[str, str]]) -> ControlEvidence:
        return ControlEvidence(
            dns=tuple(self.dns),
            tcp=tuple(self.tcp),
            tls=tuple(self.tls),
            http=tuple(self.http),
            probes=tuple(self.probes),
            targets=frozenset(covered),
        )


_LAYERS = {layer.value: layer for layer in Layer}
_OPERATIONS = frozenset(op.value for op in Operation)


def _parse_measurement(item: Any, host: str | None, path: str, out: _Collector) -> None:
    entry = _mapping(item, path)
    layer = _LAYERS.get(str(entry.get("layer")))
    if layer is None:
        raise _fail(
            f"{path}.layer", f"expected dns, tcp, tls or http, got {entry.get('layer')!r:.80}"
        )
    endpoint = _required_string(entry.get("endpoint"), f"{path}.endpoint")
    failure = _string(entry.get("failure"), f"{path}.failure", optional=True)
    operation = entry.get("failed_operation")
    if operation is not None and operation not in _OPERATIONS:
        raise _fail(f"{path}.failed_operation", f"unknown operation {operation!r:.80}")
    details = _mapping(entry.get("details"), f"{path}.details")
    dpath = f"{path}.details"
    if details.get(DIFFERENTIAL_KEY) not in (None, PROTOCOL_PROBE):
        # The helper's own harmless-name A/B halves: not what the target looks like.
        return
    if layer is Layer.DNS:
        _parse_dns(details, failure, dpath, out)
    elif layer is Layer.HTTP:
        _parse_http(details, endpoint, failure, dpath, out)
    else:
        _parse_connection(layer, details, host, failure, operation, dpath, out)


def _parse_dns(
    details: Mapping[str, Any], failure: str | None, dpath: str, out: _Collector
) -> None:
    query = normalise_host(_required_string(details.get("query"), f"{dpath}.query"))
    addresses = tuple(
        _address(a, f"{dpath}.addresses[{i}]")
        for i, a in enumerate(_list(details.get("addresses", []), f"{dpath}.addresses", 1_000))
    )
    if failure is None and not addresses:
        raise _fail(dpath, "a DNS success must carry addresses")
    rcode = _string(details.get("rcode"), f"{dpath}.rcode", optional=True)
    out.dns.append(ControlDns(query, HELPER_SOURCE, addresses, failure, rcode))


def _parse_connection(
    layer: Layer,
    details: Mapping[str, Any],
    host: str | None,
    failure: str | None,
    operation: Any,
    dpath: str,
    out: _Collector,
) -> None:
    address = _address(details.get("address"), f"{dpath}.address")
    port = _port(details.get("port"), f"{dpath}.port")
    if layer is Layer.TCP:
        if details.get(DIFFERENTIAL_KEY) == PROTOCOL_PROBE:
            payload = _string(details.get("payload"), f"{dpath}.payload", optional=True)
            out.probes.append(ControlProbe(address, port, payload or "random", failure))
        else:
            out.tcp.append(ControlConnect(address, port, host, failure))
        return
    sni = normalise_host(_required_string(details.get("sni"), f"{dpath}.sni"))
    verified = details.get("verified", failure is None)
    if not isinstance(verified, bool):
        raise _fail(f"{dpath}.verified", "expected true or false")
    certificates = _list(details.get("certificates", []), f"{dpath}.certificates", 50)
    leaf = _mapping(certificates[0], f"{dpath}.certificates[0]") if certificates else {}
    issuer = _string(leaf.get("issuer"), f"{dpath}.certificates[0].issuer", optional=True)
    digest = _string(leaf.get("sha256"), f"{dpath}.certificates[0].sha256", optional=True)
    out.tls.append(ControlTls(address, port, sni, failure, verified, issuer, digest))
    # A handshake starts with a connect: a TLS record is also TCP evidence for the endpoint.
    tcp_failure = failure if operation == Operation.CONNECT else None
    out.tcp.append(ControlConnect(address, port, host, tcp_failure))


def _parse_http(
    details: Mapping[str, Any], endpoint: str, failure: str | None, dpath: str, out: _Collector
) -> None:
    url = _required_string(details.get("url", endpoint), f"{dpath}.url")
    try:
        scheme = urlsplit(url).scheme
    except ValueError:
        scheme = ""
    if scheme not in ("http", "https"):
        raise _fail(f"{dpath}.url", f"{url!r:.80} is not an http(s) URL")
    status = _optional_int(details.get("status"), f"{dpath}.status", minimum=100)
    if status is not None and status > 999:
        raise _fail(f"{dpath}.status", f"{status} is not an HTTP status")
    if status is None and failure is None:
        raise _fail(dpath, "an HTTP success must carry a status")
    body_length = _optional_int(details.get("body_length", 0), f"{dpath}.body_length") or 0
    title = details.get("title")
    if title is not None and not isinstance(title, str):
        raise _fail(f"{dpath}.title", "expected a string or null")
    headers = _headers(details.get("headers"), f"{dpath}.headers")
    throughput = _optional_number(details.get("throughput_kbps"), f"{dpath}.throughput_kbps")
    out.http.append(ControlHttp(url, status, body_length, title, headers, failure, throughput))


class HelperTarget(Protocol):
    """One measured target of a helper response, as probe.helper's client returns it."""

    @property
    def platform(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def host(self) -> str | None: ...
    @property
    def measurements(self) -> Sequence[Observation]: ...


def controls_from_helper_targets(targets: Iterable[HelperTarget]) -> ControlEvidence:
    """ControlEvidence from a helper response already decoded into Observations (the helper
    client's parse), through the same checks as parse_helper_response."""
    out = _Collector([], [], [], [], [])
    covered: set[tuple[str, str]] = set()
    for t, item in enumerate(targets):
        host = normalise_host(item.host) if item.host else None
        for i, observation in enumerate(item.measurements):
            entry = {
                "layer": observation.layer.value,
                "endpoint": observation.endpoint,
                "failure": observation.failure,
                "failed_operation": (
                    None
                    if observation.failed_operation is None
                    else observation.failed_operation.value
                ),
                "details": observation.details,
            }
            _parse_measurement(entry, host, f"$.targets[{t}].measurements[{i}]", out)
        covered.add((item.platform, item.target))
    return out.evidence(covered)


def parse_helper_response(data: object) -> ControlEvidence:
    """Validate a test helper's response (decoded JSON, or JSON text/bytes) into ControlEvidence.

    Raises HelperResponseError (a ValueError) naming the first offending path."""
    if isinstance(data, bytes | bytearray | str):
        try:
            data = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise HelperResponseError(f"helper response: not JSON ({exc})") from None
    document = _mapping(data, "$")
    version = document.get("version")
    if version != HELPER_SCHEMA_VERSION:
        raise _fail("$.version", f"expected {HELPER_SCHEMA_VERSION}, got {version!r:.80}")
    out = _Collector([], [], [], [], [])
    covered: set[tuple[str, str]] = set()
    for t, item in enumerate(_list(document.get("targets"), "$.targets", MAX_HELPER_TARGETS)):
        path = f"$.targets[{t}]"
        entry = _mapping(item, path)
        platform = _required_string(entry.get("platform"), f"{path}.platform")
        target = _required_string(entry.get("target"), f"{path}.target")
        measurements = _list(
            entry.get("measurements"), f"{path}.measurements", MAX_HELPER_MEASUREMENTS
        )
        host = _host_of(entry, measurements, path)
        for i, measurement in enumerate(measurements):
            _parse_measurement(measurement, host, f"{path}.measurements[{i}]", out)
        covered.add((platform, target))
    return out.evidence(covered)
