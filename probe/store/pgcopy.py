"""Rows as PostgreSQL COPY text, for the collector's ingest (probe.store.uploads).

One line per row, each value through its column's bind processing as an INSERT stores it
(schema.UTCDateTime: UTC, to the second); a batch's rows are encoded once and sent as one COPY
payload.

The text format (PostgreSQL documentation, "COPY", section "Text Format"): columns separated by a
tab, rows ended by a newline, NULL written as \\N, and a backslash, newline, carriage return or
tab inside a value written as a backslash escape (so no value can end a column, a row or the
data). Text with NUL, which PostgreSQL's text type cannot hold, is refused before this (the
collector's validation).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import BigInteger, Boolean, Dialect, Float, Integer, String, Table, Text

from probe.store import schema

_NULL = "\\N"
_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})

_Format = Callable[[Any], str]


def _text(value: Any) -> str:
    if value is None:
        return _NULL
    text: str = value
    # Four substring tests (memchr) are far cheaper than translate on the few values that
    # need no escape, which is nearly all of them.
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        return text.translate(_ESCAPES)
    return text


def _integer(value: Any) -> str:
    return _NULL if value is None else str(int(value))


def _float(value: Any) -> str:
    # repr: the shortest text that reads back as the same double (PostgreSQL's float8in reads
    # it exactly); the collector refuses non-finite numbers.
    return _NULL if value is None else repr(float(value))


def _boolean(value: Any) -> str:
    return _NULL if value is None else ("t" if value else "f")


def _time(dialect: Dialect) -> _Format:
    bind = schema.UTCDateTime().process_bind_param

    def format_time(value: Any) -> str:
        if value is None:
            return _NULL
        stored = bind(value, dialect)  # UTC, to the second; a naive time raises ValueError
        return str(stored.isoformat())

    return format_time


def _column_format(column_type: Any, dialect: Dialect) -> _Format:
    # Most specific first: UTCDateTime and Text before the String they resemble.
    if isinstance(column_type, schema.UTCDateTime):
        return _time(dialect)
    if isinstance(column_type, Boolean):
        return _boolean
    if isinstance(column_type, BigInteger | Integer):
        return _integer
    if isinstance(column_type, Float):
        return _float
    if isinstance(column_type, Text | String):
        return _text
    raise TypeError(f"no COPY text format for column type {column_type!r}")


@functools.cache
def _formats(table: Table, dialect: Dialect) -> tuple[tuple[str, _Format], ...]:
    return tuple((c.name, _column_format(c.type, dialect)) for c in table.columns)


def copy_statement(table: Table, into: str | None = None) -> str:
    """COPY of every column of `table` from the client, into `into` (a staging table shaped like
    `table`) or the table itself."""
    names = ", ".join(column.name for column in table.columns)
    return f"COPY {into or table.name} ({names}) FROM STDIN"


def copy_payload(table: Table, rows: Sequence[Mapping[str, Any]], dialect: Dialect) -> bytes:
    """The rows (dicts keyed by column name, as the store builds them) as COPY text."""
    formats = _formats(table, dialect)
    lines = ["\t".join([form(row[name]) for name, form in formats]) for row in rows]
    lines.append("")
    return "\n".join(lines).encode("utf-8")
