"""Uploads at both ends, in SQL: the collector's tokens, probe ownership and batch ingestion, and
the probe's outbox (which finished runs the collector has not acknowledged yet).

Collector side. A token is 32 random bytes (URL-safe base64), shown once; the database keeps only
its sha256, so a copy of the database holds no usable credential. The first token to upload a
probe id claims it (`probe_owners`); afterwards only that token may add runs of that probe. A batch
is ingested in one transaction: every check passes and every new row is written, or nothing is.
Rows whose id is already stored are skipped (INSERT ... ON CONFLICT DO NOTHING, as `probe merge`
does), so a replayed batch adds nothing; a skipped id that belongs to something else (another
probe's run, a measurement of another run) refuses the whole batch instead.

Probe side. A finished run stays queued until the collector has acknowledged its run record, all
its measurements and its verdicts (`upload_progress.done_at`); measurements go in id order and
`measurements_through` remembers the last acknowledged one, so an interrupted upload resumes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Table, func, or_, select

from probe.model import Measurement, Run, utcnow
from probe.records import Verdict
from probe.store import schema
from probe.store.database import (
    Store,
    _measurement_from_row,
    _measurement_row,
    _run_from_row,
    _run_row,
    _verdict_row,
    insert_missing,
)
from probe.store.errors import StoreError
from probe.store.pgcopy import copy_payload, copy_statement

TOKEN_BYTES = 32
# A run that started this long ago and never finished belongs to a probe that crashed mid-run:
# upload what it measured rather than keep it queued forever.
ABANDONED_RUN_AGE = timedelta(days=1)
# Ids per `IN (...)` list: far below SQLite's and PostgreSQL's bound-parameter limits.
_IN_CHUNK = 500


class UploadRefusedError(StoreError):
    """The batch breaks an ownership rule and was not stored (nothing of it was)."""


class ForeignProbeError(UploadRefusedError):
    """The batch holds runs of a probe id that another token uploads."""


class IdConflictError(UploadRefusedError):
    """An id in the batch is already stored as part of something else."""


# -- tokens -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A token as `token list` shows it: never the token itself (the database does not have it)."""

    id: str
    name: str
    created_at: datetime
    revoked_at: datetime | None
    probes: int


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def add_token(store: Store, name: str) -> tuple[TokenInfo, str]:
    """Create a token named `name`; return it with the token text (shown once, never stored)."""
    name = name.strip()
    if not name or len(name) > 100 or not name.isprintable():
        raise StoreError("a token name must be 1-100 printable characters")
    token = secrets.token_urlsafe(TOKEN_BYTES)
    info = TokenInfo(secrets.token_hex(4), name, utcnow(), None, 0)
    with store._transaction(write=True) as conn:
        taken = conn.execute(
            select(schema.upload_tokens.c.id).where(schema.upload_tokens.c.name == name)
        ).first()
        if taken is not None:
            raise StoreError(f"{store.location} already has a token named {name!r}")
        conn.execute(
            schema.upload_tokens.insert(),
            {
                "id": info.id,
                "name": name,
                "token_hash": hash_token(token),
                "created_at": info.created_at,
                "revoked_at": None,
            },
        )
    return info, token


def list_tokens(store: Store) -> list[TokenInfo]:
    tokens, owners = schema.upload_tokens, schema.probe_owners
    probes = (
        select(owners.c.token_id, func.count().label("probes"))
        .group_by(owners.c.token_id)
        .subquery()
    )
    stmt = (
        select(tokens, func.coalesce(probes.c.probes, 0))
        .outerjoin(probes, probes.c.token_id == tokens.c.id)
        .order_by(tokens.c.created_at, tokens.c.name)
    )
    with store._transaction() as conn:
        rows = conn.execute(stmt).all()
    return [
        TokenInfo(row.id, row.name, row.created_at, row.revoked_at, int(row[-1])) for row in rows
    ]


def revoke_token(store: Store, name_or_id: str) -> TokenInfo:
    """Revoke a token (by name or id): it authenticates no more; its probes stay its own."""
    tokens = schema.upload_tokens
    match = or_(tokens.c.name == name_or_id, tokens.c.id == name_or_id)
    with store._transaction(write=True) as conn:
        row = conn.execute(select(tokens).where(match)).first()
        if row is None:
            raise StoreError(f"{store.location} has no token named {name_or_id!r}")
        revoked = row.revoked_at or utcnow()
        conn.execute(tokens.update().where(tokens.c.id == row.id).values(revoked_at=revoked))
    return TokenInfo(row.id, row.name, row.created_at, revoked, 0)


