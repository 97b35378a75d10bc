"""The test helper's wire protocol, version 1: JSON documents validated both ways.

The probe asks (POST /v1/measure, `Authorization: Bearer <token>`):

    {"version": 1,
     "targets": [{"platform": str, "name": str, "kind": "dns" | "tcp" | "http" | "https",
                  "host": str, "ports": [int], "path": "/...", "method": "GET" | "POST" | "HEAD",
                  "speaks": "raw" | "tls" | "http" (optional: only where the catalog says
                            something other than the kind's own)}]}

The helper answers, measuring each target with the probe's own runner and checks:

    {"version": 1,
     "client": {"address": str | null (the probe's address as the helper saw it),
                "asn": null, "as_name": null, "country": null},
     "complete": bool (false: the helper's deadline cut the batch short; a target may then
                 lack some measurements, never hold a wrong one),
     "targets": [{"platform": str, "target": str (the request's name), "host": str,
                  "measurements": [{"layer", "endpoint", "started_at" (ISO 8601, UTC),
                                    "duration_ms", "failure", "failed_operation", "details"}]}],
     "refused": [{"platform": str, "target": str, "reason": str}]}

`details` is the layer's record as probe.codec writes it (docs/details.md); each measurement is
validated with that codec, so the probe reads typed records only. A refused target (the helper
will not connect to a non-public address) is no control at all, so it is listed apart and never
appears in `targets`.

Requests are checked strictly (unknown keys, bad hosts and oversized batches are refused, naming
the offending path): the helper is the gatekeeper. Responses are checked for everything the
probe reads, and keys a later version 1 helper may add are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from probe.addresses import is_ip
from probe.catalog import CatalogError, parse_target
from probe.codec import CodecError, decode_observation, encode_observation
from probe.model import (
    Details,
    DnsQuery,
    HttpTransaction,
    Observation,
    ProtocolProbe,
    Target,
    TcpConnect,
    TlsHandshake,
)

PROTOCOL_VERSION = 1
MEASURE_PATH = "v1/measure"

_REQUEST_KEYS = frozenset({"version", "targets"})
_TARGET_KEYS = frozenset({"platform", "name", "kind", "host", "ports", "path", "method", "speaks"})


class ProtocolError(ValueError):
    """The document does not follow the test helper protocol (version 1)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what either side accepts. A control answer is small; more is abuse or garbage."""

    max_targets: int = 2_000
    max_request_bytes: int = 2 * 1024 * 1024
    max_ports: int = 16
    max_text: int = 2_048
    # 2,000 targets with a 2 KiB body prefix and headers each stay well under this.
    max_response_bytes: int = 64 * 1024 * 1024
    max_measurements: int = 1_000
    # Endpoints (target x port) one request may ask for: what bounds the connections a request
    # can make the helper open (each endpoint costs a few per address), 32,000 before this.
    max_endpoints: int = 2_000


LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class ClientView:
    """What the helper saw of the probe. `address` identifies the volunteer: never store it."""

    address: str | None = None
    asn: int | None = None
    as_name: str | None = None
    country: str | None = None


@dataclass(frozen=True, slots=True)
class ControlTarget:
    """What the helper measured for one target, from its own vantage."""

    platform: str
    target: str
    host: str
    measurements: tuple[Observation[Details], ...]


@dataclass(frozen=True, slots=True)
class RefusedTarget:
    """A target the helper would not measure, and why."""

    platform: str
    target: str
    reason: str


@dataclass(frozen=True, slots=True)
class HelperResult:
    """A helper's whole answer."""

    client: ClientView
    targets: tuple[ControlTarget, ...]
    refused: tuple[RefusedTarget, ...] = ()
    complete: bool = True


# -- small validators, each naming the path it checks ------------------------------------------


def _fail(path: str, message: str) -> ProtocolError:
    return ProtocolError(f"{path}: {message}")


