"""Citizen Lab test lists (CSV: url,category_code,category_description,date_added,source,notes).

A malformed row is reported with its line number and skipped; it never stops the run.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from probe.catalog import CatalogError, parse_url_target
from probe.model import Target

COLUMNS = ("url", "category_code", "category_description", "date_added", "source", "notes")
PLATFORM = "testlist"
# What surrogateescape decodes a byte that is not UTF-8 to.
_UNDECODED = re.compile("[\udc80-\udcff]")


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
    with handle:
        reader = csv.reader(handle)
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
    return TestList(path, tuple(targets.values()), tuple(problems))
