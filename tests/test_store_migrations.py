"""Schema migrations on real SQLite files: a version 1 database written by hand (the shape the first
release created) is upgraded in place, keeps its data, and ends up like a fresh database; newer
databases are refused; a failing step leaves the file as it was."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, create_engine, inspect, text

from probe.model import Connectivity, Layer, Operation, TcpConnect
from probe.store import SchemaTooNewError, Store, StoreError, latest_version, migrations, schema
from probe.store.migrations import Migration
from tests.store_versions import (
    MEASUREMENT_ID,
    PROBE_ID,
    RUN_ID,
    meta_value,
    write_version_1,
)


def shape(url: str) -> dict[str, Any]:
    """Tables with their columns (name, nullable), indexes and foreign keys: what queries see."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            inspector = inspect(conn)
            return {
                table: {
                    "columns": [(c["name"], c["nullable"]) for c in inspector.get_columns(table)],
                    "indexes": sorted(
                        (i["name"], tuple(i["column_names"])) for i in inspector.get_indexes(table)
                    ),
                    "foreign_keys": [
                        (fk["constrained_columns"], fk["referred_table"])
                        for fk in inspector.get_foreign_keys(table)
                    ],
                }
                for table in sorted(inspector.get_table_names())
            }
    finally:
        engine.dispose()


def test_version_1_database_is_upgraded_to_the_latest_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    write_version_1(path)

    with Store.open(str(path)) as store:
        assert store.schema_version() == 4 == latest_version()
        assert list(store.verdicts()) == []
        assert store.probe_id() == PROBE_ID
        (run,) = store.runs()
        (measurement,) = store.measurements()
        assert store.latest_status() == [measurement]

    assert meta_value(path, "schema_version") == "4"
    assert run.id == RUN_ID
    assert run.started_at == datetime(2024, 11, 20, 9, 30, tzinfo=UTC)
    assert run.connectivity is Connectivity.OK
    assert run.network.asn == 58224 and run.network.vpn_suspected is False
    assert measurement.id == MEASUREMENT_ID
    assert measurement.layer is Layer.TCP
    assert measurement.failure == "generic_timeout_error"
    assert measurement.observation.failed_operation is Operation.CONNECT
    assert measurement.observation.started_at == datetime(
        2024, 11, 20, 9, 30, 1, 250000, tzinfo=UTC
    )
    assert measurement.observation.details == TcpConnect("149.154.175.50", 443)


def test_upgraded_database_has_the_same_shape_as_a_fresh_one(tmp_path: Path) -> None:
    upgraded, fresh = tmp_path / "v1.db", tmp_path / "fresh.db"
    write_version_1(upgraded)
    Store.open(str(upgraded)).close()
    Store.open(str(fresh)).close()

    upgraded_shape = shape(f"sqlite:///{upgraded}")
    assert upgraded_shape == shape(f"sqlite:///{fresh}")
    assert (
        "ix_measurements_latest",
        ("platform", "target", "layer", "endpoint", "started_at"),
    ) in (upgraded_shape["measurements"]["indexes"])


def test_database_from_a_newer_version_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    Store.open(str(path)).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.close()

    with pytest.raises(SchemaTooNewError) as raised:
        Store.open(str(path))
    assert str(raised.value) == (
        f"{path} was written by a newer censorprobe (schema version 99; this version reads up "
        f"to {latest_version()}): upgrade censorprobe to open it"
    )
    assert meta_value(path, "schema_version") == "99"