def _object(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(path, f"expected an object, got {_kind(value)}")
    return value


def _array(value: Any, path: str, limit: int) -> Sequence[Any]:
    if not isinstance(value, list):
        raise _fail(path, f"expected a list, got {_kind(value)}")
    if len(value) > limit:
        raise _fail(path, f"{len(value)} entries, more than the {limit} allowed")
    return value


def _text(value: Any, path: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, f"expected a non-empty string, got {value!r:.80}")
    if len(value) > limit:
        raise _fail(path, f"longer than {limit} characters")
    return value


def _optional_text(value: Any, path: str, limit: int) -> str | None:
    return None if value is None else _text(value, path, limit)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _version(document: Mapping[str, Any]) -> None:
    version = document.get("version")
    if version != PROTOCOL_VERSION or isinstance(version, bool):
        raise _fail(
            "$.version",
            f"unsupported protocol version {version!r:.40} (expected {PROTOCOL_VERSION})",
        )


# -- the request ----------------------------------------------------------------------------------


def batches(targets: Sequence[Target], limits: Limits = LIMITS) -> list[Sequence[Target]]:
    """`targets` in consecutive requests, each within max_targets and max_endpoints."""
    out: list[Sequence[Target]] = []
    start, endpoints = 0, 0
    for i, target in enumerate(targets):
        cost = len(target.ports)
        full = i - start >= limits.max_targets or endpoints + cost > limits.max_endpoints
        if i > start and full:
            out.append(targets[start:i])
            start, endpoints = i, 0
        endpoints += cost
    out.append(targets[start:])
    return out


def encode_request(targets: Sequence[Target]) -> dict[str, Any]:
    """The request document for `targets`."""
    return {"version": PROTOCOL_VERSION, "targets": [_encode_target(t) for t in targets]}


def _encode_target(t: Target) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "platform": t.platform,
        "name": t.name,
        "kind": t.kind.value,
        "host": t.host,
        "ports": list(t.ports),
        "path": t.path,
        "method": t.method,
    }
    if t.speaks is not None:
        # Sent only when it says more than the kind, so a helper that predates it still
        # measures every other target.
        entry["speaks"] = t.speaks.value
    return entry


def parse_request(data: Any, limits: Limits = LIMITS) -> tuple[Target, ...]:
    """The targets of a request document (decoded JSON); ProtocolError names the first problem.

    Hosts, ports, paths and methods are validated by the catalog's own rules (the same entry
    shape a config.toml [[targets]] table has), so the helper accepts exactly what a probe can
    be configured to test."""
    document = _object(data, "$")
    _version(document)
    unknown = set(document) - _REQUEST_KEYS
    if unknown:
        raise _fail("$", f"unknown key(s) {', '.join(sorted(unknown))}")
    targets: list[Target] = []
    seen: set[tuple[str, str]] = set()
    for i, item in enumerate(_array(document.get("targets"), "$.targets", limits.max_targets)):
        path = f"$.targets[{i}]"
        entry = _object(item, path)
        unknown = set(entry) - _TARGET_KEYS
        if unknown:
            raise _fail(path, f"unknown key(s) {', '.join(sorted(unknown))}")
        platform = _text(entry.get("platform"), f"{path}.platform", 64)
        name = _text(entry.get("name"), f"{path}.name", limits.max_text)
        for key in ("kind", "host", "path", "method", "speaks"):
            if key in entry:
                _text(entry[key], f"{path}.{key}", limits.max_text)
        fields = {k: v for k, v in entry.items() if k != "platform"}
        if "ports" in entry:
            ports = _array(entry["ports"], f"{path}.ports", limits.max_ports)
            if not ports:
                fields.pop("ports")  # a dns target has none; other kinds then take their default
        try:
            target = parse_target(fields, platform, where=path, source="helper")
        except CatalogError as exc:
            raise ProtocolError(str(exc)) from None
        identity = (platform, name)
        if identity in seen:
            raise _fail(path, f"duplicate target {name!r:.80} of platform {platform!r:.40}")
        seen.add(identity)
        targets.append(target)
    endpoints = sum(len(t.ports) for t in targets)
    if endpoints > limits.max_endpoints:
        raise _fail(
            "$.targets",
            f"{endpoints} endpoints (targets x ports), "
            f"more than the {limits.max_endpoints} allowed",
        )
    return tuple(targets)


# -- the response ---------------------------------------------------------------------------------


def encode_response(result: HelperResult) -> dict[str, Any]:
    """The response document for `result`."""
    client = result.client
    return {
        "version": PROTOCOL_VERSION,
        "client": {
            "address": client.address,
            "asn": client.asn,
            "as_name": client.as_name,
            "country": client.country,
        },
        "complete": result.complete,
        "targets": [
            {
                "platform": t.platform,
                "target": t.target,
                "host": t.host,
                "measurements": [encode_observation(o) for o in t.measurements],
            }
            for t in result.targets
        ],
        "refused": [
            {"platform": r.platform, "target": r.target, "reason": r.reason} for r in result.refused
        ],
    }


