"""The measurement codec: the typed records of probe.model <-> JSON, versioned (CODEC_VERSION).

One codec for every boundary a measurement crosses: the store's `details` column, the test
helper's protocol, the exports' details_json, the collector's upload batches (runs, measurements
and verdicts), and (next) the OONI importer.
The JSON keys of a record are its field names (DnsPerType's are "A" and "AAAA"), which are the
keys the checks wrote before the records existed, so rows stored before them decode as they are.

Decoding is strict about types and lenient about absence: a key that is missing takes the
field's default (older writers left some out), a key of a later writer is ignored, and a value
of the wrong type raises CodecError (a ValueError) whose message names the path of the field,
e.g. `$.details.responses[1].rcode: expected a string, got 3`.

Which record a details object is comes from the observation's layer and its `differential_kind`:

    dns   RawCapture when differential_kind is "raw", else DnsQuery
    tcp   RawCapture ("raw"), ProtocolProbe ("protocol"), else TcpConnect
    tls   TlsHandshake
    http  HttpTransaction
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple

from probe.model import (
    DETAIL_RECORDS,
    UNKNOWN_FAILURE,
    UNKNOWN_FAILURE_PREFIX,
    Connectivity,
    Details,
    DifferentialKind,
    DnsPerType,
    DnsQuery,
    HttpTransaction,
    JsonValue,
    Layer,
    Measurement,
    MeasurementRow,
    NetworkInfo,
    Observation,
    Operation,
    ProtocolProbe,
    RawCapture,
    Role,
    Run,
    TcpConnect,
    TlsHandshake,
    role_of,
)
from probe.records import Confidence, Status, Verdict

__all__ = [
    "CODEC_VERSION",
    "PROBE_STALL_KEY",
    "CodecError",
    "StoredDetails",
    "canonical_details",
    "data_dictionary",
    "decode_details",
    "decode_details_column",
    "decode_measurement",
    "decode_observation",
    "decode_run",
    "decode_verdict",
    "encode_details",
    "encode_details_column",
    "encode_measurement",
    "encode_observation",
    "encode_run",
    "encode_verdict",
    "encoded_details_column",
    "encoded_role",
    "measurement_row",
    "split_failure",
]

# Bump when a record's meaning changes; a reader refuses documents of another version.
CODEC_VERSION = 1

# Keys written only when set: the runner's annotations, and fields only some writers have. A
# null would say nothing more than the absence, and today's stored rows lack them.
_OMITTED_WHEN_NULL = frozenset(
    {
        "primary",
        "redirect_from",
        "replies_capped",
        "address_source",
        "differential_kind",
        "target_sni",
        "target_host",
        "rcodes",
        "attempt",
        "http_status",
        "alpn_offered",
        "reused_tls_connection",
    }
)
# JSON keys that are not the field's name.
_KEYS: Mapping[type[Any], Mapping[str, str]] = {DnsPerType: {"a": "A", "aaaa": "AAAA"}}
# The key in the store's details column that holds Observation.failure_detail.
FAILURE_DETAIL_KEY = "failure_detail"
# The key in the store's details column (and an observation's JSON) that holds
# Observation.probe_stall_ms, when there is one.
PROBE_STALL_KEY = "probe_stall_ms"


class CodecError(ValueError):
    """A document or stored row is not a valid measurement record; the message names the path."""


def _fail(path: str, message: str) -> CodecError:
    return CodecError(f"{path}: {message}")


def _shown(value: object) -> str:
    return f"{value!r:.80}"


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


# -- encoding ------------------------------------------------------------------------------------


# JSON scalars by exact type: the common case, tested first (a StrEnum is a str subclass, so it
# is not among them and takes its own branch below).
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _encode_value(value: Any) -> JsonValue:
    kind = type(value)
    if kind in _SCALARS:
        return value  # type: ignore[no-any-return]
    if isinstance(value, StrEnum):
        return value.value
    if kind is tuple or kind is list:
        return [_encode_value(v) for v in value]
    if kind in _FIELD_PLANS or (dataclasses.is_dataclass(value) and not isinstance(value, type)):
        return _encode_record(value)
    if isinstance(value, Mapping):
        return {str(k): _encode_value(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_encode_value(v) for v in value]
    if isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


# Per record type, built once: (field name, JSON key, left out when null) in field order.
_FIELD_PLANS: dict[type[Any], tuple[tuple[str, str, bool], ...]] = {}


def _field_plan(cls: type[Any]) -> tuple[tuple[str, str, bool], ...]:
    plan = _FIELD_PLANS.get(cls)
    if plan is None:
        keys = _KEYS.get(cls, {})
        plan = _FIELD_PLANS[cls] = tuple(
            (f.name, keys.get(f.name, f.name), f.name in _OMITTED_WHEN_NULL)
            for f in dataclasses.fields(cls)
            if not (cls is RawCapture and f.name == "capture")
        )
    return plan


def _encode_record(record: Any) -> dict[str, JsonValue]:
    compiled = _compiled_encoder(record.__class__)
    if compiled is not None:
        return compiled(record)
    return _encode_fields(record)


def _encode_fields(record: Any) -> dict[str, JsonValue]:
    """_encode_record, field by field (the compiled encoders' reference)."""
    out: dict[str, JsonValue] = {}
    for name, key, omitted_when_null in _field_plan(type(record)):
        value = getattr(record, name)
        if value is None and omitted_when_null:
            continue
        out[key] = _encode_value(value)
    if isinstance(record, RawCapture):
        # rawnet's own keys sit beside the typed ones, as rawnet wrote them.
        for key, value in record.capture.items():
            out.setdefault(key, value)
    return out


def encode_details(details: Details) -> dict[str, JsonValue]:
    """A details record as a JSON object (today's details keys)."""
    return _encode_record(details)


# -- decoding ------------------------------------------------------------------------------------

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


def _decode_json(value: Any, path: str) -> JsonValue:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list):
        return [_decode_json(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        return {str(k): _decode_json(v, f"{path}.{k}") for k, v in value.items()}
    raise _fail(path, f"expected JSON, got {_kind(value)}")


def _optional(inner: _Decoder) -> _Decoder:
    def decode(value: Any, path: str) -> Any:
        return None if value is None else inner(value, path)

    return decode


def _sequence(inner: _Decoder) -> _Decoder:
    def decode(value: Any, path: str) -> tuple[Any, ...]:
        if not isinstance(value, list | tuple):
            raise _fail(path, f"expected a list, got {_kind(value)}")
        return tuple(inner(v, f"{path}[{i}]") for i, v in enumerate(value))

    return decode


def _fixed(inners: tuple[_Decoder, ...]) -> _Decoder:
    def decode(value: Any, path: str) -> tuple[Any, ...]:
        if not isinstance(value, list | tuple) or len(value) != len(inners):
            raise _fail(path, f"expected a list of {len(inners)}, got {_shown(value)}")
        return tuple(
            d(v, f"{path}[{i}]") for i, (d, v) in enumerate(zip(inners, value, strict=True))
        )

    return decode


def _enum(cls: type[StrEnum]) -> _Decoder:
    values = {member.value: member for member in cls}

    def decode(value: Any, path: str) -> StrEnum:
        if not isinstance(value, str) or value not in values:
            raise _fail(path, f"expected one of {', '.join(values)}, got {_shown(value)}")
        return values[value]

    return decode


def _decoder(hint: Any) -> _Decoder:
    """The decoder of one annotated type (the shapes the records use, nothing more)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"unsupported union {hint}")
        return _optional(_decoder(inner[0]))
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return _sequence(_decoder(args[0]))
        return _fixed(tuple(_decoder(a) for a in args))
    if origin is not None and origin in (Mapping, dict):
        return _decode_json
    if hint is str:
        return _decode_str
    if hint is bool:
        return _decode_bool
    if hint is int:
        return _decode_int
    if hint is float:
        return _decode_float
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        return _enum(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _record_decoder(hint)
    raise TypeError(f"unsupported field type {hint}")


_MISSING = object()


_DECODERS: dict[type[Any], _Decoder] = {}


def _record_decoder(cls: type[Any]) -> _Decoder:
    """The decoder of one record type, built once."""
    decoder = _DECODERS.get(cls)
    if decoder is None:
        decoder = _DECODERS[cls] = _build_record_decoder(cls)
    return decoder


def _build_record_decoder(cls: type[Any]) -> _Decoder:
    generic = _build_generic_decoder(cls)
    compiled = _compiled_decoder(cls)
    if compiled is None:
        return generic

    def decode(value: Any, path: str) -> Any:
        record = compiled(value)
        return generic(value, path) if record is _UNSURE else record

    return decode


def _build_generic_decoder(cls: type[Any]) -> _Decoder:
    """The decoder of one record type, field by field: the reference the compiled decoders
    defer to, and the one that names the path of a bad field."""
    hints = typing.get_type_hints(cls)
    keys = _KEYS.get(cls, {})
    plan: list[tuple[str, str, _Decoder, bool]] = []
    for f in dataclasses.fields(cls):
        if cls is RawCapture and f.name == "capture":
            continue
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        plan.append((f.name, keys.get(f.name, f.name), _decoder(hints[f.name]), required))
    typed_keys = frozenset(key for _name, key, _d, _r in plan)

    def decode(value: Any, path: str) -> Any:
        if not isinstance(value, Mapping):
            raise _fail(path, f"expected an object, got {_kind(value)}")
        kwargs: dict[str, Any] = {}
        for name, key, decoder, required in plan:
            raw = value.get(key, _MISSING)
            if raw is _MISSING:
                if required:
                    raise _fail(f"{path}.{key}", "missing")
                continue
            if raw is None and name in _OMITTED_WHEN_NULL:
                continue
            kwargs[name] = decoder(raw, f"{path}.{key}")
        if cls is RawCapture:
            extra = {k: v for k, v in value.items() if k not in typed_keys}
            kwargs["capture"] = types.MappingProxyType(
                {k: _decode_json(v, f"{path}.{k}") for k, v in extra.items()}
            )
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise _fail(path, str(exc)) from None

    return decode


# -- compiled paths ----------------------------------------------------------------------------
#
# A record is decoded and encoded once per measurement a report reads or an export writes (a
# million for a month of data), and the loops above (a decoder call and a path string per field)
# cost most of that. Per record type, straight-line functions are compiled once, the way
# dataclasses compiles __init__. A compiled decoder takes only input in which every value has the
# exact JSON type its field expects (str, int, float that is finite, bool, list, dict) and returns
# _UNSURE for anything else (a missing required key, an int where a float goes, a value that does
# not fit), which the generic decoder then reads or refuses with the path: what is accepted, and
# what comes out, is the generic decoder's. A compiled encoder writes each field as
# _encode_fields does: exact JSON scalars as they are, anything else through _encode_value.
# RawCapture (free-form keys) and any field type outside these stay generic.

_UNSURE = object()
_UNCOMPILED = object()
_COMPILED_DECODERS: dict[type[Any], Callable[[Any], Any] | None] = {}
_COMPILED_ENCODERS: dict[type[Any], Any] = {}


class _Uncompilable(Exception):
    """A field type the compiler does not handle: the record stays generic."""


def _compiled_encoder(cls: type[Any]) -> Callable[[Any], dict[str, JsonValue]] | None:
    """The compiled encoder of a record type (compiled on first use), None where there is none."""
    compiled = _COMPILED_ENCODERS.get(cls, _UNCOMPILED)
    if compiled is _UNCOMPILED:
        compiled = _COMPILED_ENCODERS[cls] = _compile_encoder(cls)
    return compiled  # type: ignore[no-any-return]


def _compiled_decoder(cls: type[Any]) -> Callable[[Any], Any] | None:
    if cls not in _COMPILED_DECODERS:
        _COMPILED_DECODERS[cls] = None  # while compiling (and if it cannot be)
        with contextlib.suppress(_Uncompilable):
            _COMPILED_DECODERS[cls] = _compile_decoder(cls)
    return _COMPILED_DECODERS[cls]


class _Source:
    """The text of one compiled function, with the names it uses."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: dict[str, Any] = {"UNSURE": _UNSURE, "MISSING": _MISSING}
        self.count = 0

    def name(self, prefix: str, value: Any = None) -> str:
        self.count += 1
        name = f"{prefix}{self.count}"
        if value is not None:
            self.names[name] = value
        return name

    def add(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)

    def compile(self, function: str) -> Any:
        namespace = dict(self.names)
        exec("\n".join(self.lines), namespace)  # our own generated text, nothing of the input
        return namespace[function]


def _check(src: _Source, hint: Any, value: str, out: str, indent: int) -> None:
    """Lines that set `out` to what the generic decoder returns for `value` of type `hint`, or
    return UNSURE."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(inner) != 1:
            raise _Uncompilable(hint)
        src.add(indent, f"if {value} is None:")
        src.add(indent + 1, f"{out} = None")
        src.add(indent, "else:")
        _check(src, inner[0], value, out, indent + 1)
        return
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            src.add(indent, f"if {value}.__class__ is not list:")
            src.add(indent + 1, "return UNSURE")
            if args[0] is str:  # the generic decoder keeps each str as it is
                item = src.name("item")
                src.add(indent, f"for {item} in {value}:")
                src.add(indent + 1, f"if {item}.__class__ is not str:")
                src.add(indent + 2, "return UNSURE")
                src.add(indent, f"{out} = tuple({value})")
                return
            items, item, decoded = src.name("items"), src.name("item"), src.name("decoded")
            src.add(indent, f"{items} = []")
            src.add(indent, f"for {item} in {value}:")
            _check(src, args[0], item, decoded, indent + 1)
            src.add(indent + 1, f"{items}.append({decoded})")
            src.add(indent, f"{out} = tuple({items})")
            return
        src.add(indent, f"if {value}.__class__ is not list or len({value}) != {len(args)}:")
        src.add(indent + 1, "return UNSURE")
        parts = [src.name("part") for _ in args]
        src.add(indent, f"{', '.join(parts)}, = {value}")
        decoded_parts = []
        for part, arg in zip(parts, args, strict=True):
            decoded = src.name("decoded")
            _check(src, arg, part, decoded, indent)
            decoded_parts.append(decoded)
        src.add(indent, f"{out} = ({', '.join(decoded_parts)},)")
        return
    if hint is str or hint is int or hint is bool:
        src.add(indent, f"if {value}.__class__ is not {hint.__name__}:")
        src.add(indent + 1, "return UNSURE")
        src.add(indent, f"{out} = {value}")
        return
    if hint is float:
        # A finite float (x - x is nan for inf and nan); an int goes generic (float(x) there).
        src.add(indent, f"if {value}.__class__ is not float or {value} - {value} != 0.0:")
        src.add(indent + 1, "return UNSURE")
        src.add(indent, f"{out} = {value}")
        return
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        members = src.name("members", {member.value: member for member in hint})
        src.add(indent, f"{out} = {members}.get({value}) if {value}.__class__ is str else None")
        src.add(indent, f"if {out} is None:")
        src.add(indent + 1, "return UNSURE")
        return
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        inner_decoder = _compiled_decoder(hint)
        if inner_decoder is None:
            raise _Uncompilable(hint)
        decoder = src.name("decoder", inner_decoder)
        src.add(indent, f"{out} = {decoder}({value})")
        src.add(indent, f"if {out} is UNSURE:")
        src.add(indent + 1, "return UNSURE")
        return
    raise _Uncompilable(hint)


def _compile_decoder(cls: type[Any]) -> Callable[[Any], Any]:
    """decode(value) -> the record, as the generic decoder makes it, or _UNSURE."""
    if cls is RawCapture:
        raise _Uncompilable(cls)
    hints = typing.get_type_hints(cls)
    keys = _KEYS.get(cls, {})
    src = _Source()
    src.names["cls"] = cls
    src.add(0, "def decode(value):")
    src.add(1, "if value.__class__ is not dict:")
    src.add(2, "return UNSURE")
    src.add(1, "get = value.get")
    src.add(1, "kwargs = {}")
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        raw = src.name("raw")
        src.add(1, f"{raw} = get({keys.get(f.name, f.name)!r}, MISSING)")
        if required:
            src.add(1, f"if {raw} is MISSING:")
            src.add(2, "return UNSURE")
            indent = 1
        else:
            src.add(1, f"if {raw} is not MISSING:")
            indent = 2
        if f.name in _OMITTED_WHEN_NULL:  # null: the field's default
            src.add(indent, f"if {raw} is not None:")
            indent += 1
        decoded = src.name("decoded")
        _check(src, hints[f.name], raw, decoded, indent)
        src.add(indent, f"kwargs[{f.name!r}] = {decoded}")
    src.add(1, "try:")
    src.add(2, "return cls(**kwargs)")
    src.add(1, "except (TypeError, ValueError):")
    src.add(2, "return UNSURE")
    decode: Callable[[Any], Any] = src.compile("decode")
    return decode


def _encoded(src: _Source, hint: Any, value: str) -> str:
    """An expression equal to _encode_value(`value`) for a field of type `hint`: exact JSON
    scalars as they are, the expected record, enum or tuple inline, anything else (a value not
    of its field's type) through _encode_value."""
    generic = f"({value} if {value}.__class__ in SCALARS else encode_value({value}))"
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return _encoded(src, inner[0], value) if len(inner) == 1 else generic
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            item = src.name("item")
            return (
                f"([{_encoded(src, args[0], item)} for {item} in {value}] "
                f"if {value}.__class__ is tuple else encode_value({value}))"
            )
        return generic
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        kind = src.name("kind", hint)
        return f"({value}.value if {value}.__class__ is {kind} else {generic})"
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        inner_encoder = _compiled_encoder(hint)
        if inner_encoder is None:
            return generic
        record_type, encoder = src.name("record_type", hint), src.name("encoder", inner_encoder)
        return f"({encoder}({value}) if {value}.__class__ is {record_type} else {generic})"
    return generic


def _compile_encoder(cls: type[Any]) -> Callable[[Any], dict[str, JsonValue]] | None:
    """encode(record) -> _encode_fields(record), field by field in straight lines."""
    if cls is RawCapture or not (dataclasses.is_dataclass(cls) and isinstance(cls, type)):
        return None
    hints = typing.get_type_hints(cls)
    src = _Source()
    src.names.update({"SCALARS": _SCALARS, "encode_value": _encode_value})
    plan = _field_plan(cls)
    # The fields before the first one left out when null, in one dict display; then one by one.
    lead = next((i for i, (_, _, omitted) in enumerate(plan) if omitted), len(plan))
    src.add(0, "def encode(record):")
    for i, (name, _, _) in enumerate(plan[:lead]):
        src.add(1, f"value{i} = record.{name}")
    entries = ", ".join(
        f"{key!r}: {_encoded(src, hints[name], f'value{i}')}"
        for i, (name, key, _) in enumerate(plan[:lead])
    )
    src.add(1, f"out = {{{entries}}}")
    for name, key, omitted_when_null in plan[lead:]:
        src.add(1, f"value = record.{name}")
        indent = 1
        if omitted_when_null:
            src.add(1, "if value is not None:")
            indent = 2
        src.add(indent, f"out[{key!r}] = {_encoded(src, hints[name], 'value')}")
    src.add(1, "return out")
    encode: Callable[[Any], dict[str, JsonValue]] = src.compile("encode")
    return encode


# -- canonical details: what an upload can store as it came ---------------------------------------
#
# A details object that is exactly what encode_details writes for the record decode_details reads
# from it (the same keys, in the encoder's order, each value of its field's exact JSON type) is
# stored as it is, so the collector need not build the record and encode it back. The check is
# compiled per record type like the decoders, and accepts only what the compiled decoder accepts
# (it returns False where that decoder is unsure, and for what the encoder would write otherwise:
# a key left out, a null the encoder omits, an unknown key, another key order).

_CHECKERS: dict[type[Any], Callable[[Any], bool] | None] = {}
# Per record type, the key sequences seen and whether each is canonical (bounded: a hostile
# upload can send any number of distinct key sets; past the bound they are worked out uncached).
_KEY_ORDERS: dict[type[Any], dict[tuple[str, ...], bool]] = {}
_KEY_ORDERS_KEPT = 256


def canonical_details(layer: Layer, data: Any) -> bool:
    """Whether `data` is the details object encode_details writes for the record that
    decode_details(layer, data) returns: then its JSON text is the record's, as received."""
    if data.__class__ is not dict:
        return False
    check = _checker(record_for(layer, data))
    return check is not None and check(data)


def _checker(cls: type[Any]) -> Callable[[Any], bool] | None:
    if cls not in _CHECKERS:
        _CHECKERS[cls] = None  # while compiling (and if it cannot be)
        if _compiled_decoder(cls) is not None:  # the same field types, or none
            with contextlib.suppress(_Uncompilable):
                _CHECKERS[cls] = _compile_checker(cls)
    return _CHECKERS[cls]


def _canonical_keys(cls: type[Any], keys: tuple[str, ...]) -> bool:
    """Whether an object with these keys, in this order, can be what the encoder writes."""
    orders = _KEY_ORDERS.setdefault(cls, {})
    known = orders.get(keys)
    if known is not None:
        return known
    # A key the encoder may leave out: a field left out when null whose default is null (one
    # whose default is another value, TcpConnect.attempt's 1, is written when absent).
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    present = set(keys)
    expected = tuple(
        key
        for name, key, omitted in _field_plan(cls)
        if key in present or not (omitted and defaults[name] is None)
    )
    fits = keys == expected
    if len(orders) < _KEY_ORDERS_KEPT:
        orders[keys] = fits
    return fits


def _is_canonical(src: _Source, hint: Any, value: str, indent: int) -> None:
    """Lines that return False unless `value`, of a field of type `hint`, is what the encoder
    writes for the value the compiled decoder reads from it."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(inner) != 1:
            raise _Uncompilable(hint)
        src.add(indent, f"if {value} is not None:")
        _is_canonical(src, inner[0], value, indent + 1)
        return
    if origin is tuple:
        args = typing.get_args(hint)
        src.add(indent, f"if {value}.__class__ is not list:")
        src.add(indent + 1, "return False")
        if len(args) == 2 and args[1] is Ellipsis:
            item = src.name("item")
            src.add(indent, f"for {item} in {value}:")
            _is_canonical(src, args[0], item, indent + 1)
            return
        src.add(indent, f"if len({value}) != {len(args)}:")
        src.add(indent + 1, "return False")
        for i, arg in enumerate(args):
            part = src.name("part")
            src.add(indent, f"{part} = {value}[{i}]")
            _is_canonical(src, arg, part, indent)
        return
    if hint is str or hint is int or hint is bool:
        src.add(indent, f"if {value}.__class__ is not {hint.__name__}:")
        src.add(indent + 1, "return False")
        return
    if hint is float:
        src.add(indent, f"if {value}.__class__ is not float or {value} - {value} != 0.0:")
        src.add(indent + 1, "return False")
        return
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        members = src.name("members", frozenset(member.value for member in hint))
        src.add(indent, f"if {value}.__class__ is not str or {value} not in {members}:")
        src.add(indent + 1, "return False")
        return
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        nested = _checker(hint)
        if nested is None:
            raise _Uncompilable(hint)
        check = src.name("check", nested)
        src.add(indent, f"if not {check}({value}):")
        src.add(indent + 1, "return False")
        return
    raise _Uncompilable(hint)


def _compile_checker(cls: type[Any]) -> Callable[[Any], bool]:
    """check(value) -> whether value is the canonical object of a `cls` record."""
    hints = typing.get_type_hints(cls)
    src = _Source()
    src.names.update({"canonical_keys": _canonical_keys, "cls": cls, "tuple": tuple})
    src.add(0, "def check(value):")
    src.add(1, "if value.__class__ is not dict or not canonical_keys(cls, tuple(value)):")
    src.add(2, "return False")
    src.add(1, "get = value.get")
    for name, key, omitted in _field_plan(cls):
        raw = src.name("raw")
        src.add(1, f"{raw} = get({key!r})")
        indent = 1
        if omitted:  # present only when not null (the keys' check saw whether it is there)
            src.add(1, f"if {key!r} in value:")
            src.add(2, f"if {raw} is None:")
            src.add(3, "return False")
            indent = 2
        _is_canonical(src, hints[name], raw, indent)
    src.add(1, "return True")
    check: Callable[[Any], bool] = src.compile("check")
    return check


def record_for(layer: Layer, details: Mapping[str, Any]) -> type[Details]:
    """The record type of a details object of `layer` (see the module docstring)."""
    kind = details.get("differential_kind")
    if kind == DifferentialKind.RAW and layer in (Layer.DNS, Layer.TCP):
        return RawCapture
    if layer is Layer.DNS:
        return DnsQuery
    if layer is Layer.TCP:
        return ProtocolProbe if kind == DifferentialKind.PROTOCOL else TcpConnect
    if layer is Layer.TLS:
        return TlsHandshake
    return HttpTransaction


def decode_details(layer: Layer, data: Any, path: str = "$.details") -> Details:
    """The details record of an observation of `layer`; CodecError names the bad field."""
    if not isinstance(data, Mapping):
        raise _fail(path, f"expected an object, got {_kind(data)}")
    cls: type[Any] = record_for(layer, data)
    record: Details = _record_decoder(cls)(data, path)
    return record


# -- failures ------------------------------------------------------------------------------------


def split_failure(failure: str | None, detail: str | None = None) -> tuple[str | None, str | None]:
    """(failure, failure_detail) with the free text out of the join key: a stored
    "unknown_failure: <text>" (written before failure_detail existed) becomes
    ("unknown_failure", "<text>")."""
    if failure is not None and failure.startswith(UNKNOWN_FAILURE_PREFIX):
        text = failure[len(UNKNOWN_FAILURE_PREFIX) :]
        return UNKNOWN_FAILURE, detail if detail is not None else text
    return failure, detail


# -- the store's details column ----------------------------------------------------------------


def encode_details_column(observation: Observation[Details]) -> dict[str, JsonValue]:
    """What the store keeps in its details column: the record's keys, and failure_detail and
    probe_stall_ms when there are (the schema has no column for them; v3 stays as it is)."""
    out = encode_details(observation.details)
    if observation.failure_detail is not None:
        out[FAILURE_DETAIL_KEY] = observation.failure_detail
    if observation.probe_stall_ms is not None:
        out[PROBE_STALL_KEY] = observation.probe_stall_ms
    return out


class StoredDetails(NamedTuple):
    """A stored details column, decoded: the record and the observation's extras."""

    record: Details
    failure_detail: str | None
    probe_stall_ms: float | None


def decode_details_column(layer: Layer, data: Any) -> StoredDetails:
    """The details record, failure_detail and probe_stall_ms of a stored details column."""
    if not isinstance(data, Mapping):
        raise _fail("$.details", f"expected an object, got {_kind(data)}")
    detail = data.get(FAILURE_DETAIL_KEY)
    if detail is not None and not isinstance(detail, str):
        raise _fail(f"$.details.{FAILURE_DETAIL_KEY}", f"expected a string, got {_shown(detail)}")
    stall = _decode_stall(data.get(PROBE_STALL_KEY), f"$.details.{PROBE_STALL_KEY}")
    return StoredDetails(decode_details(layer, data), detail, stall)


def _decode_stall(value: Any, path: str) -> float | None:
    """probe_stall_ms: absent, or a finite non-negative number of milliseconds."""
    if value is None:
        return None
    stall = _decode_float(value, path)
    if stall < 0:
        raise _fail(path, f"expected a non-negative number, got {_shown(value)}")
    return stall


def encoded_details_column(layer: Layer, data: Any) -> tuple[dict[str, JsonValue], str | None]:
    """encode_details of the record decode_details_column makes of a stored details column, and
    the column's failure_detail: the column itself (failure_detail left out) when it already is
    that encoding (canonical_details), else through the record (CodecError as the decoder
    raises it)."""
    if data.__class__ is dict and PROBE_STALL_KEY not in data:  # a stall: read it checked
        detail = data.get(FAILURE_DETAIL_KEY)
        own = data
        if FAILURE_DETAIL_KEY in data:
            own = {key: value for key, value in data.items() if key != FAILURE_DETAIL_KEY}
        if (detail is None or detail.__class__ is str) and canonical_details(layer, own):
            return own, detail
    stored = decode_details_column(layer, data)
    return encode_details(stored.record), stored.failure_detail


_KINDS = {kind.value: kind for kind in DifferentialKind}


def encoded_role(details: Mapping[str, Any]) -> Role:
    """Observation.role of a measurement whose details record encodes to `details`."""
    kind = details.get("differential_kind")
    return role_of(None if kind is None else _KINDS[kind], details.get("redirect_from"))


def measurement_row(measurement: Measurement) -> MeasurementRow:
    """A Measurement as a MeasurementRow: what the store's Store.measurement_rows hands over for
    the same stored measurement."""
    o = measurement.observation
    return MeasurementRow(
        measurement.id,
        measurement.run_id,
        measurement.platform,
        measurement.target,
        o.endpoint,
        o.layer,
        o.started_at,
        o.duration_ms,
        o.failure,
        o.failed_operation,
        o.failure_detail,
        encode_details(o.details),
        o.role,
    )


# -- observations, measurements, runs -------------------------------------------------------------


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


def encode_observation(observation: Observation[Details]) -> dict[str, JsonValue]:
    """An observation as a JSON object (the helper protocol's measurement entries)."""
    operation = observation.failed_operation
    out: dict[str, JsonValue] = {
        "layer": observation.layer.value,
        "endpoint": observation.endpoint,
        "started_at": _iso(observation.started_at),
        "duration_ms": observation.duration_ms,
        "failure": observation.failure,
        "failed_operation": operation.value if operation is not None else None,
        "details": encode_details(observation.details),
    }
    if observation.failure_detail is not None:
        out[FAILURE_DETAIL_KEY] = observation.failure_detail
    if observation.probe_stall_ms is not None:
        out[PROBE_STALL_KEY] = observation.probe_stall_ms
    return out


_decode_layer = _enum(Layer)
_decode_operation = _optional(_enum(Operation))
_decode_optional_str = _optional(_decode_str)


def _object(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(path, f"expected an object, got {_kind(value)}")
    return value


# -- fast paths: an upload batch decodes a thousand measurements and their verdicts ----------------
#
# As the compiled decoders (above) do for details records: straight-line code that takes only
# input in which every value has the exact JSON type its field expects and returns _UNSURE for
# anything else, which the field-by-field decoder below it then reads or refuses with the path
# (building a path string per field was most of a measurement's decoding). What is accepted, and
# what comes out, is that decoder's.

_LAYERS = {member.value: member for member in Layer}
_OPERATIONS = {member.value: member for member in Operation}
_STATUSES = {member.value: member for member in Status}
_CONFIDENCES = {member.value: member for member in Confidence}
_LARGEST_FLOAT = sys.float_info.max


def _time_fast(value: Any) -> Any:
    if value.__class__ is not str:
        return _UNSURE
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return _UNSURE
    if moment.tzinfo is None:
        return _UNSURE
    return moment.astimezone(UTC)


def _observation_fast(entry: Any) -> Any:
    if entry.__class__ is not dict:
        return _UNSURE
    get: Callable[..., Any] = entry.get
    raw_layer, duration, endpoint = get("layer"), get("duration_ms"), get("endpoint")
    failure, detail, operation = get("failure"), get(FAILURE_DETAIL_KEY), get("failed_operation")
    details, stall = get("details"), get(PROBE_STALL_KEY)
    layer = _LAYERS.get(raw_layer) if raw_layer.__class__ is str else None
    if (
        layer is None
        # A finite, non-negative float (NaN fails the comparison; an int goes the long way).
        or duration.__class__ is not float
        or not 0.0 <= duration <= _LARGEST_FLOAT
        or endpoint.__class__ is not str
        or not endpoint.strip()
        or (failure is not None and failure.__class__ is not str)
        or (detail is not None and detail.__class__ is not str)
        or details.__class__ is not dict
        or (
            stall is not None
            and (stall.__class__ is not float or not 0.0 <= stall <= _LARGEST_FLOAT)
        )
    ):
        return _UNSURE
    if operation is not None:
        operation = _OPERATIONS.get(operation) if operation.__class__ is str else None
        if operation is None:
            return _UNSURE
    started_at = _time_fast(get("started_at"))
    decoder = _compiled_decoder(record_for(layer, details))
    if started_at is _UNSURE or decoder is None:
        return _UNSURE
    record = decoder(details)
    if record is _UNSURE:
        return _UNSURE
    failure, detail = split_failure(failure, detail)
    return Observation(
        layer=layer,
        endpoint=endpoint,
        started_at=started_at,
        duration_ms=duration,
        details=record,
        failure=failure,
        failed_operation=operation,
        failure_detail=detail,
        probe_stall_ms=stall,
    )


def _measurement_fast(entry: Any) -> Any:
    if entry.__class__ is not dict:
        return _UNSURE
    get: Callable[..., Any] = entry.get
    version, run_id, platform = get("version"), get("run_id"), get("platform")
    target, measurement_id = get("target"), get("id")
    if (
        version.__class__ is not int
        or version != CODEC_VERSION
        or run_id.__class__ is not str
        or platform.__class__ is not str
        or target.__class__ is not str
        or measurement_id.__class__ is not str
    ):
        return _UNSURE
    observation = _observation_fast(get("observation"))
    if observation is _UNSURE:
        return _UNSURE
    return Measurement(
        run_id=run_id,
        platform=platform,
        target=target,
        observation=observation,
        id=measurement_id,
    )


def _verdict_fast(entry: Any) -> Any:
    if entry.__class__ is not dict:
        return _UNSURE
    get: Callable[..., Any] = entry.get
    version, evidence, asn = get("version"), get("evidence", []), get("asn")
    strings = (
        get("run_id"),
        get("probe_id"),
        get("platform"),
        get("target"),
        get("rule_id"),
        get("rules_version"),
        get("detail", ""),
    )
    country, technique = get("country"), get("technique")
    raw_status, confidence = get("status"), get("confidence")
    if (
        version.__class__ is not int
        or version != CODEC_VERSION
        or evidence.__class__ is not list
        or (asn is not None and asn.__class__ is not int)
        or (country is not None and country.__class__ is not str)
        or (technique is not None and technique.__class__ is not str)
        or any(value.__class__ is not str for value in strings)
        or any(item.__class__ is not str for item in evidence)
    ):
        return _UNSURE
    status = _STATUSES.get(raw_status) if raw_status.__class__ is str else None
    if confidence is not None:
        confidence = _CONFIDENCES.get(confidence) if confidence.__class__ is str else None
        if confidence is None:
            return _UNSURE
    measured_at = _time_fast(get("measured_at"))
    if status is None or measured_at is _UNSURE:
        return _UNSURE
    run_id, probe_id, platform, target, rule_id, rules_version, detail = strings
    return Verdict(
        run_id=run_id,
        probe_id=probe_id,
        measured_at=measured_at,
        asn=asn,
        country=country,
        platform=platform,
        target=target,
        status=status,
        technique=technique,
        confidence=confidence,
        rule_id=rule_id,
        rules_version=rules_version,
        evidence=tuple(evidence),
        detail=detail,
    )


def decode_observation(doc: Any, path: str = "$") -> Observation[Details]:
    """An observation from its JSON object; CodecError names the bad field."""
    observation = _observation_fast(doc)
    if observation is not _UNSURE:
        return observation  # type: ignore[no-any-return]
    entry = _object(doc, path)
    layer = Layer(_decode_layer(entry.get("layer"), f"{path}.layer"))
    duration = _decode_float(entry.get("duration_ms"), f"{path}.duration_ms")
    if duration < 0:
        raise _fail(f"{path}.duration_ms", f"expected a non-negative number, got {duration}")
    raw_operation = _decode_operation(entry.get("failed_operation"), f"{path}.failed_operation")
    failure, detail = split_failure(
        _decode_optional_str(entry.get("failure"), f"{path}.failure"),
        _decode_optional_str(entry.get(FAILURE_DETAIL_KEY), f"{path}.{FAILURE_DETAIL_KEY}"),
    )
    endpoint = _decode_str(entry.get("endpoint"), f"{path}.endpoint")
    if not endpoint.strip():
        raise _fail(f"{path}.endpoint", "expected a non-empty string")
    return Observation(
        layer=layer,
        endpoint=endpoint,
        started_at=_time(entry.get("started_at"), f"{path}.started_at"),
        duration_ms=duration,
        details=decode_details(layer, entry.get("details"), f"{path}.details"),
        failure=failure,
        failed_operation=None if raw_operation is None else Operation(raw_operation),
        failure_detail=detail,
        probe_stall_ms=_decode_stall(entry.get(PROBE_STALL_KEY), f"{path}.{PROBE_STALL_KEY}"),
    )


def _version(entry: Mapping[str, Any], path: str) -> None:
    version = entry.get("version")
    if version != CODEC_VERSION or isinstance(version, bool):
        raise _fail(f"{path}.version", f"expected {CODEC_VERSION}, got {_shown(version)}")


def encode_measurement(m: Measurement) -> dict[str, JsonValue]:
    """A measurement as a self-describing JSON object (its codec version included)."""
    return {
        "version": CODEC_VERSION,
        "id": m.id,
        "run_id": m.run_id,
        "platform": m.platform,
        "target": m.target,
        "observation": encode_observation(m.observation),
    }


def decode_measurement(doc: Any, path: str = "$") -> Measurement:
    """A measurement from encode_measurement's object; CodecError names the bad field."""
    measurement = _measurement_fast(doc)
    if measurement is not _UNSURE:
        return measurement  # type: ignore[no-any-return]
    entry = _object(doc, path)
    _version(entry, path)
    return Measurement(
        run_id=_decode_str(entry.get("run_id"), f"{path}.run_id"),
        platform=_decode_str(entry.get("platform"), f"{path}.platform"),
        target=_decode_str(entry.get("target"), f"{path}.target"),
        observation=decode_observation(entry.get("observation"), f"{path}.observation"),
        id=_decode_str(entry.get("id"), f"{path}.id"),
    )


_decode_network = _record_decoder(NetworkInfo)
_decode_connectivity = _enum(Connectivity)


def encode_run(run: Run) -> dict[str, JsonValue]:
    """A run as a self-describing JSON object."""
    return {
        "version": CODEC_VERSION,
        "id": run.id,
        "probe_id": run.probe_id,
        "started_at": _iso(run.started_at),
        "finished_at": None if run.finished_at is None else _iso(run.finished_at),
        "software_version": run.software_version,
        "config_digest": run.config_digest,
        "network": _encode_record(run.network),
        "connectivity": run.connectivity.value,
        "interrupted": run.interrupted,
    }


def decode_run(doc: Any, path: str = "$") -> Run:
    """A run from encode_run's object; CodecError names the bad field."""
    entry = _object(doc, path)
    _version(entry, path)
    finished = entry.get("finished_at")
    network: NetworkInfo = _decode_network(entry.get("network", {}), f"{path}.network")
    return Run(
        id=_decode_str(entry.get("id"), f"{path}.id"),
        probe_id=_decode_str(entry.get("probe_id"), f"{path}.probe_id"),
        started_at=_time(entry.get("started_at"), f"{path}.started_at"),
        software_version=_decode_str(entry.get("software_version"), f"{path}.software_version"),
        config_digest=_decode_str(entry.get("config_digest"), f"{path}.config_digest"),
        network=network,
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
    verdict = _verdict_fast(doc)
    if verdict is not _UNSURE:
        return verdict  # type: ignore[no-any-return]
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
        asn=_optional(_decode_int)(entry.get("asn"), f"{path}.asn"),
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


# -- the data dictionary -------------------------------------------------------------------------


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return f"{_type_name(inner[0])} or null"
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list of {_type_name(args[0])}"
        return "[" + ", ".join(_type_name(a) for a in args) + "]"
    if origin is not None and origin in (Mapping, dict):
        return "object"
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        return " | ".join(f'"{m.value}"' for m in hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return hint.__name__
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(hint, str(hint))


def _field_comments(cls: type[Any]) -> dict[str, str]:
    """The trailing `# comment` of each field in the record's source (its one-line meaning)."""
    import inspect

    comments: dict[str, str] = {}
    for line in inspect.getsource(cls).splitlines():
        name, colon, rest = line.strip().partition(":")
        if colon and name.isidentifier() and "  # " in rest:
            comments[name] = rest.split("  # ", 1)[1].strip()
    return comments


def _records_in_order() -> Iterator[type[Any]]:
    """Every record reachable from the details records, each once, parents first."""
    seen: list[type[Any]] = []

    def visit(cls: type[Any]) -> None:
        if cls in seen:
            return
        seen.append(cls)
        for hint in typing.get_type_hints(cls).values():
            for arg in (hint, *typing.get_args(hint), *_nested_args(hint)):
                if isinstance(arg, type) and dataclasses.is_dataclass(arg):
                    visit(arg)

    for cls in DETAIL_RECORDS:
        visit(cls)
    yield from seen


def _nested_args(hint: Any) -> Iterator[Any]:
    for arg in typing.get_args(hint):
        yield arg
        yield from _nested_args(arg)


def data_dictionary() -> str:
    """docs/details.md: every details record, its JSON keys, types and meaning (generated)."""
    lines = [
        "# The `details` of a measurement (generated: do not edit)",
        "",
        "Written by `python3 -m probe.codec > docs/details.md` from the records in",
        "probe/model.py; tests/test_codec.py fails when this file and the records differ.",
        f"Codec version {CODEC_VERSION}. Which record a measurement's details is follows from its",
        "layer and `differential_kind` (see probe/codec.py). Keys whose value would be null are",
        "left out for the runner's annotations (primary, address_source, differential_kind,",
        "target_sni, target_host) and for rcodes, attempt and http_status. A stored row may also",
        f"carry `{FAILURE_DETAIL_KEY}`: the free text of an unknown_failure; and",
        f"`{PROBE_STALL_KEY}`: how many milliseconds the probe's own event loop was stalled",
        "while the check ran (a timeout across a stall is the probe's, not the network's).",
        "",
    ]
    for cls in _records_in_order():
        doc = " ".join((cls.__doc__ or "").split())
        lines += [
            f"## {cls.__name__}",
            "",
            doc,
            "",
            "| key | type | meaning |",
            "| --- | --- | --- |",
        ]
        hints = typing.get_type_hints(cls)
        comments = _field_comments(cls)
        keys = _KEYS.get(cls, {})
        for f in dataclasses.fields(cls):
            meaning = comments.get(f.name, "")
            if cls is RawCapture and f.name == "capture":
                lines.append(f"| (other keys) | JSON | {meaning} |")
                continue
            key = keys.get(f.name, f.name)
            lines.append(f"| `{key}` | {_type_name(hints[f.name])} | {meaning} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(data_dictionary(), end="")
