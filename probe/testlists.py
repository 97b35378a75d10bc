"""Citizen Lab test lists (CSV: url,category_code,category_description,date_added,source,notes).

A malformed row is reported with its line number and skipped; it never stops the run.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from probe.catalog import CatalogError, parse_url_target
from probe.model import Target

COLUMNS = ("url", "category_code", "category_description", "date_added", "source", "notes")
PLATFORM = "testlist"
# What surrogateescape decodes a byte that is not UTF-8 to.
_UNDECODED = re.compile("[\udc80-\udcff]")
# A real row is a URL and a few words (the Citizen Lab lists' longest is under 2 KB); reading a
# line whole first would hold all of it in memory (a 200 MB line took 430 MB before csv refused
# it, a line that never ends, as /dev/zero gives, all memory). Longer lines are skipped unread.
MAX_LINE_CHARS = 1 << 20
# And a list this size (about 100 times the largest real one) is read no further.
MAX_LIST_CHARS = 1 << 28


class TestListError(ValueError):
    """The file cannot be used at all (unreadable, or not a test list)."""

    __test__ = False  # not a pytest class


@dataclass(frozen=True, slots=True)
class TestList:
    """The targets a test list yielded, and the rows it skipped (with line numbers)."""

    __test__ = False

    path: Path
    targets: tuple[Target, ...]
    problems: tuple[str, ...]


def load_test_list(path: Path) -> TestList:
    """Read a Citizen Lab test list; each URL becomes an http(s) target grouped by category."""
    try:
        # utf-8-sig: spreadsheets save CSV with a byte-order mark. surrogateescape: one byte that
        # is not UTF-8 marks its own row (skipped below), instead of failing the whole read.
        handle = path.open(encoding="utf-8-sig", errors="surrogateescape", newline="")
    except OSError as exc:
        raise TestListError(f"cannot read test list {path}: {exc.strerror}") from None
    targets: dict[str, Target] = {}
    problems: list[str] = []
    lines = _BoundedLines(handle)
    with handle:
        reader = csv.reader(lines)
        try:
            header = next(reader, None)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise TestListError(f"{path}: not a CSV test list ({exc})") from None
        if header is None or [h.strip() for h in header[:1]] != ["url"]:
            raise TestListError(
                f"{path}: not a Citizen Lab test list (the header must start with 'url'; "
                f"expected {','.join(COLUMNS)})"
            )
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except (csv.Error, UnicodeDecodeError) as exc:
                problems.append(f"{path}:{reader.line_num}: unreadable row ({exc}); skipped")
                continue
            line = reader.line_num
            if line in lines.too_long:
                problems.append(
                    f"{path}:{line}: longer than {MAX_LINE_CHARS} characters; skipped unread"
                )
                continue
            if not row or not any(cell.strip() for cell in row):
                continue
            if any(_UNDECODED.search(cell) for cell in row):
                problems.append(f"{path}:{line}: not valid UTF-8; skipped")
                continue
            if len(row) != len(header):
                problems.append(
                    f"{path}:{line}: expected {len(header)} columns, found {len(row)}; skipped"
                )
                continue
            category = row[1].strip() if len(row) > 1 else ""
            try:
                target = parse_url_target(
                    row[0], PLATFORM, where=f"{path}:{line}", source="testlist"
                )
            except CatalogError as exc:
                problems.append(f"{exc}; skipped")
                continue
            if target.name in targets:
                problems.append(f"{path}:{line}: duplicate URL {target.name}; skipped")
                continue
            targets[target.name] = Target(
                platform=target.platform,
                name=target.name,
                kind=target.kind,
                host=target.host,
                ports=target.ports,
                path=target.path,
                source=f"testlist:{path.name}",
                group=category or None,
            )
    if lines.cut:
        problems.append(f"{path}: larger than {MAX_LIST_CHARS} characters; the rest is not read")
    return TestList(path, tuple(targets.values()), tuple(problems))


class _BoundedLines:
    """The file's lines for csv.reader, each read at most MAX_LINE_CHARS at a time: a longer
    line is passed on as an empty one (so line numbers stay right) and its number noted in
    `too_long`; after MAX_LIST_CHARS in all the file ends (`cut`)."""

    def __init__(self, handle: TextIO) -> None:
        self._handle = handle
        self._number = 0
        self._read = 0
        self.too_long: set[int] = set()
        self.cut = False

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        if self._read >= MAX_LIST_CHARS:
            self.cut = True
            raise StopIteration
        line = self._handle.readline(MAX_LINE_CHARS)
        if not line:
            raise StopIteration
        self._number += 1
        self._read += len(line)
        if len(line) < MAX_LINE_CHARS or line.endswith("\n"):
            return line
        while line and not line.endswith("\n") and self._read < MAX_LIST_CHARS:
            line = self._handle.readline(MAX_LINE_CHARS)  # the rest of it, dropped as it comes
            self._read += len(line)
        self.too_long.add(self._number)
        return "\n"
