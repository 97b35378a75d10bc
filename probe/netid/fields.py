"""The values network identity sources give (an ASN, an AS name, a country code, an address),
checked: a value of the wrong type or form counts as unknown (None), never as an error."""

from __future__ import annotations

from typing import Any

from probe.privacy import parse_address


def parse_asn(value: Any) -> int | None:
    if isinstance(value, str):
        value = value.upper().removeprefix("AS")
        if not value.isdigit():
            return None
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**32:
        return value
    return None


def parse_text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def parse_country(value: Any) -> str | None:
    if isinstance(value, str) and len(value) == 2 and value.isascii() and value.isalpha():
        return value.upper()
    return None


def parse_address_field(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return str(parse_address(value))
    except ValueError:
        return None
