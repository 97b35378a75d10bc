"""The import's fast paths give exactly what the plain library calls they replace give: the ids
(uuid5_hex against uuid.uuid5), so a re-import after an upgrade still finds its runs; the
measurement start time (parse_time against datetime.strptime)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from probe.ooni.dataformat import FormatError
from probe.ooni.document import parse_time
from probe.ooni.importer import OONI_NAMESPACE
from probe.ooni.mapping import uuid5_hex


@pytest.mark.parametrize(
    "name",
    [
        "",
        "20240101T000000Z_webconnectivity_IR_44244_n1_abc",
        "sha256:" + "ab" * 32,
        "0123456789abcdef0123456789abcdef/17",
        "é漢😀 non-ASCII",
        "x" * 5000,
    ],
)
def test_a_measurement_id_is_the_uuid5_of_its_name(name: str) -> None:
    assert uuid5_hex(OONI_NAMESPACE, name) == uuid.uuid5(OONI_NAMESPACE, name).hex
    other = uuid.UUID("6ba7b810-9dad-11d1-80b4-00c04fd430c8")  # RFC 4122's DNS namespace
    assert uuid5_hex(other, name) == uuid.uuid5(other, name).hex


def test_a_name_that_is_no_unicode_fails_as_uuid5_does() -> None:
    # A lone surrogate (a hostile measurement_uid read by the stdlib's json) cannot be encoded:
    # the document is counted as malformed (UnicodeEncodeError is a ValueError), as before.
    with pytest.raises(UnicodeEncodeError):
        uuid.uuid5(OONI_NAMESPACE, "\ud800")
    with pytest.raises(UnicodeEncodeError):
        uuid5_hex(OONI_NAMESPACE, "\ud800")


_STRPTIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.mark.parametrize(
    "text",
    [
        "2024-01-02 03:04:05",
        "1999-12-31 23:59:59",
        "2024-02-29 00:00:00",
        "2023-02-29 00:00:00",  # no such day
        "2024-13-02 03:04:05",
        "2024-01-02 24:00:00",
        "2024-01-02 23:59:60",  # strptime reads a leap second, datetime refuses it
        "0000-01-02 03:04:05",
        "2024-1-02 03:04:05",  # strptime takes one digit
        "2024-01-02T03:04:05Z",
        "2024-01-02T03:04:05.250Z",
        "2024-01-02 03:04:05 ",
        "2024-01-02 03:04:05.5",
        "٢٠٢٤-01-02 03:04:05",  # other scripts' digits: strptime's \d takes them
        "",
    ],
)
def test_a_measurement_start_time_reads_as_strptime_reads_it(text: str) -> None:
    expected = None
    for pattern in _STRPTIME_FORMATS:
        try:
            expected = datetime.strptime(text, pattern).replace(tzinfo=UTC)
            break
        except ValueError:
            continue
    if expected is None:
        with pytest.raises(FormatError, match="not a time in OONI's format"):
            parse_time(text, "document.measurement_start_time")
    else:
        assert parse_time(text, "document.measurement_start_time") == expected
