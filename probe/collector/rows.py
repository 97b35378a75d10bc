"""An upload's measurement entries straight to the store's rows, when they are in canonical form.

The collector stores each measurement as the row `_measurement_row(decode_measurement(entry))`
would make. Nearly every entry a probe sends is exactly what the codec writes, so for those the
row is built from the parsed JSON itself: every value is checked for the type its field expects
(as the codec's compiled decoders check them) and the details object, checked by
probe.codec.canonical_details, is written back as the JSON text it came as, without building the
records and encoding them again. `measurement_row` returns None for anything else (another
version, a value of an unexpected type, an int where a float goes, a details object the encoder
would write differently, every invalid entry), which then goes through the codec, which reads it
or names the bad field. The checks that do not depend on the path (ids, sizes, times) are made on
the rows, by probe.collector.batch.

JSON text: orjson when it is installed (parsing a batch and writing its details are most of the
collector's work), else the standard library; both write the details compactly. A document with
a UTF-16 surrogate escape is parsed by the standard library, as orjson refuses a lone surrogate
and the collector names it (probe.collector.batch). One difference stays: orjson reads an
integer beyond 64 bits as a float, so such a value (no field of the codec holds one) is refused
as "expected an integer" rather than as out of range, or kept as a float in a raw capture.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from probe.codec import (
    CODEC_VERSION,
    FAILURE_DETAIL_KEY,
    PROBE_STALL_KEY,
    canonical_details,
    split_failure,
)
from probe.model import Layer, Operation

try:
    import orjson
except ImportError:  # pragma: no cover - the standard library does the same, slower
    orjson = None  # type: ignore[assignment]

# A JSON escape of a UTF-16 surrogate (a lone one makes a string that is not valid Unicode).
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")

_compact = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


def parse_json(document: bytes) -> Any:
    """The document parsed (ValueError or RecursionError when it is not JSON)."""
    if orjson is None or SURROGATE_ESCAPE.search(document):
        return json.loads(document)
    return orjson.loads(document)


def _details_text_stdlib(details: dict[str, Any]) -> str:
    return _compact(details)


def _details_text_orjson(details: dict[str, Any]) -> str:
    try:
        return orjson.dumps(details).decode()
    except TypeError:  # orjson.JSONEncodeError: an integer beyond 64 bits
        return _compact(details)


details_text: Callable[[dict[str, Any]], str] = (
    _details_text_stdlib if orjson is None else _details_text_orjson
)

_LAYERS = {member.value: member for member in Layer}
_OPERATIONS = frozenset(member.value for member in Operation)
_FLOAT_MAX = 1.7976931348623157e308


def measurement_row(entry: Any) -> dict[str, Any] | None:
    """The store's row of a canonical measurement entry (the codec's object), or None when the
    entry needs the codec's own decoder."""
    if entry.__class__ is not dict:
        return None
    get = entry.get
    version, measurement_id, run_id = get("version"), get("id"), get("run_id")
    platform, target, observation = get("platform"), get("target"), get("observation")
    if (
        version.__class__ is not int
        or version != CODEC_VERSION
        or measurement_id.__class__ is not str
        or run_id.__class__ is not str
        or platform.__class__ is not str
        or target.__class__ is not str
        or observation.__class__ is not dict
    ):
        return None
    get = observation.get
    details: Any = get("details")
    raw_layer, endpoint, duration = get("layer"), get("endpoint"), get("duration_ms")
    failure, detail, operation = get("failure"), get(FAILURE_DETAIL_KEY), get("failed_operation")
    started, stall = get("started_at"), get(PROBE_STALL_KEY)
    layer = _LAYERS.get(raw_layer) if raw_layer.__class__ is str else None
    if (
        layer is None
        # A finite, non-negative float (NaN fails the comparison; an int goes the long way).
        or duration.__class__ is not float
        or not 0.0 <= duration <= _FLOAT_MAX
        or endpoint.__class__ is not str
        or not endpoint.strip()
        or (failure is not None and failure.__class__ is not str)
        or (detail is not None and detail.__class__ is not str)
        or (
            operation is not None
            and (operation.__class__ is not str or operation not in _OPERATIONS)
        )
        or started.__class__ is not str
        or (stall is not None and (stall.__class__ is not float or not 0.0 <= stall <= _FLOAT_MAX))
        or not canonical_details(layer, details)
    ):
        return None
    try:
        moment = datetime.fromisoformat(started)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    failure, detail = split_failure(failure, detail)
    if detail is not None:  # the store keeps failure_detail in the details column
        details = {**details, FAILURE_DETAIL_KEY: detail}
    if stall is not None:  # and probe_stall_ms after it (probe.codec.encode_details_column)
        details = {**details, PROBE_STALL_KEY: stall}
    return {
        "id": measurement_id,
        "run_id": run_id,
        "platform": platform,
        "target": target,
        "endpoint": endpoint,
        "layer": raw_layer,
        "started_at": moment.astimezone(UTC),
        "duration_ms": duration,
        "failure": failure,
        "failed_operation": operation,
        "details": details_text(details),
    }