def authenticate(store: Store, token: str) -> str | None:
    """The id of the live token `token` is, or None. Looked up by its hash (the database has
    nothing else), then compared in constant time."""
    digest = hash_token(token)
    tokens = schema.upload_tokens
    stmt = select(tokens.c.id, tokens.c.token_hash).where(
        tokens.c.token_hash == digest, tokens.c.revoked_at.is_(None)
    )
    with store._transaction() as conn:
        row = conn.execute(stmt).first()
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        return None
    return str(row.id)


# -- ingestion ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Batch:
    """What one upload carries: runs, and measurements and verdicts of those runs only."""

    runs: tuple[Run, ...]
    measurements: tuple[Measurement, ...] = ()
    verdicts: tuple[Verdict, ...] = ()


@dataclass(frozen=True, slots=True)
class Ingested:
    """Rows a batch added (a replay adds none)."""

    runs: int
    measurements: int
    verdicts: int


@dataclass(frozen=True, slots=True)
class BatchRows:
    """A batch as the rows it stores: its runs (ownership is checked on their probe ids), and
    its measurements and verdicts as the store's rows (dicts keyed by column name, as
    batch_rows makes them; the collector builds the measurement rows straight from the upload,
    probe.collector.rows)."""

    runs: tuple[Run, ...]
    measurements: Sequence[Mapping[str, Any]] = ()
    verdicts: Sequence[Mapping[str, Any]] = ()


def stored_measurement_row(measurement: Measurement) -> dict[str, Any]:
    """A measurement's row, as the store writes it."""
    return _measurement_row(measurement)


def stored_verdict_row(verdict: Verdict) -> dict[str, Any]:
    """A verdict's row, as the store writes it."""
    return _verdict_row(verdict)


def batch_rows(batch: Batch) -> BatchRows:
    """The rows of a batch of records."""
    return BatchRows(
        batch.runs,
        [_measurement_row(m) for m in batch.measurements],
        [_verdict_row(v) for v in batch.verdicts],
    )


def ingest_batch(store: Store, token_id: str, batch: Batch | BatchRows) -> Ingested:
    """Store a validated batch for `token_id` in one transaction, or refuse it whole.

    The batch must already be self-consistent (the collector's validation: measurements and
    verdicts belong to its runs). Raises ForeignProbeError or IdConflictError, with nothing
    written, when the batch would touch another token's data.
    """
    rows = batch if isinstance(batch, BatchRows) else batch_rows(batch)
    run_rows = [_run_row(run) for run in rows.runs]
    measurement_rows, verdict_rows = rows.measurements, rows.verdicts
    probe_ids = sorted({run.probe_id for run in rows.runs})
    with store._transaction(write=True) as conn:
        _claim_probes(conn, token_id, probe_ids)
        runs = _insert_new(conn, schema.runs, run_rows)
        if len(runs) < len(run_rows):
            _check_runs(conn, rows.runs, set(runs))
        if conn.dialect.name == "postgresql":
            added_ids, verdict_keys = _copy_new(
                conn, ((schema.measurements, measurement_rows), (schema.verdicts, verdict_rows))
            )
        else:
            added_ids = _insert_new(conn, schema.measurements, measurement_rows)
            verdict_keys = _insert_new(conn, schema.verdicts, verdict_rows)
        added = set(added_ids)
        if len(added) < len(measurement_rows):
            _check_measurements(conn, measurement_rows, added)
    return Ingested(len(runs), len(added), len(verdict_keys))


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), _IN_CHUNK):
        yield items[start : start + _IN_CHUNK]


def _claim_probes(conn: Connection, token_id: str, probe_ids: Sequence[str]) -> None:
    """Every probe id of the batch is this token's, claimed now if nobody has it yet."""
    owners = schema.probe_owners
    if not probe_ids:
        return
    # The probe's ids are claimed already for every batch but its first: one SELECT then.
    found = _owners(conn, probe_ids)
    unclaimed = [p for p in probe_ids if p not in found]
    if unclaimed:
        # Concurrent first uploads of one probe id: PostgreSQL makes the second INSERT wait for
        # the first transaction, then skip; the SELECT below then reads the committed owner.
        now = utcnow()
        conn.execute(
            insert_missing(conn, owners),
            [{"probe_id": p, "token_id": token_id, "claimed_at": now} for p in unclaimed],
        )
        found.update(_owners(conn, unclaimed))
    foreign = sorted(probe for probe, owner in found.items() if owner != token_id)
    if foreign:
        raise ForeignProbeError(
            f"probe id {foreign[0]} is uploaded with another token: this token may only add "
            "runs of the probe ids it uploaded first"
        )


