"""A SQLite file as the standard library sees it, without SQLAlchemy: its header, and the checks
a probe database file passes before anything is written to it.

Kept apart from probe.store.database so that `probe run` can refuse a file the store would
refuse before it sends any traffic, while SQLAlchemy (a quarter of a second of imports) is still
loading in the thread that opens the store (probe.session).
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from urllib.parse import quote

from probe.store.errors import NotAProbeDatabaseError, StoreError
from probe.store.meta import judge_meta, refuse_foreign

# Every SQLite file starts with these 16 bytes (https://www.sqlite.org/fileformat.html, 1.3).
SQLITE_HEADER = b"SQLite format 3\x00"

# The table that makes a database a probe's (probe.store.schema.meta).
META_TABLE = "meta"

# How long a SQLite writer waits for another process's write lock before giving up.
SQLITE_BUSY_TIMEOUT_S = 15.0


def is_sqlite_file(path: Path) -> bool:
    """Whether `path` is a SQLite database file (by its header; False when unreadable)."""
    try:
        with path.open("rb") as handle:
            return handle.read(len(SQLITE_HEADER)) == SQLITE_HEADER
    except OSError:
        return False


def readonly_file_uri(path: Path) -> str:
    """The SQLite URI filename that opens `path` read-only (https://www.sqlite.org/uri.html)."""
    return "file:" + quote(str(path.absolute())) + "?mode=ro"


def sniff(path: Path, location: str, *, empty_ok: bool) -> None:
    """Refuse a file that is not SQLite before SQLite sees it: SQLite reads a file shorter than
    its header (a 1-byte note) as an empty database, and a writer would overwrite it."""
    if path.is_dir():
        raise StoreError(f"cannot open {location}: it is a directory")
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StoreError(f"cannot open {location}: {exc.strerror}") from exc
    if size == 0:
        if empty_ok:
            return
        raise NotAProbeDatabaseError(f"{location} is not a probe database (the file is empty)")
    if not is_sqlite_file(path):
        raise NotAProbeDatabaseError(f"{location} is not a probe database (file is not a database)")


def driver_error(message: str, location: str) -> StoreError:
    """The StoreError for a SQLite driver message (its first line) met while opening."""
    if "not a database" in message:
        return NotAProbeDatabaseError(f"{location} is not a probe database ({message})")
    if "malformed" in message:
        return StoreError(f"{location} is damaged ({message})")
    return StoreError(f"cannot open {location}: {message}")


def refuse_damaged(problems: list[str], location: str) -> None:
    """Refuse a file whose `PRAGMA quick_check` reported `problems` (["ok"]: none)."""
    if problems != ["ok"]:
        # One line: SQLite's report can hold many, one per damaged page.
        first = " ".join(problems[0].split())
        more = ", and more" if len(problems) > 1 or "\n" in problems[0] else ""
        raise StoreError(f"{location} is damaged (integrity check: {first}{more})")


# quick_check stops after this many problems: one is enough to refuse the file.
QUICK_CHECK_LIMIT = 5


def check_file(path: Path, location: str) -> None:
    """Refuse, before anything is written, a file at `path` that the store would refuse: one
    that is not SQLite, has damaged pages (PRAGMA quick_check,
    https://www.sqlite.org/pragma.html#pragma_quick_check), holds another application's tables,
    or a probe database of a newer schema or without a probe id (probe.store.meta). Read through
    a read-only connection of the standard library's sqlite3, in milliseconds for a small file.
    A missing or empty file passes: the store creates the database."""
    sniff(path, location, empty_ok=True)
    if not path.is_file() or path.stat().st_size == 0:
        return
    uri = readonly_file_uri(path)
    try:
        with closing(sqlite3.connect(uri, uri=True, timeout=SQLITE_BUSY_TIMEOUT_S)) as conn:
            rows = conn.execute(f"PRAGMA quick_check({QUICK_CHECK_LIMIT})").fetchall()
            refuse_damaged([str(row[0]) for row in rows], location)
            # The tables SQLAlchemy's inspector lists (SQLite's own sqlite_* ones left out).
            tables = [
                str(name)
                for (name,) in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' "
                    "AND name NOT LIKE 'sqlite~_%' ESCAPE '~'"
                )
            ]
            if META_TABLE not in tables:
                refuse_foreign(tables, location)
                return
            found = {str(k): str(v) for k, v in conn.execute("SELECT key, value FROM meta")}
    except sqlite3.DatabaseError as exc:
        lines = str(exc).strip().splitlines()
        raise driver_error(lines[0] if lines else type(exc).__name__, location) from exc
    judge_meta(found, location)
