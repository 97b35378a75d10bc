"""A time bound for SQLite (schema.UTCDateTime's processor, cached) is the text the type has
always stored: UTC, to the second, 32 characters, whatever the zone it came in; a naive time
is refused even when the same wall-clock time in UTC was bound before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.dialects import sqlite

from probe.store import schema

_DIALECT = sqlite.dialect()


def _bind() -> object:
    processor = schema.UTCDateTime().dialect_impl(_DIALECT).bind_processor(_DIALECT)
    assert processor is not None
    return processor


def test_one_instant_in_any_zone_is_stored_as_the_same_utc_text_to_the_second() -> None:
    bind = _bind()
    utc = datetime(2024, 11, 20, 9, 30, 5, 987654, tzinfo=UTC)
    tehran = utc.astimezone(timezone(timedelta(hours=3, minutes=30)))
    assert callable(bind)
    for value in (utc, tehran, utc, tehran):  # the second pair from the cache
        assert bind(value) == "2024-11-20T09:30:05.000000+00:00"
    assert bind(None) is None


def test_a_naive_time_is_refused_after_the_same_utc_time_was_stored() -> None:
    bind = _bind()
    assert callable(bind)
    assert bind(datetime(2024, 11, 20, 9, 30, tzinfo=UTC)) == "2024-11-20T09:30:00.000000+00:00"
    with pytest.raises(ValueError, match="naive datetime"):
        bind(datetime(2024, 11, 20, 9, 30))
    with pytest.raises(ValueError, match="naive datetime"):
        bind(datetime(2024, 11, 20, 9, 30))  # refused again: an error is not cached


def test_the_sqlite_processor_gives_what_process_bind_param_gives() -> None:
    bind = _bind()
    assert callable(bind)
    kind = schema.UTCDateTime()
    start = datetime(2023, 3, 26, 0, 59, 59, 500000, tzinfo=UTC)
    for seconds in range(0, 7200, 97):
        value = (start + timedelta(seconds=seconds)).astimezone(timezone(timedelta(hours=-5)))
        assert bind(value) == kind.process_bind_param(value, _DIALECT)
