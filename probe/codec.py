"""The measurement codec: runs, measurements and verdicts <-> JSON objects, versioned.

Stand-in on the collector branch for the codec of issue 10 (same function names and shapes);
replaced by that module when it lands, keeping encode_verdict/decode_verdict.

Decoding is strict about types: a value of the wrong type raises CodecError (a ValueError) whose
message names the path of the field, e.g. `$.measurements[3].started_at: expected a string, got 3`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from probe.model import Connectivity, Layer, Measurement, NetworkInfo, Observation, Operation, Run
from probe.records import Confidence, Status, Verdict

JsonValue = Any

CODEC_VERSION = 1


class CodecError(ValueError):
    """A document or stored row is not a valid record; the message names the path."""


def _fail(path: str, message: str) -> CodecError:
    return CodecError(f"{path}: {message}")


def _shown(value: object) -> str:
    return f"{value!r:.80}"


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


_Decoder = Callable[[Any, str], Any]


def _decode_str(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise _fail(path, f"expected a string, got {_shown(value)}")
    return value


def _decode_int(value: Any, path: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _fail(path, f"expected an integer, got {_shown(value)}")
    return value


def _decode_float(value: Any, path: str) -> float:
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(float(value))
    ):
        raise _fail(path, f"expected a number, got {_shown(value)}")
    return float(value)


def _decode_bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(path, f"expected true or false, got {_shown(value)}")
    return value


def _optional(inner: _Decoder) -> _Decoder:
    def decode(value: Any, path: str) -> Any:
        return None if value is None else inner(value, path)

    return decode


def _enum(cls: type[StrEnum]) -> _Decoder:
    values = {member.value: member for member in cls}

    def decode(value: Any, path: str) -> StrEnum:
        if not isinstance(value, str) or value not in values:
            raise _fail(path, f"expected one of {', '.join(values)}, got {_shown(value)}")
        return values[value]

    return decode


def _time(value: Any, path: str) -> datetime:
    text = _decode_str(value, path)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _fail(path, f"{text!r:.64} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise _fail(path, f"{text!r:.64} has no time zone")
    return moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _object(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(path, f"expected an object, got {_kind(value)}")
    return value


def _version(entry: Mapping[str, Any], path: str) -> None:
    version = entry.get("version")
    if version != CODEC_VERSION or isinstance(version, bool):
        raise _fail(f"{path}.version", f"expected {CODEC_VERSION}, got {_shown(version)}")


_decode_layer = _enum(Layer)
_decode_operation = _optional(_enum(Operation))
_decode_optional_str = _optional(_decode_str)
_decode_optional_int = _optional(_decode_int)
_decode_optional_bool = _optional(_decode_bool)


def encode_measurement(m: Measurement) -> dict[str, JsonValue]:
    obs = m.observation
    return {
        "version": CODEC_VERSION,
        "id": m.id,
        "run_id": m.run_id,
        "platform": m.platform,
        "target": m.target,
        "observation": {
            "layer": obs.layer.value,
            "endpoint": obs.endpoint,
            "started_at": _iso(obs.started_at),
            "duration_ms": obs.duration_ms,
            "failure": obs.failure,
            "failed_operation": None
            if obs.failed_operation is None
            else obs.failed_operation.value,
            "details": obs.details,
        },
    }


def decode_measurement(doc: Any, path: str = "$") -> Measurement:
    entry = _object(doc, path)
    _version(entry, path)
    obs_path = f"{path}.observation"
    obs = _object(entry.get("observation"), obs_path)
    duration = _decode_float(obs.get("duration_ms"), f"{obs_path}.duration_ms")
    if duration < 0:
        raise _fail(f"{obs_path}.duration_ms", f"expected a non-negative number, got {duration}")
    operation = _decode_operation(obs.get("failed_operation"), f"{obs_path}.failed_operation")
    return Measurement(
        run_id=_decode_str(entry.get("run_id"), f"{path}.run_id"),
        platform=_decode_str(entry.get("platform"), f"{path}.platform"),
        target=_decode_str(entry.get("target"), f"{path}.target"),
        observation=Observation(
            layer=Layer(_decode_layer(obs.get("layer"), f"{obs_path}.layer")),
            endpoint=_decode_str(obs.get("endpoint"), f"{obs_path}.endpoint"),
            started_at=_time(obs.get("started_at"), f"{obs_path}.started_at"),
            duration_ms=duration,
            failure=_decode_optional_str(obs.get("failure"), f"{obs_path}.failure"),
            failed_operation=None if operation is None else Operation(operation),
            details=dict(_object(obs.get("details", {}), f"{obs_path}.details")),
        ),
        id=_decode_str(entry.get("id"), f"{path}.id"),
    )


_decode_connectivity = _enum(Connectivity)


def encode_run(run: Run) -> dict[str, JsonValue]:
    n = run.network
    return {
        "version": CODEC_VERSION,
        "id": run.id,
        "probe_id": run.probe_id,
        "started_at": _iso(run.started_at),
        "finished_at": None if run.finished_at is None else _iso(run.finished_at),
        "software_version": run.software_version,
        "config_digest": run.config_digest,
        "network": {
            "asn": n.asn,
            "as_name": n.as_name,
            "country": n.country,
            "resolver_asn": n.resolver_asn,
            "resolver_as_name": n.resolver_as_name,
            "resolver_country": n.resolver_country,
            "vpn_suspected": n.vpn_suspected,
            "source": n.source,
        },
        "connectivity": run.connectivity.value,
        "interrupted": run.interrupted,
    }


def decode_run(doc: Any, path: str = "$") -> Run:
    entry = _object(doc, path)
    _version(entry, path)
    finished = entry.get("finished_at")
    net_path = f"{path}.network"
    net = _object(entry.get("network", {}), net_path)
    return Run(
        id=_decode_str(entry.get("id"), f"{path}.id"),
        probe_id=_decode_str(entry.get("probe_id"), f"{path}.probe_id"),
        started_at=_time(entry.get("started_at"), f"{path}.started_at"),
        software_version=_decode_str(entry.get("software_version"), f"{path}.software_version"),
        config_digest=_decode_str(entry.get("config_digest"), f"{path}.config_digest"),
        network=NetworkInfo(
            asn=_decode_optional_int(net.get("asn"), f"{net_path}.asn"),
            as_name=_decode_optional_str(net.get("as_name"), f"{net_path}.as_name"),
            country=_decode_optional_str(net.get("country"), f"{net_path}.country"),
            resolver_asn=_decode_optional_int(net.get("resolver_asn"), f"{net_path}.resolver_asn"),
            resolver_as_name=_decode_optional_str(
                net.get("resolver_as_name"), f"{net_path}.resolver_as_name"
            ),
            resolver_country=_decode_optional_str(
                net.get("resolver_country"), f"{net_path}.resolver_country"
            ),
            vpn_suspected=_decode_optional_bool(
                net.get("vpn_suspected"), f"{net_path}.vpn_suspected"
            ),
            source=_decode_str(net.get("source", "unknown"), f"{net_path}.source"),
        ),
        finished_at=None if finished is None else _time(finished, f"{path}.finished_at"),
        connectivity=Connectivity(
            _decode_connectivity(entry.get("connectivity", "unknown"), f"{path}.connectivity")
        ),
        interrupted=_decode_bool(entry.get("interrupted", False), f"{path}.interrupted"),
    )


# -- verdicts (the upload's third record) ---------------------------------------------------------

_decode_status = _enum(Status)
_decode_confidence = _optional(_enum(Confidence))


def encode_verdict(verdict: Verdict) -> dict[str, JsonValue]:
    """A verdict as a self-describing JSON object (what `probe upload` sends)."""
    return {
        "version": CODEC_VERSION,
        "run_id": verdict.run_id,
        "probe_id": verdict.probe_id,
        "measured_at": _iso(verdict.measured_at),
        "asn": verdict.asn,
        "country": verdict.country,
        "platform": verdict.platform,
        "target": verdict.target,
        "status": verdict.status.value,
        "technique": verdict.technique,
        "confidence": None if verdict.confidence is None else verdict.confidence.value,
        "rule_id": verdict.rule_id,
        "rules_version": verdict.rules_version,
        "evidence": list(verdict.evidence),
        "detail": verdict.detail,
    }


def decode_verdict(doc: Any, path: str = "$") -> Verdict:
    """A verdict from encode_verdict's object; CodecError names the bad field."""
    entry = _object(doc, path)
    _version(entry, path)
    evidence = entry.get("evidence", [])
    if not isinstance(evidence, list):
        raise _fail(f"{path}.evidence", f"expected a list, got {_kind(evidence)}")
    confidence = _decode_confidence(entry.get("confidence"), f"{path}.confidence")
    return Verdict(
        run_id=_decode_str(entry.get("run_id"), f"{path}.run_id"),
        probe_id=_decode_str(entry.get("probe_id"), f"{path}.probe_id"),
        measured_at=_time(entry.get("measured_at"), f"{path}.measured_at"),
        asn=_decode_optional_int(entry.get("asn"), f"{path}.asn"),
        country=_decode_optional_str(entry.get("country"), f"{path}.country"),
        platform=_decode_str(entry.get("platform"), f"{path}.platform"),
        target=_decode_str(entry.get("target"), f"{path}.target"),
        status=Status(_decode_status(entry.get("status"), f"{path}.status")),
        technique=_decode_optional_str(entry.get("technique"), f"{path}.technique"),
        confidence=None if confidence is None else Confidence(confidence),
        rule_id=_decode_str(entry.get("rule_id"), f"{path}.rule_id"),
        rules_version=_decode_str(entry.get("rules_version"), f"{path}.rules_version"),
        evidence=tuple(
            _decode_str(item, f"{path}.evidence[{i}]") for i, item in enumerate(evidence)
        ),
        detail=_decode_str(entry.get("detail", ""), f"{path}.detail"),
    )
