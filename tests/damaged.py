"""Recorded details to test decoders on, and damaged copies of any JSON value (a key missing, null,
of another type, at every depth): the codec's compiled paths and the collector's fast path are
checked against the field-by-field codec on them."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from probe.codec import encode_details_column
from probe.model import Layer
from tests.replay import load_replay, recorded_scenarios, replay_path
from tests.store_rows import make_measurement

# What a damaged value becomes: each of JSON's types, and the values a float check must refuse.
REPLACEMENTS: tuple[Any, ...] = (
    None,
    3,
    -1,
    3.0,
    -1.0,
    1e400,
    "x",
    "",
    True,
    [],
    ["x"],
    {},
    {"a": 1},
)


def recorded_details() -> list[tuple[Layer, dict[str, Any]]]:
    """(layer, details column) of every recorded lab measurement, every layer among them."""
    found = []
    for name in recorded_scenarios():
        for measurement in load_replay(replay_path(name)).measurements:
            observation = measurement.observation
            found.append((observation.layer, encode_details_column(observation)))
    extra = make_measurement("run", layer=Layer.DNS, endpoint="udp://9.9.9.9:53").observation
    found.append((Layer.DNS, encode_details_column(extra)))
    return found


def copies_damaged(value: Any) -> Iterator[Any]:
    """Copies of `value` with one thing changed, at every depth."""
    if isinstance(value, dict):
        for key in value:
            without = dict(value)
            del without[key]
            yield without
            for replacement in REPLACEMENTS:
                yield {**value, key: replacement}
            for inner in copies_damaged(value[key]):
                yield {**value, key: inner}
        yield {**value, "later_writer_key": 1}
    elif isinstance(value, list) and value:
        for inner in copies_damaged(value[0]):
            yield [inner, *value[1:]]
        yield [*value, copy.deepcopy(value[0])]
        yield [*value, None]
