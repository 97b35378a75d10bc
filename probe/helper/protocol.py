"""The test helper's wire protocol, version 1: JSON documents validated both ways.

The probe asks (POST /v1/measure, `Authorization: Bearer <token>`):

    {"version": 1,
     "targets": [{"platform": str, "name": str, "kind": "dns" | "tcp" | "http" | "https",
                  "host": str, "ports": [int], "path": "/...", "method": "GET" | "POST" | "HEAD"}]}

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

`details` follows the probe's Observation.details schema per layer. A refused target (the helper
will not connect to a non-public address) is no control at all, so it is listed apart and never
appears in `targets`.

Requests are checked strictly (unknown keys, bad hosts and oversized batches are refused, naming
the offending path): the helper is the gatekeeper. Responses are checked for everything the
probe reads, and keys a later version 1 helper may add are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from probe.catalog import CatalogError, parse_target
from probe.model import Layer, Observation, Operation, Target

PROTOCOL_VERSION = 1
MEASURE_PATH = "v1/measure"

_REQUEST_KEYS = frozenset({"version", "targets"})
_TARGET_KEYS = frozenset({"platform", "name", "kind", "host", "ports", "path", "method"})
_LAYERS = {layer.value: layer for layer in Layer}
_OPERATIONS = {operation.value: operation for operation in Operation}


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
    measurements: tuple[Observation, ...]


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
    return {
        "version": PROTOCOL_VERSION,
        "targets": [
            {
                "platform": t.platform,
                "name": t.name,
                "kind": t.kind.value,
                "host": t.host,
                "ports": list(t.ports),
                "path": t.path,
                "method": t.method,
            }
            for t in targets
        ],
    }


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
        for key in ("kind", "host", "path", "method"):
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


def encode_observation(observation: Observation) -> dict[str, Any]:
    """One measurement as the response carries it."""
    operation = observation.failed_operation
    return {
        "layer": observation.layer.value,
        "endpoint": observation.endpoint,
        "started_at": observation.started_at.astimezone(UTC).isoformat(),
        "duration_ms": observation.duration_ms,
        "failure": observation.failure,
        "failed_operation": operation.value if operation is not None else None,
        "details": observation.details,
    }


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


def _started_at(value: Any, path: str) -> datetime:
    text = _text(value, path, 64)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise _fail(path, f"{text!r:.64} is not an ISO 8601 time") from None
    if when.tzinfo is None:
        raise _fail(path, f"{text!r:.64} has no time zone")
    return when.astimezone(UTC)


def parse_observation(value: Any, path: str, limits: Limits = LIMITS) -> Observation:
    """One measurement of a response, back into an Observation."""
    entry = _object(value, path)
    raw_layer = entry.get("layer")
    layer = _LAYERS.get(raw_layer) if isinstance(raw_layer, str) else None
    if layer is None:
        raise _fail(f"{path}.layer", f"expected dns, tcp, tls or http, got {raw_layer!r:.40}")
    duration = entry.get("duration_ms")
    if (
        not isinstance(duration, int | float)
        or isinstance(duration, bool)
        or not math.isfinite(duration)
        or duration < 0
    ):
        raise _fail(f"{path}.duration_ms", f"expected a non-negative number, got {duration!r:.40}")
    raw_operation = entry.get("failed_operation")
    operation = _OPERATIONS.get(raw_operation) if isinstance(raw_operation, str) else None
    if raw_operation is not None and operation is None:
        raise _fail(f"{path}.failed_operation", f"unknown operation {raw_operation!r:.40}")
    details = _object(entry.get("details"), f"{path}.details")
    return Observation(
        layer=layer,
        endpoint=_text(entry.get("endpoint"), f"{path}.endpoint", limits.max_text),
        started_at=_started_at(entry.get("started_at"), f"{path}.started_at"),
        duration_ms=float(duration),
        failure=_optional_text(entry.get("failure"), f"{path}.failure", limits.max_text),
        failed_operation=operation,
        details=dict(details),
    )


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
