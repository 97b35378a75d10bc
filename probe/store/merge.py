"""Merge probe databases: copy the runs, measurements, verdicts and platform summaries of several
SQLite files (one per volunteer, say) into one database, for a report across hosts and networks.

Ids are global (uuid4 hex made by the probes; schema.py), so merging is copying rows: a row whose
primary key the destination already holds is left alone, which makes merging idempotent (merging
the same file twice adds nothing) and lets overlapping files (an old copy and a newer one of the
same probe) be merged in any order. Each run row carries its probe's network (ASN, country,
resolver, VPN flag), so every measurement keeps the network it was taken on. The runs'
annotations (meta rows other than the database's own schema_version and probe_id: an OONI
import's provenance, report_id and measurement_uid among it) come along, so a merged import
still says where each run came from and how OONI judged it.

Safety, in order:
- a source is never modified, nor a file created beside it: it is copied to a temporary file
  (byte for byte when nobody has it open, else with SQLite's online backup over a read-only
  `mode=ro` connection), and only the copy is migrated to the current schema (sources from
  older versions merge like new ones) and read;
- every source is validated (an SQLite file, a probe database, not too new, `PRAGMA quick_check` and
  `PRAGMA foreign_key_check` clean) before the destination is even opened, so a corrupt source
  leaves the destination untouched, byte for byte;
- each source is written in one transaction, streamed in batches, so a large file never sits in
  memory and a failure part way leaves none of that source behind.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Row, Table, func, select

from probe.store import schema
from probe.store.database import (
    DATABASE_META_KEYS,
    Store,
    check_rows,
    insert_missing,
    readonly_uri,
)
from probe.store.errors import NotAProbeDatabaseError, StoreError
from probe.store.sqlite_file import sniff

# Parents before children: a measurement's run must be in place before the measurement.
MERGED_TABLES: tuple[Table, ...] = (
    schema.runs,
    schema.measurements,
    schema.verdicts,
    schema.platform_summaries,
)

# The name MergedSource counts the runs' annotations (meta rows) under.
ANNOTATIONS = "annotations"

# Rows per INSERT batch: a few megabytes of measurements (details included).
MERGE_BATCH_ROWS = 5000


@dataclass(frozen=True, slots=True)
class MergedSource:
    """What one source held and what of it was new to the destination.

    rows / added: per table name (MERGED_TABLES), and ANNOTATIONS when the source has any, rows
    in the source / rows the merge added.
    schema_version: the source's schema version as found (older ones are migrated on a copy).
    probes: distinct probe ids of its runs; networks: distinct ASNs of its runs (None: unknown).
    """

    source: str
    schema_version: int
    rows: dict[str, int]
    added: dict[str, int]
    probes: int
    networks: tuple[int | None, ...]


@dataclass(frozen=True, slots=True)
class MergeReport:
    """Where the rows went (the destination as the store names it: passwords hidden) and what
    each source gave, in the order merged."""

    destination: str
    sources: tuple[MergedSource, ...]

    def added(self) -> int:
        """Rows new to the destination, all tables and sources together."""
        return sum(sum(source.added.values()) for source in self.sources)


def merge_databases(
    sources: Sequence[str | Path],
    destination: str | Path,
    *,
    batch_rows: int = MERGE_BATCH_ROWS,
    work_dir: str | Path | None = None,
) -> MergeReport:
    """Merge SQLite probe databases `sources` into `destination` (a path or SQLAlchemy URL,
    created if missing); return what each source held and added, in order.

    Raises StoreError (naming the source) when a source cannot be merged; nothing has been
    written then. `work_dir` holds the temporary copies of the sources (default: the system's
    temporary directory; it needs room for all of them).
    """
    if not sources:
        raise StoreError("merge: name at least one database to merge")
    stack = ExitStack()  # unwinds in reverse: stores closed, then the copies deleted
    try:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=work_dir)))
        validated: list[tuple[str, Store, int]] = []
        for number, source in enumerate(sources):
            if "://" in str(source):
                raise StoreError(f"merge: {source}: sources must be SQLite files, not URLs")
            path = Path(source).expanduser()
            copy = scratch / f"source-{number}.db"
            version = _copy_source(path, copy)
            store = stack.enter_context(_open_copy(path, copy))
            _validate(store, path, copy)
            validated.append((str(path), store, version))
        target = stack.enter_context(Store.open(destination))
        merged = tuple(
            _merge_one(store, target, name, version, batch_rows)
            for name, store, version in validated
        )
        return MergeReport(target.location, merged)
    finally:
        stack.close()


def _copy_source(path: Path, copy: Path) -> int:
    """Copy a source without writing to it or beside it; return its schema version.

    A source nobody has open (no shared-memory file beside it) is copied byte for byte, with a
    write-ahead log a crash left behind: opening it with SQLite, even read-only, would leave a
    -wal and a -shm file beside it. One that is open (a probe writing to it) is copied with
    SQLite's online backup over a read-only connection (`mode=ro`), one consistent snapshot
    however the writer goes on; so is one that changed while it was copied.
    """
    location = str(path)
    if not path.is_file():
        raise StoreError(f"merge: {path}: no such file")
    try:
        sniff(path, location, empty_ok=False)
        if not _copied_quietly(path, copy):
            with (
                closing(sqlite3.connect(readonly_uri(path, location), uri=True)) as source,
                closing(sqlite3.connect(copy)) as target,
            ):
                source.backup(target)
    except StoreError as exc:
        raise type(exc)(f"merge: {exc}") from exc
    except sqlite3.DatabaseError as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "not a database" in message:
            raise NotAProbeDatabaseError(
                f"merge: {path} is not a probe database ({message})"
            ) from exc
        raise StoreError(f"merge: {path} is damaged or unreadable ({message})") from exc
    except OSError as exc:
        raise StoreError(f"merge: cannot read {path}: {exc.strerror or exc}") from exc
    try:
        with closing(sqlite3.connect(copy)) as conn:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
            found = (
                conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                if "meta" in tables
                else None
            )
    except sqlite3.DatabaseError:
        return 0  # Store.open on the copy says what is wrong, in its words
    if not tables:
        # Store.open would create the schema in the copy, and the file would merge as "0 rows".
        raise NotAProbeDatabaseError(f"merge: {path} is not a probe database (it holds no tables)")
    return int(found[0]) if found and str(found[0]).isdigit() else 0


def _copied_quietly(path: Path, copy: Path) -> bool:
    """Byte-copy a source nobody has open (and its leftover log); False when it is open or
    changed while being copied, so that the copy may be torn."""
    wal, shm = (path.with_name(path.name + suffix) for suffix in ("-wal", "-shm"))
    if shm.exists():
        return False
    before = _signature(path, wal)
    shutil.copyfile(path, copy)
    if wal.is_file():
        shutil.copyfile(wal, copy.with_name(copy.name + "-wal"))
    if shm.exists() or _signature(path, wal) != before:
        for leftover in (copy, copy.with_name(copy.name + "-wal")):
            leftover.unlink(missing_ok=True)
        return False
    return True


def _signature(*paths: Path) -> tuple[tuple[int, int] | None, ...]:
    """Size and modification time of each file (None when absent)."""
    found: list[tuple[int, int] | None] = []
    for path in paths:
        try:
            status = path.stat()
        except FileNotFoundError:
            found.append(None)
        else:
            found.append((status.st_size, status.st_mtime_ns))
    return tuple(found)


def _open_copy(path: Path, copy: Path) -> Store:
    try:
        return Store.open(copy)
    except StoreError as exc:
        raise type(exc)(f"merge: {_named(exc, path, copy)}") from exc


def _named(exc: Exception, path: Path, copy: Path) -> str:
    """The message with the temporary copy's name replaced by the source's."""
    return str(exc).replace(str(copy), str(path))


def _validate(store: Store, path: Path, copy: Path) -> None:
    """Refuse a damaged source before anything is written anywhere."""
    # Damaged pages were refused when the copy was opened (Store.open runs PRAGMA quick_check).
    try:
        with store._transaction() as conn:
            orphans = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchmany(5)
            if orphans:
                tables = sorted({str(row[0]) for row in orphans})
                raise NotAProbeDatabaseError(
                    f"{copy} is damaged (rows in {', '.join(tables)} refer to missing runs)"
                )
    except StoreError as exc:
        raise type(exc)(f"merge: {_named(exc, path, copy)}") from exc


def _merge_one(
    source: Store, target: Store, name: str, version: int, batch_rows: int
) -> MergedSource:
    rows: dict[str, int] = {}
    added: dict[str, int] = {}
    with target._transaction(write=True) as conn:
        for table in MERGED_TABLES:
            before = _count(conn, table)
            insert = insert_missing(conn, table)
            copied = 0
            for batch in _batches(source, table, batch_rows):
                conn.execute(insert, batch)
                copied += len(batch)
            rows[table.name] = copied
            added[table.name] = _count(conn, table) - before
        meta = schema.meta
        before = _count(conn, meta)
        copied = 0
        for batch in _annotation_batches(source, batch_rows):
            conn.execute(insert_missing(conn, meta), batch)
            copied += len(batch)
        if copied:
            rows[ANNOTATIONS] = copied
            added[ANNOTATIONS] = _count(conn, meta) - before
    with source._transaction() as conn:
        runs = schema.runs
        probes = conn.execute(select(func.count(runs.c.probe_id.distinct()))).scalar_one()
        asns = [row[0] for row in conn.execute(select(runs.c.asn).distinct())]
    networks = tuple(sorted(asns, key=lambda asn: (asn is None, asn or 0)))
    return MergedSource(name, version, rows, added, int(probes), networks)


def _count(conn: Connection, table: Table) -> int:
    return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _batches(source: Store, table: Table, size: int) -> Iterator[list[dict[str, Any]]]:
    """The source's rows of `table` in primary-key order, `size` at a time."""
    batch: list[Row[Any]] = []
    for row in source._stream(select(table).order_by(*table.primary_key.columns)):
        batch.append(row)
        if len(batch) >= size:
            yield _checked(table, batch)
            batch = []
    if batch:
        yield _checked(table, batch)


def _annotation_batches(source: Store, size: int) -> Iterator[list[dict[str, Any]]]:
    """The source's run annotations (meta rows but the database's own), by key, `size` at a
    time; a key or value that is not text is refused, naming the row."""
    meta = schema.meta
    stmt = select(meta).where(meta.c.key.not_in(DATABASE_META_KEYS)).order_by(meta.c.key)
    batch: list[dict[str, Any]] = []
    for row in source._stream(stmt):
        key, value = row.key, row.value
        if not isinstance(key, str) or not isinstance(value, str):
            raise StoreError(f"meta row (key {key!r:.80}) does not parse: not text")
        batch.append({"key": key, "value": value})
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _checked(table: Table, rows: list[Row[Any]]) -> list[dict[str, Any]]:
    """The rows as the readers will see them, or StoreError naming the first hostile one (the
    merge's transaction is rolled back: nothing of that source is kept)."""
    check_rows(table.name, rows)
    return [dict(row._mapping) for row in rows]