def _owners(conn: Connection, probe_ids: Sequence[str]) -> dict[str, str]:
    owners = schema.probe_owners
    found: dict[str, str] = {}
    for chunk in _chunks(probe_ids):
        rows = conn.execute(
            select(owners.c.probe_id, owners.c.token_id).where(owners.c.probe_id.in_(chunk))
        )
        found.update((row.probe_id, row.token_id) for row in rows)
    return found


def _check_runs(conn: Connection, runs: Sequence[Run], added: set[str]) -> None:
    """A run id already stored must be the same probe's run (a replay), never another's."""
    wanted = {run.id: run.probe_id for run in runs if run.id not in added}
    table = schema.runs
    for chunk in _chunks(sorted(wanted)):
        rows = conn.execute(select(table.c.id, table.c.probe_id).where(table.c.id.in_(chunk)))
        for row in rows:
            if row.probe_id != wanted[row.id]:
                raise IdConflictError(f"run id {row.id} is already stored for another probe")


def _check_measurements(
    conn: Connection, measurements: Sequence[Mapping[str, Any]], added: set[str]
) -> None:
    """A skipped measurement id must be the same run's measurement (a replay)."""
    skipped = {m["id"]: m["run_id"] for m in measurements if m["id"] not in added}
    table = schema.measurements
    for chunk in _chunks(sorted(skipped)):
        rows = conn.execute(select(table.c.id, table.c.run_id).where(table.c.id.in_(chunk)))
        for row in rows:
            if row.run_id != skipped[row.id]:
                raise IdConflictError(
                    f"measurement id {row.id} is already stored as part of another run"
                )


