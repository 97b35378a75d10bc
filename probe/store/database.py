"""The probe database: runs and measurements, saved in batches and read back as streams.

`Store.open(path_or_url)` takes a plain path (a SQLite file, parent directories created) or an
SQLAlchemy URL such as `postgresql+psycopg://user@host/db` (plain `postgresql://` means the same);
the same code serves both. `Store.open_readonly` is for the commands that only read: it never
creates, migrates or writes (SQLite `mode=ro`), so it works on read-only media. Every
public method runs in its own transaction and turns driver errors into StoreError with a message
naming the database, so callers never see a raw SQLAlchemy traceback.

SQLite runs in WAL mode with synchronous=NORMAL: a commit is an append to the log without fsync,
which makes the runner's many small batches cheap, while a crash loses at most the last commits,
never the database. Readers stream (yield_per; a server-side cursor on PostgreSQL) so an export of
millions of rows holds one chunk in memory.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import operator
import re
import sqlite3
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeVar, cast

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Engine,
    Row,
    Select,
    String,
    Table,
    and_,
    bindparam,
    create_engine,
    event,
    func,
    or_,
    select,
    text,
    type_coerce,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.sql.dml import Insert

from probe.codec import (
    StoredDetails,
    decode_details_column,
    encode_details_column,
    encoded_details_column,
    encoded_role,
    split_failure,
)
from probe.model import (
    UNKNOWN_FAILURE_PREFIX,
    Connectivity,
    Layer,
    Measurement,
    MeasurementRow,
    NetworkInfo,
    Observation,
    Operation,
    RawCapture,
    Role,
    Run,
)
from probe.records import (
    Confidence,
    GroupSummary,
    PlatformStatus,
    PlatformSummary,
    Status,
    Verdict,
    VerdictRow,
    VerdictTimes,
)
from probe.store import migrations, schema
from probe.store.errors import NotAProbeDatabaseError, StoreError
from probe.store.sqlite_file import (
    QUICK_CHECK_LIMIT,
    SQLITE_BUSY_TIMEOUT_S,
    driver_error,
    readonly_file_uri,
    refuse_damaged,
    sniff,
)

R = TypeVar("R")

# Rows fetched per round trip when streaming: large enough to amortise the round trip, small
# enough that one chunk of measurements (details included) stays in the low megabytes.
STREAM_CHUNK_ROWS = 1000

# SQLite's page cache (KiB) for a connection that has saved whole runs (Store.save_run_rows, an
# import): 32 MiB instead of the default 2 MB. On 3,465 imported OONI documents in batches of
# 1,000, saving took 1.2-1.3 ms of CPU per document with the default, 0.7-0.8 with 64 MiB; on
# 4,345 documents in batches of 500 the importing process took 7.0 CPU-s with 32 MiB and 7.9
# with 64 MiB (load ~7), and its peak RSS 37 MB less (the import's goal is < 300 MB in all).
BULK_CACHE_KIB = 32768

# Serialises first opens of one PostgreSQL database (pg_advisory_xact_lock key): two probes
# creating the schema at once would otherwise both see no tables. "cprobe" in ASCII.
_PG_OPEN_LOCK_KEY = 0x637072_6F6265


@dataclass(frozen=True, slots=True)
class RunBundle:
    """A whole run to save at once (Store.save_runs): what an import produces per document.
    `annotations` are (key, value) pairs kept beside the run (e.g. an import's provenance)."""

    run: Run
    measurements: Sequence[Measurement]
    verdicts: Sequence[Verdict] = ()
    summaries: Sequence[PlatformSummary] = ()
    annotations: Sequence[tuple[str, str]] = ()


@dataclass(frozen=True, slots=True)
class RunRows:
    """A RunBundle as the rows of each table that Store.save_run_rows inserts (run_rows)."""

    run: dict[str, Any]
    measurements: list[dict[str, Any]]
    verdicts: list[dict[str, Any]]
    summaries: list[dict[str, Any]]
    annotations: list[dict[str, Any]]


def run_rows(bundle: RunBundle) -> RunRows:
    """The rows of one bundle (ValueError for a naive datetime in it)."""
    run_id = bundle.run.id
    return RunRows(
        run=_run_row(bundle.run),
        measurements=[_measurement_row(m) for m in bundle.measurements],
        verdicts=[_verdict_row(v) for v in bundle.verdicts],
        summaries=[_summary_row(run_id, s) for s in bundle.summaries],
        annotations=[{"key": k, "value": v} for k, v in bundle.annotations],
    )


class Store:
    """One probe database. Open with `Store.open`; close with `close()` or a `with` block."""

    def __init__(self, engine: Engine, location: str, probe_id: str) -> None:
        self._engine = engine
        self._location = location
        self._probe_id = probe_id
        self._sqlite = engine.dialect.name == "sqlite"
        # Bulk readers (verdicts, measurements) read SQLite through its driver's own cursor,
        # below SQLAlchemy (_chunks); False reads through SQLAlchemy, as every other database
        # does (the tests compare the two).
        self._driver_reads = self._sqlite
        self._path: Path | None = None

    # -- opening -----------------------------------------------------------------------------

    @classmethod
    def open(cls, url_or_path: str | Path, *, pages_checked: bool = False) -> Store:
        """Open (creating or migrating as needed) the database at a path or SQLAlchemy URL, to
        write to it.

        A SQLite file is checked before anything is written to it: a file that is not SQLite, a
        foreign or newer-schema database and one without a probe id are refused untouched, and
        so is one with damaged pages (PRAGMA quick_check), so that a run never measures into a
        database that cannot keep its measurements. `pages_checked`: the caller has just run
        that page check itself (probe.store.sqlite_file.check_file, as `probe run` does before
        any traffic), so the file's every page is not read a second time.
        """
        url, location, path = _resolve(url_or_path, create=True)
        if path is not None:
            sniff(path, location, empty_ok=True)
        return cls._open(url, location, path, readonly=False, pages_checked=pages_checked)

    @classmethod
    def open_readonly(cls, url_or_path: str | Path) -> Store:
        """Open an existing probe database only to read it (report, export, merge sources).

        Nothing is ever written: a SQLite file is opened with `mode=ro` (SQLite URI filenames),
        so this works on read-only media and never waits behind a writer's lock (WAL readers do
        not block), and a missing file is an error, never a new empty database. A database at
        an older schema is refused with how to upgrade it: migrating is a write.
        """
        url, location, path = _resolve(url_or_path, create=False)
        if path is not None:
            if not path.exists():
                raise StoreError(
                    f"no probe database at {location} (check the path; `probe run` creates one)"
                )
            sniff(path, location, empty_ok=False)
            url = _readonly_url(path, location)
        return cls._open(url, location, path, readonly=True)

    @classmethod
    def _open(
        cls,
        url: URL,
        location: str,
        path: Path | None,
        *,
        readonly: bool,
        pages_checked: bool = False,
    ) -> Store:
        try:
            engine = _create_engine(url, readonly=readonly)
        except (ArgumentError, ImportError) as exc:
            raise StoreError(f"cannot open {location}: {exc}") from exc
        try:
            probe_id = _prepare(engine, location, readonly=readonly, pages_checked=pages_checked)
        except BaseException:
            engine.dispose()
            raise
        store = cls(engine, location, probe_id)
        store._path = path
        return store

    @property
    def location(self) -> str:
        """The path or URL (password hidden) this store was opened from."""
        return self._location

    @property
    def path(self) -> Path | None:
        """The SQLite file (None for a server database): outputs must never overwrite it."""
        return self._path

    def probe_id(self) -> str:
        """This database's probe id: random uuid4 hex created on first open, never host-derived."""
        return self._probe_id

    def schema_version(self) -> int:
        with self._transaction() as conn:
            found = migrations.read_meta(conn) or {}
        return int(found.get("schema_version", "0"))

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self._location!r})"

    # -- writing -----------------------------------------------------------------------------

    def start_run(self, run: Run) -> None:
        """Record a run as it starts (its finish and network may be filled in later)."""
        with self._transaction(write=True) as conn:
            conn.execute(schema.runs.insert(), _run_row(run))

    def finish_run(
        self,
        run_id: str,
        finished_at: datetime,
        connectivity: Connectivity,
        interrupted: bool,
    ) -> None:
        _require_aware(finished_at, "finished_at")
        values = {
            "finished_at": finished_at,
            "connectivity": str(connectivity),
            "interrupted": interrupted,
        }
        self._update_run(run_id, values)

    def _update_run(self, run_id: str, values: dict[str, Any]) -> None:
        with self._transaction(write=True) as conn:
            stmt = schema.runs.update().where(schema.runs.c.id == run_id).values(**values)
            if not conn.execute(stmt).rowcount:
                raise StoreError(f"{self._location} has no run {run_id}")

    def save_measurements(self, measurements: Sequence[Measurement]) -> None:
        """Save a batch in one transaction: all of it or, on error, none of it."""
        if not measurements:
            return
        rows = [_measurement_row(m) for m in measurements]
        with self._transaction(write=True) as conn:
            conn.execute(schema.measurements.insert(), rows)

    def save_verdicts(self, run_id: str, verdicts: Sequence[Verdict]) -> None:
        """Replace the verdicts of `run_id` with these (re-analysis with newer rules is safe)."""
        rows = [_verdict_row(v) for v in verdicts]
        if any(row["run_id"] != run_id for row in rows):
            raise ValueError("every verdict saved for a run must belong to that run")
        with self._transaction(write=True) as conn:
            conn.execute(schema.verdicts.delete().where(schema.verdicts.c.run_id == run_id))
            if rows:
                conn.execute(schema.verdicts.insert(), rows)

    def save_platform_summaries(self, run_id: str, summaries: Sequence[PlatformSummary]) -> None:
        """Replace the platform summaries of `run_id` with these."""
        table = schema.platform_summaries
        rows = [_summary_row(run_id, s) for s in summaries]
        with self._transaction(write=True) as conn:
            conn.execute(table.delete().where(table.c.run_id == run_id))
            if rows:
                conn.execute(table.insert(), rows)

    def save_runs(self, bundles: Sequence[RunBundle]) -> list[str]:
        """Save whole runs (an import: each run with its measurements, verdicts, platform
        summaries and annotations) in one transaction. A run whose id is already stored is left
        as it is, so saving the same bundles twice adds nothing. Returns the ids saved."""
        return self.save_run_rows([run_rows(b) for b in bundles])

    def save_run_rows(self, runs: Sequence[RunRows]) -> list[str]:
        """save_runs for bundles already turned into rows (run_rows: an import builds them in
        the processes that judge its documents)."""
        if not runs:
            return []
        with self._transaction(write=True) as conn:
            if self._sqlite:
                # Run and measurement ids come in no order: every batch inserts into pages all
                # over the id and run indexes, which SQLite's default 2 MB page cache re-reads.
                conn.exec_driver_sql(f"PRAGMA cache_size=-{BULK_CACHE_KIB}")
            # The same idempotent insert as merge and the collector's (ids are global).
            stmt = insert_missing(conn, schema.runs).returning(schema.runs.c.id)
            fresh = {row[0] for row in conn.execute(stmt, [r.run for r in runs])}
            saved: list[str] = []
            measurements: list[dict[str, Any]] = []
            verdicts: list[dict[str, Any]] = []
            summaries: list[dict[str, Any]] = []
            notes: list[dict[str, Any]] = []
            for rows in runs:
                run_id = rows.run["id"]
                if run_id not in fresh:  # stored before, or twice in the batch
                    continue
                fresh.discard(run_id)
                saved.append(run_id)
                measurements.extend(rows.measurements)
                verdicts.extend(rows.verdicts)
                summaries.extend(rows.summaries)
                notes.extend(rows.annotations)
            for table, table_rows in (
                (schema.measurements, measurements),
                (schema.verdicts, verdicts),
                (schema.platform_summaries, summaries),
                (schema.meta, notes),
            ):
                if table_rows:
                    _insert_rows(conn, table, table_rows)
        return saved

    def annotations(self, prefix: str) -> Iterator[tuple[str, str]]:
        """The annotations (key, value) saved with runs whose key starts with `prefix`, by key."""
        if not prefix or prefix in DATABASE_META_KEYS:
            raise ValueError("an annotation prefix names a kind of annotation, e.g. 'ooni:'")
        table = schema.meta
        stmt = (
            select(table.c.key, table.c.value)
            .where(table.c.key.startswith(prefix, autoescape=True))
            .order_by(table.c.key)
        )
        for row in self._stream(stmt):
            yield str(row.key), str(row.value)

    # -- reading -----------------------------------------------------------------------------

    def verdicts(
        self,
        *,
        run_id: str | None = None,
        platform: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[Verdict]:
        """Verdicts of runs started in [since, until), in time order, streamed."""
        for row in self.verdict_rows(run_id=run_id, platform=platform, since=since, until=until):
            yield Verdict(*row)

    def verdict_rows(
        self,
        *,
        run_id: str | None = None,
        platform: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[VerdictRow]:
        """verdicts() as VerdictRow tuples: the same rows in the same order, checked the same
        way, without a Verdict made per row (a report's timeline reads a million)."""
        table = schema.verdicts
        stmt = _filtered(table, table.c.measured_at, run_id, platform, since, until)
        stmt = stmt.order_by(table.c.measured_at, table.c.run_id, table.c.platform, table.c.target)
        return _verdict_rows(self._chunks(stmt), self._driver_reads)

    def verdict_times(
        self,
        *,
        platforms: Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        asns: Collection[int] | None = None,
    ) -> tuple[list[VerdictTimes], list[VerdictRow]] | None:
        """The verdicts measured in [since, until) of `platforms` (all when None or empty) on
        networks `asns` (all when None or empty), aggregated in the database: the VerdictTimes
        of each group, and the newest verdict of each (asn, platform, target) as verdict_rows
        reads it (of equal times the one that comes last in verdict_rows' order). `order` of a
        group: (its platform's place in `platforms`, measured_at text, run_id) of its first
        verdict, the order verdict_rows reads them per platform.

        None where the rows should be read one by one instead: a database other than SQLite,
        or any row the groups cannot vouch for (a time that is not stored UTC text, an unknown
        status or confidence, evidence that is not a list, a value of another type), which
        verdict_rows reads, or refuses naming it, as it always has."""
        if not self._driver_reads:
            return None
        names: list[str | None] = list(platforms) if platforms else [None]
        if len(set(names)) != len(names):
            return None
        wanted = sorted(set(asns)) if asns else None
        groups: list[VerdictTimes] = []
        newest: list[VerdictRow] = []
        for position, name in enumerate(names):
            found = self._verdict_times(position, name, since, until, wanted)
            if found is None:
                return None
            groups.extend(found[0])
            newest.extend(found[1])
        return groups, newest

    def _verdict_times(
        self,
        position: int,
        platform: str | None,
        since: datetime | None,
        until: datetime | None,
        asns: list[int] | None,
    ) -> tuple[list[VerdictTimes], list[VerdictRow]] | None:
        table = schema.verdicts
        c = table.c
        stored = type_coerce(c.measured_at, String)  # the stored text, as SQL sees it
        keys: tuple[Column[Any], ...] = (c.asn, c.probe_id, c.platform, c.target, c.status)
        keys += (c.technique, c.rules_version, c.country)
        # Each row is vouched for in SQL (true is 1): the reader below takes a group as it is
        # only when all of its rows are.
        sound = and_(
            func.length(stored) == _TIME_TEXT_LENGTH,
            stored.like("%+00:00"),
            or_(c.confidence.is_(None), *(c.confidence == name for name in _CONFIDENCE_NAMES)),
            c.evidence.like("[%]"),
        )
        stmt: Select[Any] = select(
            *keys,
            func.count(),
            func.min(stored.concat(c.run_id)),
            func.max(stored.concat(c.run_id)),
            func.group_concat(stored),
            func.min(sound),
        )
        stmt = _within(stmt, table, c.measured_at, platform, since, until, asns)
        stmt = stmt.group_by(*keys)
        groups: list[VerdictTimes] = []
        finals: list[str] = []
        times: dict[str, datetime] = {}
        make = tuple.__new__
        # A chunk of groups at a time: their times' text is ~33 bytes per verdict.
        for values in itertools.chain.from_iterable(self._chunks(stmt)):
            (asn, probe_id, platform_, target, status, technique, version, country, count,
             first, final, texts, vouched) = values  # fmt: skip
            known = _STATUSES.get(status) if isinstance(status, str) else None
            if (
                vouched != 1
                or known is None
                or not (asn is None or type(asn) is int)
                or not all(isinstance(v, str) for v in (probe_id, platform_, target, version))
                or not (technique is None or isinstance(technique, str))
                or not (country is None or isinstance(country, str))
                or not isinstance(texts, str)
            ):
                return None
            measured: list[datetime] = []
            for written in texts.split(","):
                moment = times.get(written)
                if moment is None:
                    moment = schema.sqlite_time(written)
                    if not isinstance(moment, datetime) or moment.utcoffset() != _UTC_OFFSET:
                        return None
                    times[written] = moment
                measured.append(moment)
            if len(measured) != count:
                return None
            order = (position, first[:_TIME_TEXT_LENGTH], first[_TIME_TEXT_LENGTH:])
            finals.append(final)
            groups.append(
                make(
                    VerdictTimes,
                    (
                        asn,
                        probe_id,
                        platform_,
                        target,
                        known,
                        technique,
                        version,
                        country,
                        order,
                        measured,
                    ),
                )
            )
        # The newest verdict of each series (asn, platform, target): the greatest last verdict
        # of its groups, read by its key as verdict_rows reads a row.
        last: dict[tuple[Any, ...], str] = {}
        for group, final in zip(groups, finals, strict=True):
            key = (group.asn, group.platform, group.target)
            if final > last.get(key, ""):
                last[key] = final
        rows: list[Any] = []
        by_key = select(table).where(
            c.run_id == bindparam("run_id"),
            c.platform == bindparam("platform"),
            c.target == bindparam("target"),
        )
        with self._transaction() as conn:
            sql, _ = _driver_statement(conn, by_key.params(run_id="", platform="", target=""))
            driver = conn.connection.dbapi_connection
            assert driver is not None  # an open connection has its DBAPI connection
            with closing(driver.cursor()) as cursor:
                for (_, platform_, target), final in last.items():
                    cursor.execute(sql, (final[_TIME_TEXT_LENGTH:], platform_, target))
                    rows.extend(cursor.fetchall())
        if len(rows) != len(last):
            return None
        return groups, list(_verdict_rows([rows], True))

    def platform_summaries(self, run_id: str) -> list[PlatformSummary]:
        table = schema.platform_summaries
        stmt = select(table).where(table.c.run_id == run_id).order_by(table.c.platform)
        with self._transaction() as conn:
            return [_summary_from_row(row) for row in conn.execute(stmt)]

    def get_run(self, run_id: str) -> Run | None:
        with self._transaction() as conn:
            row = conn.execute(select(schema.runs).where(schema.runs.c.id == run_id)).first()
        return None if row is None else _run_from_row(row)

    def unfinished_runs(self) -> list[Run]:
        """This probe's runs with no finish time (a run in progress, or one that was killed)."""
        table = schema.runs
        stmt = (
            select(table)
            .where(table.c.finished_at.is_(None), table.c.probe_id == self._probe_id)
            .order_by(table.c.started_at, table.c.id)
        )
        with self._transaction() as conn:
            return [_run_from_row(row) for row in conn.execute(stmt)]

    def runs(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        asns: Collection[int] | None = None,
        newest_first: bool = False,
        limit: int | None = None,
    ) -> Iterator[Run]:
        """Runs started in [since, until) on networks `asns` (all when None), oldest first
        unless `newest_first`."""
        started = schema.runs.c.started_at
        stmt = select(schema.runs)
        if since is not None:
            stmt = stmt.where(started >= since)
        if until is not None:
            stmt = stmt.where(started < until)
        if asns is not None:
            stmt = stmt.where(schema.runs.c.asn.in_(list(asns)))
        order = (
            (started.desc(), schema.runs.c.id.desc())
            if newest_first
            else (started, schema.runs.c.id)
        )
        stmt = stmt.order_by(*order).limit(limit)
        for row in self._stream(stmt):
            yield _run_from_row(row)

    def run_ids_starting_with(self, prefix: str, limit: int = 2) -> list[str]:
        """Up to `limit` run ids that start with `prefix` (a user's abbreviated run id)."""
        column = schema.runs.c.id
        stmt = select(column).where(column.startswith(prefix, autoescape=True))
        with self._transaction() as conn:
            return list(conn.scalars(stmt.order_by(column).limit(limit)))

    def verdict_counts(self, run_ids: Collection[str]) -> dict[str, dict[Status, int]]:
        """How many verdicts of each status each of these runs has (runs without any: absent)."""
        table = schema.verdicts
        counts: dict[str, dict[Status, int]] = {}
        if not run_ids:
            return counts
        stmt = (
            select(table.c.run_id, table.c.status, func.count())
            .where(table.c.run_id.in_(list(run_ids)))
            .group_by(table.c.run_id, table.c.status)
        )
        with self._transaction() as conn:
            for run_id, status, count in conn.execute(stmt):
                known = _STATUSES.get(status)
                if known is None:
                    raise StoreError(
                        f"verdicts row (run_id {run_id!r:.80}) does not parse: "
                        f"unknown status {status!r:.40}"
                    )
                counts.setdefault(run_id, {})[known] = int(count)
        return counts

    def rules_versions(self, run_ids: Collection[str]) -> dict[str, tuple[str, ...]]:
        """The rules versions that wrote each run's verdicts, sorted (runs without any: absent)."""
        table = schema.verdicts
        versions: dict[str, tuple[str, ...]] = {}
        if not run_ids:
            return versions
        stmt = (
            select(table.c.run_id, table.c.rules_version)
            .where(table.c.run_id.in_(list(run_ids)))
            .group_by(table.c.run_id, table.c.rules_version)
            .order_by(table.c.run_id, table.c.rules_version)
        )
        with self._transaction() as conn:
            for run_id, version in conn.execute(stmt):
                versions[run_id] = (*versions.get(run_id, ()), str(version))
        return versions

    def measurements(
        self,
        run_id: str | None = None,
        platform: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[Measurement]:
        """Measurements started in [since, until), in time order, streamed in chunks.

        The iterator holds a database connection until it is exhausted or closed.
        """
        table = schema.measurements
        stmt = _filtered(table, table.c.started_at, run_id, platform, since, until)
        stmt = stmt.order_by(table.c.started_at, table.c.id)
        raw = self._driver_reads
        for chunk in self._chunks(stmt):
            for row in chunk:
                yield _measurement_from_values(row, raw)

    def measurement_rows(
        self,
        run_id: str | None = None,
        platform: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[MeasurementRow]:
        """measurements() as MeasurementRow tuples: the same measurements in the same order,
        checked the same way, their details as the codec's JSON object of the record (what
        probe.codec.measurement_row makes of the Measurement), most without the record made."""
        table = schema.measurements
        stmt = _filtered(table, table.c.started_at, run_id, platform, since, until)
        stmt = stmt.order_by(table.c.started_at, table.c.id)
        return _measurement_rows(self._chunks(stmt), self._driver_reads)

    def latest_status(self, platform: str | None = None) -> list[Measurement]:
        """The newest measurement of each (platform, target, layer, endpoint), sorted by those."""
        table = schema.measurements
        key = (table.c.platform, table.c.target, table.c.layer, table.c.endpoint)
        rank = (
            func.row_number()
            .over(partition_by=key, order_by=(table.c.started_at.desc(), table.c.id.desc()))
            .label("rank")
        )
        ranked = select(table, rank)
        if platform is not None:
            ranked = ranked.where(table.c.platform == platform)
        sub = ranked.subquery()
        stmt = (
            select(*(sub.c[column.name] for column in table.columns))
            .where(sub.c.rank == 1)
            .order_by(sub.c.platform, sub.c.target, sub.c.layer, sub.c.endpoint)
        )
        with self._transaction() as conn:
            return [_measurement_from_row(row) for row in conn.execute(stmt)]

    # -- plumbing ----------------------------------------------------------------------------

    def _stream(self, stmt: Select[Any]) -> Iterator[Row[Any]]:
        with self._transaction() as conn:
            result = conn.execution_options(yield_per=STREAM_CHUNK_ROWS).execute(stmt)
            # A chunk at a time: iterating the result row by row costs a fetchone() call per row.
            for chunk in result.partitions():
                yield from chunk

    def _chunks(self, stmt: Select[Any]) -> Iterator[Sequence[Sequence[Any]]]:
        """The rows of `stmt` a chunk at a time. On SQLite, the driver's own tuples, read below
        SQLAlchemy (its per-row result processing cost as much as SQLite's reading): times are
        left as the stored text, for the caller to read with schema.sqlite_time. Elsewhere,
        SQLAlchemy's rows (times already read), from a server-side cursor."""
        if not self._driver_reads:
            with self._transaction() as conn:
                result = conn.execution_options(yield_per=STREAM_CHUNK_ROWS).execute(stmt)
                yield from result.partitions()
            return
        with self._transaction() as conn:
            sql, params = _driver_statement(conn, stmt)
            driver = conn.connection.dbapi_connection
            assert driver is not None  # an open connection has its DBAPI connection
            cursor = driver.cursor()
            try:
                cursor.execute(sql, params)
                while rows := cursor.fetchmany(STREAM_CHUNK_ROWS):
                    yield rows
            finally:
                cursor.close()

    @contextmanager
    def _transaction(self, *, write: bool = False) -> Iterator[Connection]:
        try:
            with self._engine.connect() as conn:
                if write and self._sqlite:
                    # Take the write lock up front: a deferred transaction that reads and then
                    # writes can fail with SQLITE_BUSY instead of waiting for the lock.
                    conn.execution_options(sqlite_begin="IMMEDIATE")
                with conn.begin():
                    yield conn
        except DBAPIError as exc:
            raise StoreError(f"{self._location}: {_driver_message(exc)}") from exc
        except SQLAlchemyError as exc:
            raise StoreError(f"{self._location}: {exc}") from exc
        except sqlite3.Error as exc:  # from a cursor read below SQLAlchemy (_chunks)
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreError(f"{self._location}: {message}") from exc
        except (ValueError, TypeError) as exc:
            # Raised while rows are read: a stored time that is not one (schema.UTCDateTime).
            message = f"{self._location}: a stored row does not parse: {exc!s:.200}"
            raise StoreError(message) from None


# -- opening helpers ---------------------------------------------------------------------------


def _filtered(
    table: Table,
    time: ColumnElement[datetime],
    run_id: str | None,
    platform: str | None,
    since: datetime | None,
    until: datetime | None,
) -> Select[Any]:
    """SELECT * FROM `table`, narrowed to one run and platform and to `time` in [since, until)."""
    stmt = select(table)
    if run_id is not None:
        stmt = stmt.where(table.c.run_id == run_id)
    if platform is not None:
        stmt = stmt.where(table.c.platform == platform)
    if since is not None:
        stmt = stmt.where(time >= since)
    if until is not None:
        stmt = stmt.where(time < until)
    return stmt


def _within(
    stmt: Select[Any],
    table: Table,
    time: ColumnElement[datetime],
    platform: str | None,
    since: datetime | None,
    until: datetime | None,
    asns: Sequence[int] | None,
) -> Select[Any]:
    """`stmt` narrowed as _filtered narrows, and to networks `asns` when given."""
    if platform is not None:
        stmt = stmt.where(table.c.platform == platform)
    if since is not None:
        stmt = stmt.where(time >= since)
    if until is not None:
        stmt = stmt.where(time < until)
    if asns is not None:  # equalities, not IN: _driver_statement takes plain parameters
        stmt = stmt.where(or_(*(table.c.asn == asn for asn in asns)))
    return stmt


def _driver_statement(conn: Connection, stmt: Select[Any]) -> tuple[str, tuple[Any, ...]]:
    """`stmt` as the DBAPI runs it: SQLAlchemy's SQL text and its parameters in order, each
    through its type's bind processor (as SQLAlchemy applies them: a UTCDateTime's text)."""
    dialect = conn.dialect
    compiled = stmt.compile(dialect=dialect)
    order = compiled.positiontup
    if order is None:  # the SQLite dialect's paramstyle is positional (qmark)
        raise StoreError(f"{dialect.name} takes named parameters: cannot stream below SQLAlchemy")
    values = compiled.construct_params()
    params: list[Any] = []
    for name in order:
        processor = compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
        params.append(values[name] if processor is None else processor(values[name]))
    return compiled.string, tuple(params)


def _insert_rows(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """INSERT `rows` (dicts with the same keys) as `conn.execute(table.insert(), rows)` does.

    On SQLite, one statement compiled once and the DBAPI's executemany over tuples, each value
    through its column type's bind processor (the same processors SQLAlchemy applies): building
    SQLAlchemy's parameters row by row cost more than SQLite's inserts themselves (an OONI import
    saves ~25,000 measurement rows per 1,000 documents). Other databases keep the plain path."""
    if conn.dialect.name != "sqlite":
        conn.execute(table.insert(), list(rows))
        return
    dialect = conn.dialect
    keys = rows[0].keys()
    compiled = table.insert().compile(dialect=dialect, column_keys=list(keys))
    order = compiled.positiontup
    if order is None or set(order) != keys or any(row.keys() != keys for row in rows):
        conn.execute(table.insert(), list(rows))  # not one shape: let SQLAlchemy sort it out
        return
    processors = [table.c[key].type.dialect_impl(dialect).bind_processor(dialect) for key in order]
    # Values by one itemgetter per row, then only the columns with a processor replaced.
    processed = [(i, p) for i, p in enumerate(processors) if p is not None]
    getter: Callable[[dict[str, Any]], Sequence[Any]] = (
        operator.itemgetter(*order) if len(order) > 1 else lambda row: (row[order[0]],)
    )
    params: list[Sequence[Any]]
    if not processed:
        params = [getter(row) for row in rows]
    else:
        params = []
        for row in rows:
            values = list(getter(row))
            for i, process in processed:
                values[i] = process(values[i])
            params.append(tuple(values))
    conn.exec_driver_sql(compiled.string, params)


def insert_missing(conn: Connection, table: Table) -> Insert:
    """INSERT that skips rows whose primary key is already there: copying rows between
    databases (merge, upload) is idempotent because ids are global."""
    if conn.dialect.name == "postgresql":
        # Imported here: PostgreSQL's dialect is a fifth of SQLAlchemy's import time, and a
        # probe on SQLite never needs it (its engine loads it for a postgresql:// URL anyway).
        from sqlalchemy.dialects import postgresql

        keys = list(table.primary_key.columns)
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=keys)
    return sqlite.insert(table).on_conflict_do_nothing()


def _resolve(url_or_path: str | Path, *, create: bool) -> tuple[URL, str, Path | None]:
    """The SQLAlchemy URL for a path or URL, how to name it in messages, and the SQLite file
    (None for a server or in-memory database). `create`: make the file's missing folders."""
    if isinstance(url_or_path, str) and "://" in url_or_path:
        try:
            url = make_url(url_or_path)
        except ArgumentError as exc:
            raise StoreError(f"cannot open {url_or_path!r}: not a database URL") from exc
        # SQLAlchemy 2.0 reads plain postgresql:// as psycopg2, which this project does not use.
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")
        location = url.render_as_string(hide_password=True)
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            path = Path(url.database)
            if create:
                _make_parent(path, location)
            return url, location, path
        return url, location, None
    path = Path(url_or_path).expanduser()
    if create:
        _make_parent(path, str(path))
    return URL.create("sqlite+pysqlite", database=str(path)), str(path), path


def _make_parent(path: Path, location: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the directory for {location}: {exc.strerror}") from exc


def readonly_uri(path: Path, location: str) -> str:
    """A SQLite URI filename that opens `path` read-only (`mode=ro`); with `immutable=1` when
    even a reader's shared-memory file cannot be made beside it (read-only media: see
    https://www.sqlite.org/uri.html and https://www.sqlite.org/wal.html#readonly), which is safe
    there because nothing can change the file. Raises StoreError for a file that cannot be read
    at all that way."""
    uri = readonly_file_uri(path)
    try:
        with closing(sqlite3.connect(uri, uri=True)) as conn:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        message = str(exc)
        if "readonly" not in message and "unable to open" not in message:
            return uri  # damaged or not a database: the caller's checks say so in their words
        wal = path.with_name(path.name + "-wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise StoreError(
                f"cannot read {location}: its write-ahead log ({wal.name}) cannot be read where "
                "the folder is read-only; copy both files to a writable folder"
            ) from None
        uri += "&immutable=1"
    return uri


def _readonly_url(path: Path, location: str) -> URL:
    database, _, query = readonly_uri(path, location).partition("?")
    options = dict(pair.split("=") for pair in query.split("&"))
    return URL.create("sqlite+pysqlite", database=database, query={**options, "uri": "true"})


def _create_engine(url: URL, *, readonly: bool) -> Engine:
    if url.get_backend_name() != "sqlite":
        return create_engine(url)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite opens transactions itself, but only before DML, so DDL (migrations!) would
        # run outside them. Hand transaction control to SQLAlchemy's "begin" event below
        # (the recipe in SQLAlchemy's SQLite dialect documentation).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if readonly:
                cursor.execute("PRAGMA query_only=ON")
            else:
                # Per connection; WAL itself is set once, after the file passed _prepare's checks.
                cursor.execute("PRAGMA synchronous=NORMAL")
                cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _prepare(engine: Engine, location: str, *, readonly: bool, pages_checked: bool) -> str:
    """Check the database; for a writer, create or migrate the schema (one transaction) and
    switch a SQLite file to WAL; return the probe id. Nothing is written to a database that is
    refused, or by a reader."""
    sqlite = engine.dialect.name == "sqlite"
    try:
        if sqlite or readonly:
            with engine.connect() as conn, conn.begin():
                version = migrations.check(conn, location)
                if readonly:
                    return _readable(conn, location, version)
                if not pages_checked:
                    _quick_check(conn, location)
            _set_wal(engine)
        with engine.connect() as conn:
            if sqlite:
                conn.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                if engine.dialect.name == "postgresql":
                    conn.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_OPEN_LOCK_KEY}
                    )
                return migrations.prepare(conn, location)
    except DBAPIError as exc:
        raise driver_error(_driver_message(exc), location) from exc
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot open {location}: {exc}") from exc


def _readable(conn: Connection, location: str, version: int | None) -> str:
    """The probe id of a database a reader may read as it is."""
    if version is None:
        raise NotAProbeDatabaseError(f"{location} is not a probe database (it holds no tables)")
    newest = migrations.latest_version()
    if version < newest:
        raise StoreError(
            f"{location} is at schema version {version} (this censorprobe reads {newest}) and "
            "is only read here: upgrade it with `probe run --db` or copy it with `probe merge "
            f"{location} --into NEW.db`"
        )
    return migrations.read_probe_id(conn)


def _quick_check(conn: Connection, location: str) -> None:
    """Refuse a SQLite file with damaged pages before anything is written to it."""
    rows = conn.exec_driver_sql(f"PRAGMA quick_check({QUICK_CHECK_LIMIT})")
    refuse_damaged([str(row[0]) for row in rows], location)


def _set_wal(engine: Engine) -> None:
    """Switch the file to WAL (persistent, so once per open is enough): outside a transaction,
    where SQLite allows it."""
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()
    finally:
        raw.close()


def _driver_message(exc: DBAPIError) -> str:
    """The driver's own message, first line only (psycopg appends multi-line context)."""
    message = str(exc.orig) if exc.orig is not None else str(exc)
    return message.strip().splitlines()[0] if message.strip() else type(exc.orig).__name__


# -- rows <-> records --------------------------------------------------------------------------


def _require_aware(value: datetime, what: str) -> None:
    """Refuse a naive datetime before any SQL runs: its zone is unknown, so storing it is a bug."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} is a naive datetime ({value.isoformat()}): use UTC-aware ones")


def _network_columns(network: NetworkInfo) -> dict[str, Any]:
    return {
        "asn": network.asn,
        "as_name": network.as_name,
        "country": network.country,
        "resolver_asn": network.resolver_asn,
        "resolver_as_name": network.resolver_as_name,
        "resolver_country": network.resolver_country,
        "vpn_suspected": network.vpn_suspected,
        "network_source": network.source,
    }


def _run_row(run: Run) -> dict[str, Any]:
    _require_aware(run.started_at, "Run.started_at")
    if run.finished_at is not None:
        _require_aware(run.finished_at, "Run.finished_at")
    return {
        "id": run.id,
        "probe_id": run.probe_id,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "software_version": run.software_version,
        "config_digest": run.config_digest,
        "connectivity": str(run.connectivity),
        "interrupted": run.interrupted,
        **_network_columns(run.network),
    }


class StoredRow(Protocol):
    """A row as the row decoders read it: SQLAlchemy's Row, or _Values (read below it)."""

    @property
    def _mapping(self) -> Mapping[Any, Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


def _names_the_row(
    table: str,
) -> Callable[[Callable[[StoredRow], R]], Callable[[StoredRow], R]]:
    """A row decoder whose bad rows (an unknown status, JSON that does not parse: a hand-edited
    or hostile merged database) raise StoreError naming the table and the row's key."""

    def wrap(decode: Callable[[StoredRow], R]) -> Callable[[StoredRow], R]:
        columns = getattr(schema, table).columns
        key = [c.name for c in getattr(schema, table).primary_key.columns]
        times = [c.name for c in columns if isinstance(c.type, schema.UTCDateTime)]

        def decoded(row: StoredRow) -> R:
            try:
                m = row._mapping
                for name in times:
                    if isinstance(m.get(name), schema.UnreadableTime):
                        raise ValueError(f"{name} {str(m[name])!r:.60} is not a time")
                return decode(row)
            except (KeyError, ValueError, TypeError, AttributeError) as exc:
                m = row._mapping
                where = ", ".join(f"{column} {m[column]!r:.80}" for column in key)
                raise StoreError(f"{table} row ({where}) does not parse: {exc!s:.200}") from None

        return decoded

    return wrap


def _asn(value: Any, name: str = "asn") -> int | None:
    """An AS number column: an integer or NULL. SQLite keeps whatever a hostile or hand-edited
    file put there (text in an integer column), which would surface far from here (a report
    sorting networks: a TypeError)."""
    if value is None or value.__class__ is int:
        return value
    raise ValueError(f"{name} {str(value)!r:.40} is not an AS number")


def _text(value: Any, name: str) -> str:
    """A text column read as text (see _asn)."""
    if value.__class__ is str:
        return value
    raise ValueError(f"{name} {str(value)!r:.40} is not text")


def _optional_text(value: Any, name: str) -> str | None:
    return None if value is None else _text(value, name)


@_names_the_row("runs")
def _run_from_row(row: StoredRow) -> Run:
    m = row._mapping
    return Run(
        id=m["id"],
        probe_id=m["probe_id"],
        started_at=m["started_at"],
        software_version=m["software_version"],
        config_digest=m["config_digest"],
        network=NetworkInfo(
            asn=_asn(m["asn"]),
            as_name=_optional_text(m["as_name"], "as_name"),
            country=_optional_text(m["country"], "country"),
            resolver_asn=_asn(m["resolver_asn"], "resolver_asn"),
            resolver_as_name=_optional_text(m["resolver_as_name"], "resolver_as_name"),
            resolver_country=_optional_text(m["resolver_country"], "resolver_country"),
            vpn_suspected=m["vpn_suspected"],
            source=m["network_source"],
        ),
        finished_at=m["finished_at"],
        connectivity=Connectivity(m["connectivity"]),
        interrupted=bool(m["interrupted"]),
    )


def _measurement_row(measurement: Measurement) -> dict[str, Any]:
    observation = measurement.observation
    operation = observation.failed_operation
    _require_aware(observation.started_at, "Observation.started_at")
    return {
        "id": measurement.id,
        "run_id": measurement.run_id,
        "platform": measurement.platform,
        "target": measurement.target,
        "endpoint": observation.endpoint,
        "layer": str(observation.layer),
        "started_at": observation.started_at,
        "duration_ms": observation.duration_ms,
        "failure": observation.failure,
        "failed_operation": None if operation is None else str(operation),
        "details": _encode_details_json(encode_details_column(observation)),
    }


# What json.dumps(value, ensure_ascii=False, allow_nan=False) does, with the encoder built once
# (json.dumps builds one per call when given options: a tenth of a measurement row's cost).
# allow_nan=False: NaN/Infinity are not JSON; PostgreSQL, jq and most readers reject them.
_encode_details_json = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode


# Rows of `select(schema.measurements)` come in the table's column order; reading them by
# position and the enums from dicts makes streaming a million rows ~25% cheaper than by name.
_MEASUREMENT_COLUMNS = (
    "id",
    "run_id",
    "platform",
    "target",
    "endpoint",
    "layer",
    "started_at",
    "duration_ms",
    "failure",
    "failed_operation",
    "details",
)
assert tuple(c.name for c in schema.measurements.columns) == _MEASUREMENT_COLUMNS
_LAYERS = {layer.value: layer for layer in Layer}
_OPERATIONS = {operation.value: operation for operation in Operation}


def _unparsed(measurement_id: Any, run_id: Any, why: str) -> StoreError:
    """The error for a stored measurement row that does not parse, naming it."""
    return StoreError(f"measurement {measurement_id} of run {run_id} does not parse: {why}")


def _measurement_from_row(row: StoredRow) -> Measurement:
    """A stored row as a Measurement; StoreError (naming the run and the measurement) for a row
    whose layer, operation or details do not parse, never a traceback."""
    return _measurement_from_values(tuple(row), False)


def _measurement_from_values(values: Sequence[Any], raw: bool) -> Measurement:
    """_measurement_from_row of a row's values; `raw`: as SQLite's driver hands them over, the
    time still text (Store._chunks)."""
    (id_, run_id, platform, target, endpoint, layer, started_at, duration, failure, op, details) = (
        values
    )
    if raw:
        started_at = schema.sqlite_time(started_at)
    if isinstance(started_at, schema.UnreadableTime):
        raise _unparsed(id_, run_id, f"started_at {str(started_at)!r:.60} is not a time")
    try:
        layer_ = _LAYERS[layer]
        operation = None if op is None else _OPERATIONS[op]
        record, failure_detail, stall = _stored_details(layer_, details)
    except KeyError as exc:
        raise _unparsed(id_, run_id, f"unknown layer or operation {exc}") from None
    except (ValueError, TypeError) as exc:  # CodecError, JSONDecodeError
        raise _unparsed(id_, run_id, str(exc)) from None
    failure, failure_detail = split_failure(failure, failure_detail)
    # By position (_OBSERVATION_FIELDS, _MEASUREMENT_FIELDS): an export reads a million.
    observation = Observation(
        layer_, endpoint, started_at, duration, record, failure, operation, failure_detail, stall
    )
    return Measurement(run_id, platform, target, observation, id_)


# Decoded details columns by (layer, stored text): see _stored_details. Bounded in entries and
# in the characters of the texts kept: one stored HTTP row may carry a body prefix of up to
# 64 KiB (probe.config.MAX_BODY_PREFIX_BYTES), so an entry count alone bounds nothing.
_DETAILS_CACHE: dict[tuple[Layer, Any], StoredDetails] = {}
_DETAILS_CACHE_ENTRIES = 1024
_DETAILS_CACHE_CHARS = 1 << 21
_details_cache_chars = 0


def _stored_details(layer: Layer, text: Any) -> StoredDetails:
    """The details record and extras of a stored details column's text, cached by the
    text: a store repeats the same details across runs (a connect to the same address, the same
    answer from a resolver), and the records are frozen, so one decoded record serves every row
    holding that text. Not cached: a column that does not decode (it raises every time), and a
    RawCapture (its capture holds JSON lists and dicts, which rows must not share)."""
    global _details_cache_chars
    key = (layer, text)
    decoded = _DETAILS_CACHE.get(key)
    if decoded is None:
        decoded = decode_details_column(layer, json.loads(text))
        size = len(text)
        if not isinstance(decoded[0], RawCapture) and size <= _DETAILS_CACHE_CHARS:
            if (
                len(_DETAILS_CACHE) >= _DETAILS_CACHE_ENTRIES
                or _details_cache_chars + size > _DETAILS_CACHE_CHARS
            ):
                _DETAILS_CACHE.clear()
                _details_cache_chars = 0
            _DETAILS_CACHE[key] = decoded
            _details_cache_chars += size
    return decoded


# Encoded details columns by (layer, stored text), as _DETAILS_CACHE keeps decoded ones: the
# JSON object (shared by every row of that text, never changed), failure_detail and role.
_ENCODED_CACHE: dict[tuple[Layer, Any], tuple[dict[str, Any], str | None, Role]] = {}
_encoded_cache_chars = 0


def _encoded_details(layer: Layer, text: Any) -> tuple[dict[str, Any], str | None, Role]:
    """codec.encoded_details_column of a stored details column's text with its role, cached by
    the text within _DETAILS_CACHE's bounds. Not cached: a column that does not decode."""
    global _encoded_cache_chars
    key = (layer, text)
    found = _ENCODED_CACHE.get(key)
    if found is not None:
        return found
    # The decoder itself for text (json.loads checks its argument's type and finds the
    # decoder on every call); json.loads for anything else a hostile store may hold (bytes).
    data = _decode_json(text) if text.__class__ is str else json.loads(text)
    details, detail = encoded_details_column(layer, data)
    found = (details, detail, encoded_role(details))
    size = len(text)
    if size <= _DETAILS_CACHE_CHARS:
        if (
            len(_ENCODED_CACHE) >= _DETAILS_CACHE_ENTRIES
            or _encoded_cache_chars + size > _DETAILS_CACHE_CHARS
        ):
            _ENCODED_CACHE.clear()
            _encoded_cache_chars = 0
        _ENCODED_CACHE[key] = found
        _encoded_cache_chars += size
    return found


def _measurement_rows(
    chunks: Iterable[Sequence[Sequence[Any]]], raw: bool
) -> Iterator[MeasurementRow]:
    """Rows of the measurements table as MeasurementRows, checked as _measurement_from_values
    checks them (a StoreError naming the run and the measurement); `raw`: as SQLite's driver
    hands them over, times still text (Store._chunks)."""
    make = tuple.__new__  # MeasurementRow(...) builds through a Python __new__
    layers, operations, encoded = _LAYERS, _OPERATIONS, _encoded_details
    last_text: Any = None
    last_time: Any = None
    for chunk in chunks:
        for values in chunk:
            (id_, run_id, platform, target, endpoint, layer, started_at, duration, failure, op,
             details) = values  # fmt: skip
            if started_at is not last_text and started_at != last_text:
                last_text = started_at  # rows of one second share one datetime
                last_time = schema.sqlite_time(started_at) if raw else started_at
            if isinstance(last_time, schema.UnreadableTime):
                raise _unparsed(id_, run_id, f"started_at {str(last_time)!r:.60} is not a time")
            try:
                layer_ = layers[layer]
                operation = None if op is None else operations[op]
                record, failure_detail, role = encoded(layer_, details)
            except KeyError as exc:
                raise _unparsed(id_, run_id, f"unknown layer or operation {exc}") from None
            except (ValueError, TypeError) as exc:  # CodecError, JSONDecodeError
                raise _unparsed(id_, run_id, str(exc)) from None
            if failure is not None and failure.startswith(UNKNOWN_FAILURE_PREFIX):
                failure, failure_detail = split_failure(failure, failure_detail)
            yield make(
                MeasurementRow,
                (
                    id_,
                    run_id,
                    platform,
                    target,
                    endpoint,
                    layer_,
                    last_time,
                    duration,
                    failure,
                    operation,
                    failure_detail,
                    record,
                    role,
                ),
            )


_OBSERVATION_FIELDS = (
    "layer",
    "endpoint",
    "started_at",
    "duration_ms",
    "details",
    "failure",
    "failed_operation",
    "failure_detail",
    "probe_stall_ms",
)
assert tuple(f.name for f in dataclasses.fields(Observation)) == _OBSERVATION_FIELDS
_MEASUREMENT_FIELDS = ("run_id", "platform", "target", "observation", "id")
assert tuple(f.name for f in dataclasses.fields(Measurement)) == _MEASUREMENT_FIELDS


# The meta rows that describe the database itself; every other meta row is an annotation saved
# with a run (RunBundle.annotations: an import's provenance), which a merge carries along.
DATABASE_META_KEYS = ("schema_version", "probe_id")


def check_rows(table: str, rows: Sequence[Row[Any]]) -> None:
    """Decode each row of `table` as the readers would, so that a hostile row is refused (a
    StoreError naming it) before it is copied anywhere."""
    decode = _ROW_DECODERS.get(table)
    if decode is not None:
        for row in rows:
            decode(row)


def _verdict_row(verdict: Verdict) -> dict[str, Any]:
    _require_aware(verdict.measured_at, "Verdict.measured_at")
    return {
        "run_id": verdict.run_id,
        "platform": verdict.platform,
        "target": verdict.target,
        "probe_id": verdict.probe_id,
        "measured_at": verdict.measured_at,
        "asn": verdict.asn,
        "country": verdict.country,
        "status": str(verdict.status),
        "technique": verdict.technique,
        "confidence": None if verdict.confidence is None else str(verdict.confidence),
        "rule_id": verdict.rule_id,
        "rules_version": verdict.rules_version,
        "evidence": json.dumps(list(verdict.evidence)),
        "detail": verdict.detail,
    }


# A report or export decodes a million verdicts: the enums by dict lookup (a KeyError for an
# unknown value, named by _names_the_row like Status()'s ValueError), JSON by one decoder.
_STATUSES = {str(status): status for status in Status}
_CONFIDENCE_NAMES = frozenset(str(c) for c in Confidence)
# schema.UTCDateTime's text on SQLite: isoformat with microseconds of a UTC time.
_TIME_TEXT_LENGTH = len("2024-11-20T09:30:00.000000+00:00")
_CONFIDENCES: dict[str | None, Confidence | None] = {str(c): c for c in Confidence}
_CONFIDENCES[None] = None
_decode_json = json.JSONDecoder().decode


@_names_the_row("verdicts")
def _verdict_from_row(row: StoredRow) -> Verdict:
    m = row._mapping
    evidence = m["evidence"]
    ids = () if evidence == "[]" else tuple(_decode_json(evidence))
    if not all(i.__class__ is str for i in ids):
        raise ValueError("evidence is not a list of measurement ids")
    return Verdict(
        run_id=_text(m["run_id"], "run_id"),
        probe_id=_text(m["probe_id"], "probe_id"),
        measured_at=m["measured_at"],
        asn=_asn(m["asn"]),
        country=_optional_text(m["country"], "country"),
        platform=_text(m["platform"], "platform"),
        target=_text(m["target"], "target"),
        status=_STATUSES[m["status"]],
        technique=_optional_text(m["technique"], "technique"),
        confidence=_CONFIDENCES[m["confidence"]],
        rule_id=_text(m["rule_id"], "rule_id"),
        rules_version=_text(m["rules_version"], "rules_version"),
        evidence=ids,
        detail=_text(m["detail"], "detail"),
    )


# Rows of `select(schema.verdicts)` come in the table's column order (cross_verdicts' do not:
# they hold `controls` too, and are read by name).
_VERDICT_COLUMNS = (
    "run_id",
    "platform",
    "target",
    "probe_id",
    "measured_at",
    "asn",
    "country",
    "status",
    "technique",
    "confidence",
    "rule_id",
    "rules_version",
    "evidence",
    "detail",
)
assert tuple(c.name for c in schema.verdicts.columns) == _VERDICT_COLUMNS
# Verdict's (and VerdictRow's) fields, in the order _verdict_row_from_values passes them.
_VERDICT_FIELDS = (
    "run_id",
    "probe_id",
    "measured_at",
    "asn",
    "country",
    "platform",
    "target",
    "status",
    "technique",
    "confidence",
    "rule_id",
    "rules_version",
    "evidence",
    "detail",
)
assert tuple(f.name for f in dataclasses.fields(Verdict)) == _VERDICT_FIELDS
assert VerdictRow._fields == _VERDICT_FIELDS
# What json.dumps writes for a list of plain ids: '["a", "b"]'. A string holding no quote,
# backslash or control character (the ones JSON escapes) is its own JSON text between quotes,
# so such a list reads as its items by splitting; anything else goes through the JSON decoder.
_PLAIN_ID_LIST = re.compile(r'\["[^"\\\x00-\x1f]*"(?:, "[^"\\\x00-\x1f]*")*\]')


class _Values:
    """Values of a row read below SQLAlchemy (Store._chunks), its times read, as the row
    decoders read a Row: by position and by name (`_mapping`)."""

    def __init__(self, names: Sequence[str], values: Sequence[Any]) -> None:
        self._values = values
        self._mapping = dict(zip(names, values, strict=True))

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)


_UTC_OFFSET = timedelta(0)


def _verdict_rows(chunks: Iterable[Sequence[Sequence[Any]]], raw: bool) -> Iterator[VerdictRow]:
    """Rows of the verdicts table as _verdict_from_row reads them, by position (a report reads
    a million: several times cheaper than by name); `raw`: as SQLite's driver hands them over,
    times still text (Store._chunks). A row this path does not take as it is (a time that does
    not parse or is not UTC, an unknown status or confidence, evidence other than a plain list
    of ids) goes through _verdict_from_row, which reads it the same way or names the row in its
    error."""
    # The verdicts of a run share their time: read and checked once per run, not per row.
    last_text: Any = None
    last_time: Any = None
    time_ok = False
    make = tuple.__new__  # VerdictRow(...) builds through a Python __new__: 4x the cost
    statuses, confidences, plain = _STATUSES, _CONFIDENCES, _PLAIN_ID_LIST.fullmatch
    for chunk in chunks:
        for values in chunk:
            (
                run_id,
                platform,
                target,
                probe_id,
                measured_at,
                asn,
                country,
                status,
                technique,
                confidence,
                rule_id,
                rules_version,
                evidence,
                detail,
            ) = values
            if measured_at is not last_text and measured_at != last_text:
                last_text = measured_at
                last_time = schema.sqlite_time(measured_at) if raw else measured_at
                time_ok = isinstance(last_time, datetime) and last_time.utcoffset() == _UTC_OFFSET
            known = statuses.get(status)
            ids: tuple[str, ...] | None = None
            if (
                known is not None
                and time_ok
                and confidence in confidences
                and (asn is None or asn.__class__ is int)
                and (country is None or country.__class__ is str)
                and (technique is None or technique.__class__ is str)
                # Every text column text (SQLite keeps whatever a file holds: see _asn).
                and run_id.__class__ is str
                and platform.__class__ is str
                and target.__class__ is str
                and probe_id.__class__ is str
                and rule_id.__class__ is str
                and rules_version.__class__ is str
                and detail.__class__ is str
            ):
                if evidence == "[]":
                    ids = ()
                elif isinstance(evidence, str) and plain(evidence):
                    ids = tuple(evidence[2:-2].split('", "'))
            if ids is None or known is None:
                row = (
                    _Values(_VERDICT_COLUMNS, (*values[:4], last_time, *values[5:]))
                    if raw
                    else cast(StoredRow, values)  # SQLAlchemy's Row (Store._chunks)
                )
                yield VerdictRow.of(_verdict_from_row(row))
                continue
            # By position (_VERDICT_FIELDS), as Verdict(*row) takes it.
            yield make(
                VerdictRow,
                (
                    run_id,
                    probe_id,
                    last_time,
                    asn,
                    country,
                    platform,
                    target,
                    known,
                    technique,
                    confidences[confidence],
                    rule_id,
                    rules_version,
                    ids,
                    detail,
                ),
            )


def _summary_row(run_id: str, summary: PlatformSummary) -> dict[str, Any]:
    details = {
        "groups": [dataclasses.asdict(group) for group in summary.groups],
        "suspicious": list(summary.suspicious),
    }
    return {
        "run_id": run_id,
        "platform": summary.platform,
        "status": str(summary.status),
        "techniques": json.dumps(list(summary.techniques)),
        "blocked": summary.blocked,
        "total": summary.total,
        "details": json.dumps(details, default=str),
        "detail": summary.detail,
    }


@_names_the_row("platform_summaries")
def _summary_from_row(row: StoredRow) -> PlatformSummary:
    m = row._mapping
    details = json.loads(m["details"])
    return PlatformSummary(
        platform=m["platform"],
        status=PlatformStatus(m["status"]),
        techniques=tuple(json.loads(m["techniques"])),
        blocked=m["blocked"],
        total=m["total"],
        groups=tuple(
            GroupSummary(
                name=g["name"],
                status=PlatformStatus(g["status"]),
                blocked=g["blocked"],
                total=g["total"],
                techniques=tuple(g["techniques"]),
            )
            for g in details.get("groups", [])
        ),
        suspicious=tuple(details.get("suspicious", [])),
        detail=m["detail"],
    )


_ROW_DECODERS: dict[str, Callable[[StoredRow], object]] = {
    "runs": _run_from_row,
    "measurements": _measurement_from_row,
    "verdicts": _verdict_from_row,
    "platform_summaries": _summary_from_row,
}
