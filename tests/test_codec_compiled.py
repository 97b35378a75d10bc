"""The codec's compiled decoders and encoders (probe.codec, "compiled paths") against its generic,
field-by-field ones: on every recorded lab measurement's details and on thousands of damaged
copies of them (a key missing, null, of another type), the same record or the same CodecError
message; and the same JSON object out."""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from probe import codec
from probe.codec import (
    CodecError,
    decode_details,
    decode_measurement,
    decode_verdict,
    encode_details,
    encode_measurement,
    encode_verdict,
)
from probe.model import Layer, TlsHandshake
from probe.records import Confidence, Status, Verdict
from tests.damaged import copies_damaged, recorded_details
from tests.replay import load_replay, recorded_scenarios, replay_path


def _shape(value: Any) -> str:
    """The keys and JSON types of `value`, nested."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_shape(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(sorted({_shape(v) for v in value})) + "]"
    return type(value).__name__


def _outcome(decode: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "record", decode()
    except CodecError as exc:
        return "error", str(exc)


@pytest.fixture
def generic_only(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[], Any]], Any]:
    """Call a function with the codec's compiled paths switched off (fresh generic decoders)."""

    def call(function: Callable[[], Any]) -> Any:
        with monkeypatch.context() as patch:
            patch.setattr(codec, "_DECODERS", {})
            patch.setattr(codec, "_compiled_decoder", lambda cls: None)
            patch.setattr(codec, "_COMPILED_ENCODERS", {})
            patch.setattr(codec, "_compile_encoder", lambda cls: None)
            return function()

    return call


def test_recorded_details_decode_and_encode_as_the_generic_codec_does(
    generic_only: Callable[[Callable[[], Any]], Any],
) -> None:
    recorded = recorded_details()
    assert {layer for layer, _ in recorded} == set(Layer)
    expected = generic_only(lambda: [decode_details(layer, data) for layer, data in recorded])
    decoded = [decode_details(layer, data) for layer, data in recorded]
    assert decoded == expected
    assert [encode_details(record) for record in decoded] == generic_only(
        lambda: [encode_details(record) for record in expected]
    )
    assert {type(record).__name__ for record in decoded} >= {
        "DnsQuery",
        "TcpConnect",
        "ProtocolProbe",
        "TlsHandshake",
        "HttpTransaction",
        "RawCapture",
    }


def test_damaged_details_give_the_generic_codecs_record_or_error(
    generic_only: Callable[[Callable[[], Any]], Any],
) -> None:
    cases: list[tuple[Layer, Any]] = []
    seen: set[str] = set()
    for layer, data in recorded_details():
        shape = f"{layer} {_shape(data)}"
        if shape in seen:  # one measurement of each shape
            continue
        seen.add(shape)
        cases.extend((layer, damaged) for damaged in copies_damaged(data))
    assert len(cases) > 5_000

    def outcomes() -> list[tuple[str, Any]]:
        return [_outcome(functools.partial(decode_details, layer, data)) for layer, data in cases]

    expected = generic_only(outcomes)
    got = outcomes()
    assert got == expected
    kinds = {kind for kind, _ in got}
    assert kinds == {"record", "error"}  # both paths were taken


def test_a_record_holding_values_off_its_types_encodes_as_the_generic_codec_does(
    generic_only: Callable[[Callable[[], Any]], Any],
) -> None:
    # Records are not type-checked when built: a tuple where a list goes, an int for a float,
    # a list of plain strings where records go.
    (layer, data), *_ = [c for c in recorded_details() if c[0] is Layer.TLS]
    record = decode_details(layer, data)
    assert isinstance(record, TlsHandshake)
    odd = [
        dataclasses.replace(record, port=443.0),  # type: ignore[arg-type]
        dataclasses.replace(record, certificates=["not a certificate"]),  # type: ignore[arg-type]
        dataclasses.replace(record, certificates=list(record.certificates)),  # type: ignore[arg-type]
        dataclasses.replace(record, differential_kind="sni"),  # type: ignore[arg-type]
        dataclasses.replace(record, connect_ms=12),
    ]
    assert [encode_details(r) for r in odd] == generic_only(
        lambda: [encode_details(r) for r in odd]
    )


def _verdict_document() -> dict[str, Any]:
    verdict = Verdict(
        run_id="a" * 32,
        probe_id="b" * 32,
        measured_at=datetime(2025, 3, 1, 12, 0, tzinfo=UTC),
        asn=44244,
        country="IR",
        platform="telegram",
        target="web.telegram.org",
        status=Status.BLOCKED,
        technique="tls.sni_reset",
        confidence=Confidence.CONFIRMED,
        rule_id="tls.sni_reset",
        rules_version="2025.4",
        evidence=("c" * 32, "d" * 32),
        detail="reset after the ClientHello",
    )
    document: dict[str, Any] = json.loads(json.dumps(encode_verdict(verdict)))
    return document


def test_damaged_measurements_and_verdicts_give_the_generic_codecs_record_or_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The upload's fast paths (codec._measurement_fast, _observation_fast, _verdict_fast) against
    # the field-by-field decoders they stand in front of.
    cases: list[Callable[[], Any]] = []
    layers: set[Layer] = set()
    for name in recorded_scenarios():
        for measurement in load_replay(replay_path(name)).measurements:
            if measurement.observation.layer in layers:
                continue  # one measurement per layer: its damaged copies are thousands
            layers.add(measurement.observation.layer)
            document = json.loads(json.dumps(encode_measurement(measurement)))
            document["observation"]["failure_detail"] = "a parser's message"
            for damaged in [document, *copies_damaged(document)]:
                cases.append(functools.partial(decode_measurement, damaged))
    verdict = _verdict_document()
    cases.extend(functools.partial(decode_verdict, d) for d in [verdict, *copies_damaged(verdict)])
    assert len(cases) > 1_500

    def outcomes() -> list[tuple[str, Any]]:
        return [_outcome(case) for case in cases]

    got = outcomes()
    with monkeypatch.context() as patch:
        for name in ("_measurement_fast", "_observation_fast", "_verdict_fast"):
            patch.setattr(codec, name, lambda entry: codec._UNSURE)
        expected = outcomes()
    assert got == expected
    assert {kind for kind, _ in got} == {"record", "error"}  # both paths were taken
