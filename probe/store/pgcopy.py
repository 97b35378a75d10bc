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


def _kind(column_type: Any) -> str:
    # Most specific first: UTCDateTime and Text before the String they resemble.
    if isinstance(column_type, schema.UTCDateTime):
        return "time"
    if isinstance(column_type, Boolean):
        return "boolean"
    if isinstance(column_type, BigInteger | Integer):
        return "integer"
    if isinstance(column_type, Float):
        return "float"
    if isinstance(column_type, Text | String):
        return "text"
    raise TypeError(f"no COPY text format for column type {column_type!r}")


# The value {v} of each kind as COPY text (None is \N whatever the kind). Text: four substring
# tests (memchr) are far cheaper than translate on the values that need no escape, nearly all.
# Float: repr, the shortest text that reads back as the same double (PostgreSQL's float8in
# reads it exactly; the collector refuses non-finite numbers). Time: through the column type's
# bind processing (UTC, to the second; a naive time raises ValueError), then ISO 8601.
_FORMATS = {
    "text": "({v}.translate(ESCAPES)"
    " if '\\\\' in {v} or '\\t' in {v} or '\\n' in {v} or '\\r' in {v} else {v})",
    "integer": "str(int({v}))",
    "float": "repr(float({v}))",
    "boolean": "('t' if {v} else 'f')",
    "time": "bind({v}, dialect).isoformat()",
}


@functools.cache
def _line_writer(table: Table, dialect: Dialect) -> Callable[[Mapping[str, Any]], str]:
    """line(row) -> the row's COPY text line (without its newline), compiled once per table
    the way the codec compiles its decoders: one straight-line function, no call per value."""
    source = ["def line(row):"]
    for i, column in enumerate(table.columns):
        value = _FORMATS[_kind(column.type)].replace("{v}", f"v{i}")
        source.append(f"    v{i} = row[{column.name!r}]")
        source.append(f"    v{i} = NULL if v{i} is None else {value}")
    source.append(
        f"    return '\\t'.join(({', '.join(f'v{i}' for i in range(len(table.columns)))},))"
    )
    namespace: dict[str, Any] = {
        "NULL": _NULL,
        "ESCAPES": _ESCAPES,
        "bind": schema.UTCDateTime().process_bind_param,
        "dialect": dialect,
    }
    exec("\n".join(source), namespace)  # our own generated text, nothing of the rows
    line: Callable[[Mapping[str, Any]], str] = namespace["line"]
    return line


def copy_statement(table: Table, into: str | None = None) -> str:
    """COPY of every column of `table` from the client, into `into` (a staging table shaped like
    `table`) or the table itself."""
    names = ", ".join(column.name for column in table.columns)
    return f"COPY {into or table.name} ({names}) FROM STDIN"


def copy_payload(table: Table, rows: Sequence[Mapping[str, Any]], dialect: Dialect) -> bytes:
    """The rows (dicts keyed by column name, as the store builds them) as COPY text."""
    line = _line_writer(table, dialect)
    lines = [line(row) for row in rows]
    lines.append("")
    return "\n".join(lines).encode("utf-8")
