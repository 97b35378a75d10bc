"""The import's fast paths give exactly what the plain library calls they replace give: the ids
(uuid5_hex against uuid.uuid5), so a re-import after an upgrade still finds its runs."""

from __future__ import annotations

import uuid

import pytest

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