def _insert_new(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
    """Insert the rows whose primary key is not there yet; return the first key column of those
    inserted (RETURNING: never a count(*) of a table that holds millions of rows)."""
    if not rows:
        return []
    key = next(iter(table.primary_key.columns))
    stmt = insert_missing(conn, table).returning(key)
    return [row[0] for row in conn.execute(stmt, list(rows))]


def _copy_new(
    conn: Connection, tables: Sequence[tuple[Table, Sequence[Mapping[str, Any]]]]
) -> list[list[Any]]:
    """PostgreSQL: insert each table's rows whose primary key is not there yet; return, per
    table, the first key column of the rows inserted.

    COPY streams the rows, each batch's rows encoded once as COPY text (probe.store.pgcopy): a
    multi-row INSERT of a thousand measurements is a statement the driver parses for every
    batch, which took most of the ingest time. First straight into the tables, inside one
    savepoint: a batch seen for the first time (nearly every batch) is written once. When some
    rows are there already (a replay: the savepoint rolls back on the unique violation), the
    rows go to session-local staging tables (temporary, emptied at commit, so concurrent
    collectors never see each other's rows) and on with INSERT ... SELECT ... ON CONFLICT DO
    NOTHING RETURNING."""
    payloads = [(table, copy_payload(table, rows, conn.dialect)) for table, rows in tables if rows]
    driver = conn.connection.driver_connection
    assert driver is not None
    database_error = conn.dialect.loaded_dbapi.Error
    try:
        with driver.cursor() as cursor:
            try:
                # driver.transaction(): a SAVEPOINT inside the batch's transaction.
                with driver.transaction():
                    for table, payload in payloads:
                        with cursor.copy(copy_statement(table)) as copy:
                            copy.write(payload)
                return [[row[key] for row in rows] for key, rows in _keyed(tables)]
            except database_error as exc:
                if getattr(exc, "sqlstate", None) != _UNIQUE_VIOLATION:
                    raise
            added = {table.name: _copy_through_staging(cursor, table, p) for table, p in payloads}
    except database_error as exc:
        raise StoreError(f"the batch was not stored: {str(exc).strip()[:200]}") from exc
    return [added.get(table.name, []) for table, _ in tables]


def _keyed(
    tables: Sequence[tuple[Table, Sequence[Mapping[str, Any]]]],
) -> list[tuple[str, Sequence[Mapping[str, Any]]]]:
    return [(_first_key(table), rows) for table, rows in tables]


def _first_key(table: Table) -> str:
    return next(iter(table.primary_key.columns)).name


def _copy_through_staging(cursor: Any, table: Table, payload: bytes) -> list[Any]:
    staging = f"incoming_{table.name}"
    names = ", ".join(column.name for column in table.columns)
    keys = ", ".join(column.name for column in table.primary_key.columns)
    cursor.execute(
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {staging} (LIKE {table.name}) ON COMMIT DELETE ROWS"
    )
    with cursor.copy(copy_statement(table, into=staging)) as copy:
        copy.write(payload)
    cursor.execute(
        f"INSERT INTO {table.name} ({names}) SELECT {names} FROM {staging} "
        f"ON CONFLICT ({keys}) DO NOTHING RETURNING {_first_key(table)}"
    )
    return [found[0] for found in cursor.fetchall()]


# SQLSTATE unique_violation (PostgreSQL, Appendix A "Error Codes").
_UNIQUE_VIOLATION = "23505"


# -- the probe's outbox -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueuedRun:
    """A run the collector has not fully acknowledged, and how far its upload got."""

    run: Run
    measurements_through: str | None
    attempts: int
    last_attempt_at: datetime | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class Acknowledged:
    """What the collector acknowledged of one run in one batch."""

    run_id: str
    measurements_through: str | None
    done: bool


def queued_runs(store: Store, *, limit: int | None = None) -> list[QueuedRun]:
    """Finished (or abandoned) runs not yet fully acknowledged, oldest first."""
    runs, progress = schema.runs, schema.upload_progress
    uploadable = or_(
        runs.c.finished_at.is_not(None), runs.c.started_at < utcnow() - ABANDONED_RUN_AGE
    )
    stmt = (
        select(
            runs,
            progress.c.measurements_through,
            progress.c.attempts,
            progress.c.last_attempt_at,
            progress.c.last_error,
        )
        .outerjoin(progress, progress.c.run_id == runs.c.id)
        .where(uploadable, progress.c.done_at.is_(None))
        .order_by(runs.c.started_at, runs.c.id)
        .limit(limit)
    )
    with store._transaction() as conn:
        rows = conn.execute(stmt).all()
    width = len(runs.columns)
    return [
        QueuedRun(
            run=_run_from_row(row),
            measurements_through=row[width],
            attempts=int(row[width + 1] or 0),
            last_attempt_at=row[width + 2],
            last_error=row[width + 3],
        )
        for row in rows
    ]


def uploaded_runs(store: Store, run_ids: Collection[str]) -> set[str]:
    """Which of these runs the collector has fully acknowledged (`probe runs` shows it)."""
    table = schema.upload_progress
    if not run_ids:
        return set()
    stmt = select(table.c.run_id).where(
        table.c.run_id.in_(list(run_ids)), table.c.done_at.is_not(None)
    )
    with store._transaction() as conn:
        return set(conn.scalars(stmt))


def measurements_after(
    store: Store, run_id: str, after: str | None, limit: int
) -> list[Measurement]:
    """Up to `limit` measurements of a run with ids greater than `after`, in id order."""
    table = schema.measurements
    stmt = select(table).where(table.c.run_id == run_id)
    if after is not None:
        stmt = stmt.where(table.c.id > after)
    stmt = stmt.order_by(table.c.id).limit(limit)
    with store._transaction() as conn:
        return [_measurement_from_row(row) for row in conn.execute(stmt)]


def unacknowledged_measurements(store: Store) -> int:
    """Measurements of queued runs the collector has not acknowledged (for `--status`)."""
    runs, progress, table = schema.runs, schema.upload_progress, schema.measurements
    stmt = (
        select(func.count())
        .select_from(table.join(runs, runs.c.id == table.c.run_id))
        .outerjoin(progress, progress.c.run_id == runs.c.id)
        .where(
            progress.c.done_at.is_(None),
            or_(
                progress.c.measurements_through.is_(None),
                table.c.id > progress.c.measurements_through,
            ),
        )
    )
    with store._transaction() as conn:
        return int(conn.execute(stmt).scalar_one())


def acknowledge(store: Store, acks: Sequence[Acknowledged]) -> None:
    """Record what the collector acknowledged (one transaction for the whole batch)."""
    now = utcnow()
    with store._transaction(write=True) as conn:
        for ack in acks:
            values = {
                "measurements_through": ack.measurements_through,
                "done_at": now if ack.done else None,
                "last_attempt_at": now,
                "last_error": None,
            }
            _upsert_progress(conn, ack.run_id, values)


def record_failure(store: Store, run_ids: Iterable[str], error: str) -> None:
    """Note a failed attempt on these runs (they stay queued)."""
    now = utcnow()
    with store._transaction(write=True) as conn:
        for run_id in run_ids:
            _upsert_progress(conn, run_id, {"last_attempt_at": now, "last_error": error[:500]})


def _upsert_progress(conn: Connection, run_id: str, values: Mapping[str, object]) -> None:
    table = schema.upload_progress
    updated = conn.execute(
        table.update()
        .where(table.c.run_id == run_id)
        .values(attempts=table.c.attempts + 1, **values)
    ).rowcount
    if not updated:
        row: dict[str, object] = {
            "run_id": run_id,
            "measurements_through": None,
            "done_at": None,
            "attempts": 1,
            "last_attempt_at": None,
            "last_error": None,
        }
        row.update(values)
        conn.execute(table.insert(), row)
