"""Schema versions and the ordered steps that bring an older probe database up to date.

`meta.schema_version` records the version a database is at. A fresh database is created at the
newest version straight from `schema.py`; an older one runs each step N -> N+1 in order, all inside
the caller's transaction, so a failed step leaves the database exactly as it was. A database from a
newer version is refused rather than guessed at.

Steps are history: each is written as the plain SQL that version needed (portable between SQLite
and PostgreSQL), never in terms of `schema.py`, whose tables keep changing. To change the schema,
edit `schema.py` and append a step here; tests/test_store_migrations.py checks that a migrated
database and a fresh one end up with the same tables, columns and indexes.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, inspect, select, text

from probe.store import schema
from probe.store.meta import BASELINE_VERSION, SCHEMA_VERSION, judge_meta, refuse_foreign


@dataclass(frozen=True, slots=True)
class Migration:
    """One step: `apply` turns a database at `version - 1` into one at `version`."""

    version: int
    description: str
    apply: Callable[[Connection], None]


def _add_latest_status_index(conn: Connection) -> None:
    conn.execute(
        text(
            "CREATE INDEX ix_measurements_latest "
            "ON measurements (platform, target, layer, endpoint, started_at)"
        )
    )


def _add_verdict_tables(conn: Connection) -> None:
    # Timestamps as the UTCDateTime type stores them: fixed-width text on SQLite, timestamptz on
    # PostgreSQL (see schema.UTCDateTime).
    timestamp = "VARCHAR(32)" if conn.dialect.name == "sqlite" else "TIMESTAMP WITH TIME ZONE"
    conn.execute(
        text(
            "CREATE TABLE verdicts ("
            "run_id VARCHAR NOT NULL REFERENCES runs (id), "
            "platform VARCHAR NOT NULL, "
            "target VARCHAR NOT NULL, "
            "probe_id VARCHAR NOT NULL, "
            f"measured_at {timestamp} NOT NULL, "
            "asn BIGINT, "
            "country VARCHAR, "
            "status VARCHAR NOT NULL, "
            "technique VARCHAR, "
            "confidence VARCHAR, "
            "rule_id VARCHAR NOT NULL, "
            "rules_version VARCHAR NOT NULL, "
            "evidence TEXT NOT NULL, "
            "detail TEXT NOT NULL, "
            "PRIMARY KEY (run_id, platform, target))"
        )
    )
    conn.execute(text("CREATE INDEX ix_verdicts_measured_at ON verdicts (measured_at)"))
    conn.execute(
        text("CREATE INDEX ix_verdicts_platform_measured ON verdicts (platform, measured_at)")
    )
    conn.execute(
        text(
            "CREATE TABLE platform_summaries ("
            "run_id VARCHAR NOT NULL REFERENCES runs (id), "
            "platform VARCHAR NOT NULL, "
            "status VARCHAR NOT NULL, "
            "techniques TEXT NOT NULL, "
            "blocked BIGINT NOT NULL, "
            "total BIGINT NOT NULL, "
            "details TEXT NOT NULL, "
            "detail TEXT NOT NULL, "
            "PRIMARY KEY (run_id, platform))"
        )
    )


def _add_upload_tables(conn: Connection) -> None:
    timestamp = "VARCHAR(32)" if conn.dialect.name == "sqlite" else "TIMESTAMP WITH TIME ZONE"
    conn.execute(
        text(
            "CREATE TABLE upload_tokens ("
            "id VARCHAR NOT NULL, "
            "name VARCHAR NOT NULL, "
            "token_hash VARCHAR NOT NULL, "
            f"created_at {timestamp} NOT NULL, "
            f"revoked_at {timestamp}, "
            "PRIMARY KEY (id))"
        )
    )
    conn.execute(text("CREATE UNIQUE INDEX ux_upload_tokens_name ON upload_tokens (name)"))
    conn.execute(text("CREATE UNIQUE INDEX ux_upload_tokens_hash ON upload_tokens (token_hash)"))
    conn.execute(
        text(
            "CREATE TABLE probe_owners ("
            "probe_id VARCHAR NOT NULL, "
            "token_id VARCHAR NOT NULL REFERENCES upload_tokens (id), "
            f"claimed_at {timestamp} NOT NULL, "
            "PRIMARY KEY (probe_id))"
        )
    )
    conn.execute(
        text(
            "CREATE TABLE cross_verdicts ("
            "run_id VARCHAR NOT NULL REFERENCES runs (id), "
            "platform VARCHAR NOT NULL, "
            "target VARCHAR NOT NULL, "
            "probe_id VARCHAR NOT NULL, "
            f"measured_at {timestamp} NOT NULL, "
            "asn BIGINT, "
            "country VARCHAR, "
            "status VARCHAR NOT NULL, "
            "technique VARCHAR, "
            "confidence VARCHAR, "
            "rule_id VARCHAR NOT NULL, "
            "rules_version VARCHAR NOT NULL, "
            "evidence TEXT NOT NULL, "
            "controls TEXT NOT NULL, "
            "detail TEXT NOT NULL, "
            "PRIMARY KEY (run_id, platform, target))"
        )
    )
    conn.execute(text("CREATE INDEX ix_cross_verdicts_measured_at ON cross_verdicts (measured_at)"))
    conn.execute(
        text(
            "CREATE TABLE upload_progress ("
            "run_id VARCHAR NOT NULL REFERENCES runs (id), "
            "measurements_through VARCHAR, "
            f"done_at {timestamp}, "
            "attempts BIGINT NOT NULL, "
            f"last_attempt_at {timestamp}, "
            "last_error TEXT, "
            "PRIMARY KEY (run_id))"
        )
    )


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        version=2,
        description="index measurements by (platform, target, layer, endpoint, started_at) "
        "so that `probe report` finds the newest row per endpoint without a full scan",
        apply=_add_latest_status_index,
    ),
    Migration(
        version=3,
        description="verdicts and platform summaries, stored beside the measurements they "
        "rest on, with the rules version that decided them",
        apply=_add_verdict_tables,
    ),
    Migration(
        version=4,
        description="uploads: the collector's tokens (hashes only) and probe ownership, "
        "verdicts derived across networks, and the probe's upload progress per run",
        apply=_add_upload_tables,
    ),
)
if MIGRATIONS[-1].version != SCHEMA_VERSION:  # one of the two was changed without the other
    raise RuntimeError(
        f"probe.store.meta.SCHEMA_VERSION is {SCHEMA_VERSION}, the last migration step "
        f"{MIGRATIONS[-1].version}"
    )


def latest_version(steps: Sequence[Migration] | None = None) -> int:
    """The schema version this code writes."""
    steps = MIGRATIONS if steps is None else steps
    return steps[-1].version if steps else BASELINE_VERSION


def read_meta(conn: Connection) -> dict[str, str] | None:
    """The meta table as a dict, or None when there is no meta table."""
    if not inspect(conn).has_table(schema.meta.name):
        return None
    rows = conn.execute(select(schema.meta.c.key, schema.meta.c.value))
    return {key: value for key, value in rows}


def _set_meta(conn: Connection, key: str, value: str) -> None:
    updated = conn.execute(
        schema.meta.update().where(schema.meta.c.key == key).values(value=value)
    ).rowcount
    if not updated:
        conn.execute(schema.meta.insert().values(key=key, value=value))


def check(conn: Connection, location: str, steps: Sequence[Migration] | None = None) -> int | None:
    """The schema version of the database on `conn`, or None when it holds no tables yet; reads
    only, so a database it refuses is left as it was.

    Raises NotAProbeDatabaseError for a database that holds something else (other tables, no
    probe id) and SchemaTooNewError for one written by a newer version.
    """
    newest = latest_version(MIGRATIONS if steps is None else steps)
    found = read_meta(conn)
    if found is None:
        _refuse_foreign_tables(conn, location)
        return None
    return judge_meta(found, location, newest)


def read_probe_id(conn: Connection) -> str:
    """The probe id of a database `check` accepted."""
    return (read_meta(conn) or {})["probe_id"]


def prepare(conn: Connection, location: str, steps: Sequence[Migration] | None = None) -> str:
    """Create or upgrade the schema on `conn` (inside its transaction); return the probe_id.

    Refuses what `check` refuses, before anything is written.
    """
    steps = MIGRATIONS if steps is None else steps
    version = check(conn, location, steps)
    if version is None:
        schema.metadata.create_all(conn)
        probe_id = uuid.uuid4().hex  # random: a probe id must never identify the host
        _set_meta(conn, "schema_version", str(latest_version(steps)))
        _set_meta(conn, "probe_id", probe_id)
        return probe_id
    for step in steps:
        if step.version > version:
            if step.version != version + 1:
                raise RuntimeError(f"migration steps skip from {version} to {step.version}")
            step.apply(conn)
            version = step.version
            _set_meta(conn, "schema_version", str(version))
    return read_probe_id(conn)


def _refuse_foreign_tables(conn: Connection, location: str) -> None:
    """Never create our tables beside someone else's data.

    A SQLite file is one application's: any table there means the path is wrong. A PostgreSQL
    database may be shared, so only tables with our names (but no meta) are refused.
    """
    existing = set(inspect(conn).get_table_names())
    ours = {table.name for table in schema.metadata.sorted_tables}
    refuse_foreign(existing if conn.dialect.name == "sqlite" else existing & ours, location)
