"""The collector's fast path (probe.collector.rows, codec.canonical_details) against the codec it
stands in front of: on every recorded lab measurement and thousands of damaged copies, an entry
it takes becomes exactly the row the codec's records make, and a details object it stores as
received is exactly what the codec would write."""

from __future__ import annotations

import json
from typing import Any

import pytest

from probe import codec
from probe.codec import (
    CodecError,
    canonical_details,
    decode_details,
    decode_measurement,
    encode_details,
    encode_measurement,
)
from probe.collector import rows
from probe.collector.rows import measurement_row, parse_json
from probe.model import Layer, RawCapture
from probe.store.uploads import stored_measurement_row
from tests.builders import stalled
from tests.damaged import copies_damaged, recorded_details
from tests.replay import load_replay, recorded_scenarios, replay_path


def _uploaded(value: Any) -> Any:
    """A value as the collector parses it off the wire."""
    return parse_json(json.dumps(value).encode())


def _details_objects() -> list[tuple[Layer, dict[str, Any]]]:
    """Every recorded measurement's details object as an upload carries it."""
    return [
        (layer, _uploaded(encode_details(decode_details(layer, data))))
        for layer, data in recorded_details()
    ]


def test_recorded_details_are_stored_as_received_except_raw_captures() -> None:
    objects = _details_objects()
    assert {layer for layer, _ in objects} == set(Layer)
    for layer, data in objects:
        raw = isinstance(decode_details(layer, data), RawCapture)
        assert canonical_details(layer, data) is not raw


def test_damaged_details_are_stored_as_received_only_when_the_codec_writes_them_unchanged() -> None:
    taken = refused = 0
    seen: set[str] = set()
    for layer, data in _details_objects():
        if f"{layer} {sorted(data)}" in seen:
            continue
        seen.add(f"{layer} {sorted(data)}")
        for damaged in copies_damaged(data):
            if not canonical_details(layer, damaged):
                refused += 1
                continue
            taken += 1
            written = encode_details(decode_details(layer, damaged))
            # The same keys in the same order, the same values of the same JSON types.
            assert json.dumps(written) == json.dumps(damaged)
            assert [type(v) for v in written.values()] == [type(v) for v in damaged.values()]
    assert taken > 100 and refused > 1_000  # both answers were given


def _comparable(row: dict[str, Any]) -> dict[str, Any]:
    """A row with its details text parsed (the fast path writes it compactly)."""
    return {**row, "details": json.loads(row["details"])}


def _entries() -> list[Any]:
    """One recorded measurement per layer (and one with a failure detail, one measured across a
    stall of the probe), with every damaged copy of each."""
    entries: list[Any] = []
    layers: set[Layer] = set()
    for name in recorded_scenarios():
        for measurement in load_replay(replay_path(name)).measurements:
            if measurement.observation.layer in layers:
                continue
            layers.add(measurement.observation.layer)
            document = _uploaded(encode_measurement(measurement))
            detailed = _uploaded(encode_measurement(measurement))
            detailed["observation"]["failure"] = "unknown_failure: a parser's message"
            held = _uploaded(encode_measurement(stalled(measurement, 812.5)))
            entries.extend(
                [document, detailed, held, *copies_damaged(document), *copies_damaged(held)]
            )
    return entries


def test_measurement_entries_the_fast_path_takes_become_the_codecs_rows() -> None:
    taken = others = 0
    for entry in _entries():
        row = measurement_row(entry)
        try:
            expected = stored_measurement_row(decode_measurement(entry))
        except (CodecError, ValueError):
            assert row is None  # refused: the codec names why
            others += 1
            continue
        if row is None:
            others += 1  # read by the codec instead
            continue
        taken += 1
        assert _comparable(row) == _comparable(expected)
    assert taken > 50 and others > 500


def test_a_measurement_with_a_failure_detail_keeps_it_in_the_details_column() -> None:
    (entry, *_) = [e for e in _entries() if "unknown_failure: " in str(e)]
    row = measurement_row(entry)
    assert row is not None
    assert row["failure"] == "unknown_failure"
    assert json.loads(row["details"])["failure_detail"] == "a parser's message"


def test_a_measurement_taken_across_a_stall_keeps_it_in_the_details_column() -> None:
    (entry, *_) = [
        e
        for e in _entries()
        if isinstance(e, dict)
        and isinstance(e.get("observation"), dict)
        and e["observation"].get("probe_stall_ms") == 812.5
    ]
    row = measurement_row(entry)
    assert row is not None
    assert json.loads(row["details"])["probe_stall_ms"] == 812.5
    assert decode_measurement(entry).observation.probe_stall_ms == 812.5


@pytest.mark.parametrize("with_orjson", [True, False])
def test_details_text_is_the_same_json_with_or_without_orjson(
    monkeypatch: pytest.MonkeyPatch, with_orjson: bool
) -> None:
    if not with_orjson:
        monkeypatch.setattr(rows, "orjson", None)
        monkeypatch.setattr(rows, "details_text", rows._details_text_stdlib)
    for layer, data in _details_objects():
        assert parse_json(json.dumps(data).encode()) == data
        if canonical_details(layer, data):
            text = rows.details_text(data)
            assert json.loads(text) == data and "\n" not in text


def test_an_integer_beyond_64_bits_in_details_is_still_written() -> None:
    # The standard library reads it as an int; orjson cannot write it back, the fallback does.
    assert json.loads(rows.details_text({"port": 2**70})) == {"port": 2**70}


def test_canonical_details_never_caches_more_key_orders_than_its_bound() -> None:
    layer, data = next((layer, d) for layer, d in _details_objects() if layer is Layer.TLS)
    for i in range(codec._KEY_ORDERS_KEPT * 2):
        assert not canonical_details(layer, {**data, f"key{i}": 1})
    assert all(len(orders) <= codec._KEY_ORDERS_KEPT for orders in codec._KEY_ORDERS.values())