def test_failing_migration_step_leaves_the_database_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "probe.db"
    Store.open(str(path)).close()

    def half_done_step(conn: Connection) -> None:
        conn.execute(text("CREATE TABLE events (id VARCHAR PRIMARY KEY)"))
        conn.execute(text("ALTER TABLE measurements ADD COLUMN probe_id VARCHAR"))
        conn.execute(text("SELECT no_such_column FROM measurements"))  # fails mid-step

    broken = Migration(latest_version() + 1, "a step that fails half way", half_done_step)
    monkeypatch.setattr(migrations, "MIGRATIONS", (*migrations.MIGRATIONS, broken))

    with pytest.raises(StoreError, match=r"^cannot open .*probe\.db: no such column"):
        Store.open(str(path))

    monkeypatch.undo()
    assert meta_value(path, "schema_version") == str(latest_version())
    fresh = tmp_path / "fresh.db"
    Store.open(str(fresh)).close()
    # No events table, no new column.
    assert shape(f"sqlite:///{path}") == shape(f"sqlite:///{fresh}")


def test_meta_without_a_schema_version_is_not_a_probe_database(tmp_path: Path) -> None:
    path = tmp_path / "odd.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)")
    conn.close()
    with pytest.raises(StoreError, match=r"odd\.db is not a probe database \(meta.schema_version"):
        Store.open(str(path))


def write_version_3(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A version 1 file brought to version 3 by the steps of that release, with one verdict."""
    write_version_1(path)
    with monkeypatch.context() as patch:
        patch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:2])
        Store.open(str(path)).close()
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO verdicts VALUES (?, 'telegram', 'dc1', ?, "
            "'2024-11-20T09:30:00.000000+00:00', 58224, 'IR', 'inconclusive', NULL, NULL, "
            "'control.missing', '2025.4', ?, 'the target failed and no control measured it')",
            (RUN_ID, PROBE_ID, f'["{MEASUREMENT_ID}"]'),
        )
    conn.close()


def test_version_3_database_gains_the_upload_tables_and_keeps_its_verdicts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, fresh = tmp_path / "v3.db", tmp_path / "fresh.db"
    write_version_3(path, monkeypatch)
    assert meta_value(path, "schema_version") == "3"

    with Store.open(str(path)) as store:
        assert store.schema_version() == 4
        (verdict,) = store.verdicts()
        (run,) = store.runs()
    Store.open(str(fresh)).close()

    assert verdict.rule_id == "control.missing" and verdict.evidence == (MEASUREMENT_ID,)
    assert run.id == RUN_ID
    migrated = shape(f"sqlite:///{path}")
    assert migrated == shape(f"sqlite:///{fresh}")
    assert {"upload_tokens", "probe_owners", "cross_verdicts", "upload_progress"} <= set(migrated)
    assert ("ux_upload_tokens_hash", ("token_hash",)) in migrated["upload_tokens"]["indexes"]


def _columns(url: str, table: str) -> list[tuple[str, str, bool, int]]:
    """A table's columns as the database has them: name, type, nullable, primary-key position."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            columns = inspect(conn).get_columns(table)
            keys = inspect(conn).get_pk_constraint(table)["constrained_columns"]
            return [
                (c["name"], str(c["type"]), c["nullable"], keys.index(c["name"]) + 1)
                if c["name"] in keys
                else (c["name"], str(c["type"]), c["nullable"], 0)
                for c in columns
            ]
    finally:
        engine.dispose()


def test_migration_4_creates_the_cross_verdicts_table_the_schema_describes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, fresh = tmp_path / "v3.db", tmp_path / "fresh.db"
    write_version_3(path, monkeypatch)
    Store.open(str(path)).close()
    Store.open(str(fresh)).close()

    migrated = _columns(f"sqlite:///{path}", "cross_verdicts")
    assert migrated == _columns(f"sqlite:///{fresh}", "cross_verdicts")
    assert [name for name, *_ in migrated] == [c.name for c in schema.cross_verdicts.columns]
    # A cross verdict is a verdict row with the controls it rests on, before its detail.
    verdict_columns = _columns(f"sqlite:///{path}", "verdicts")
    assert [c for c in migrated if c[0] != "controls"] == verdict_columns
    assert migrated[-2] == ("controls", "TEXT", False, 0)