def _client(value: Any, path: str) -> ClientView:
    entry = _object(value, path)
    address = _optional_text(entry.get("address"), f"{path}.address", 64)
    asn = entry.get("asn")
    if asn is not None and (not isinstance(asn, int) or isinstance(asn, bool) or asn <= 0):
        raise _fail(f"{path}.asn", f"expected a positive integer or null, got {asn!r:.40}")
    country = _optional_text(entry.get("country"), f"{path}.country", 2)
    return ClientView(
        address=address,
        asn=asn,
        as_name=_optional_text(entry.get("as_name"), f"{path}.as_name", 256),
        country=country,
    )


def _check_control(observation: Observation[Details], path: str) -> None:
    """What a control must hold beyond its types, for analysis to trust it: addresses that are
    IP addresses, ports in range, a DNS success with addresses, an HTTP success with a status."""
    details, dpath = observation.details, f"{path}.details"
    if isinstance(details, DnsQuery):
        if not details.query.strip():
            raise _fail(f"{dpath}.query", "expected a non-empty string")
        for i, address in enumerate(details.addresses):
            if not is_ip(address):
                raise _fail(f"{dpath}.addresses[{i}]", f"{address!r:.80} is not an IP address")
        if observation.failure is None and not details.addresses:
            raise _fail(dpath, "a DNS success must carry addresses")
    elif isinstance(details, TcpConnect | ProtocolProbe | TlsHandshake):
        if not is_ip(details.address):
            raise _fail(f"{dpath}.address", f"{details.address!r:.80} is not an IP address")
        if not 0 < details.port < 65536:
            raise _fail(f"{dpath}.port", f"expected a port number 1-65535, got {details.port}")
        if isinstance(details, TlsHandshake) and not details.sni.strip():
            raise _fail(f"{dpath}.sni", "expected a non-empty string")
    elif isinstance(details, HttpTransaction):
        try:
            scheme = urlsplit(details.url).scheme
        except ValueError:
            scheme = ""
        if scheme not in ("http", "https"):
            raise _fail(f"{dpath}.url", f"{details.url!r:.80} is not an http(s) URL")
        if details.status is not None and not 100 <= details.status <= 999:
            raise _fail(f"{dpath}.status", f"{details.status} is not an HTTP status")
        if details.status is None and observation.failure is None:
            raise _fail(dpath, "an HTTP success must carry a status")
        if details.body_length < 0:
            raise _fail(f"{dpath}.body_length", "expected a non-negative integer")


def parse_observation(value: Any, path: str, limits: Limits = LIMITS) -> Observation[Details]:
    """One measurement of a response, validated into an Observation with its typed record (the
    probe's codec: every field the probe reads is checked, so a record that lacks one, such as
    a TCP connect without its address, is refused here and never reaches analysis)."""
    entry = _object(value, path)
    _text(entry.get("endpoint"), f"{path}.endpoint", limits.max_text)
    _optional_text(entry.get("failure"), f"{path}.failure", limits.max_text)
    try:
        observation = decode_observation(entry, path)
    except CodecError as exc:
        raise ProtocolError(str(exc)) from None
    _check_control(observation, path)
    return observation


def parse_response(data: Any, limits: Limits = LIMITS) -> HelperResult:
    """A response document (decoded JSON) as a HelperResult; ProtocolError names the first
    problem."""
    document = _object(data, "$")
    _version(document)
    complete = document.get("complete")
    if not isinstance(complete, bool):
        raise _fail("$.complete", f"expected true or false, got {complete!r:.40}")
    targets = []
    for i, item in enumerate(_array(document.get("targets"), "$.targets", limits.max_targets)):
        path = f"$.targets[{i}]"
        entry = _object(item, path)
        measurements = _array(
            entry.get("measurements"), f"{path}.measurements", limits.max_measurements
        )
        targets.append(
            ControlTarget(
                platform=_text(entry.get("platform"), f"{path}.platform", 64),
                target=_text(entry.get("target"), f"{path}.target", limits.max_text),
                host=_text(entry.get("host"), f"{path}.host", 256),
                measurements=tuple(
                    parse_observation(m, f"{path}.measurements[{j}]", limits)
                    for j, m in enumerate(measurements)
                ),
            )
        )
    refused = []
    for i, item in enumerate(_array(document.get("refused"), "$.refused", limits.max_targets)):
        path = f"$.refused[{i}]"
        entry = _object(item, path)
        refused.append(
            RefusedTarget(
                platform=_text(entry.get("platform"), f"{path}.platform", 64),
                target=_text(entry.get("target"), f"{path}.target", limits.max_text),
                reason=_text(entry.get("reason"), f"{path}.reason", limits.max_text),
            )
        )
    return HelperResult(
        client=_client(document.get("client"), "$.client"),
        targets=tuple(targets),
        refused=tuple(refused),
        complete=complete,
    )
