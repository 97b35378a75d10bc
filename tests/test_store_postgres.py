"""The store on a real PostgreSQL server (started by the test, on 127.0.0.1): what differs from
SQLite. The shared round-trip tests in test_store.py also run here through their `postgresql`
parameter."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from sqlalchemy.engine import make_url

from probe.model import Layer, Operation
from probe.store import Store, latest_version
from tests.servers.postgres import PostgresServer
from tests.store_rows import T0, TEHRAN, make_measurement, make_run

pytestmark = pytest.mark.postgres

PROBE_ID = "0123456789abcdef0123456789abcdef"
RUN_ID = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

# The PostgreSQL database version 1 of censorprobe created, as SQL, with one run and measurement.
VERSION_1_POSTGRES = f"""
CREATE TABLE meta (key VARCHAR NOT NULL, value VARCHAR NOT NULL, PRIMARY KEY (key));
CREATE TABLE runs (
    id VARCHAR NOT NULL, probe_id VARCHAR NOT NULL, started_at TIMESTAMP WITH TIME ZONE NOT NULL,
    finished_at TIMESTAMP WITH TIME ZONE, software_version VARCHAR NOT NULL,
    config_digest VARCHAR NOT NULL, connectivity VARCHAR NOT NULL, interrupted BOOLEAN NOT NULL,
    asn BIGINT, as_name VARCHAR, country VARCHAR, resolver_asn BIGINT, resolver_as_name VARCHAR,
    resolver_country VARCHAR, vpn_suspected BOOLEAN, network_source VARCHAR NOT NULL,
    PRIMARY KEY (id)
);
CREATE INDEX ix_runs_started_at ON runs (started_at);
CREATE TABLE measurements (
    id VARCHAR NOT NULL, run_id VARCHAR NOT NULL REFERENCES runs (id), platform VARCHAR NOT NULL,
    target VARCHAR NOT NULL, endpoint VARCHAR NOT NULL, layer VARCHAR NOT NULL,
    started_at TIMESTAMP WITH TIME ZONE NOT NULL, duration_ms FLOAT NOT NULL, failure VARCHAR,
    failed_operation VARCHAR, details TEXT NOT NULL, PRIMARY KEY (id)
);
CREATE INDEX ix_measurements_run_started ON measurements (run_id, started_at);
CREATE INDEX ix_measurements_started_at ON measurements (started_at);
CREATE INDEX ix_measurements_platform_started ON measurements (platform, started_at);
INSERT INTO meta VALUES ('schema_version', '1'), ('probe_id', '{PROBE_ID}');
INSERT INTO runs VALUES ('{RUN_ID}', '{PROBE_ID}', '2024-11-20 13:00:00+03:30', NULL, '0.1.0',
    'sha256:abc', 'unknown', false, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'unknown');
INSERT INTO measurements VALUES ('bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', '{RUN_ID}', 'telegram', 'dc1',
    '149.154.175.50:443', 'tcp', '2024-11-20 09:30:01.25+00', 5000.0, 'generic_timeout_error',
    'connect', '{{"address": "149.154.175.50", "port": 443}}');
"""


@pytest.fixture
def database_url(postgres_server: PostgresServer) -> str:
    return postgres_server.create_database()


def libpq_dsn(url: str) -> str:
    parsed = make_url(url)
    return f"host={parsed.host} port={parsed.port} user={parsed.username} dbname={parsed.database}"


def test_version_1_postgres_database_is_upgraded_and_keeps_its_data(database_url: str) -> None:
    with psycopg.connect(libpq_dsn(database_url), autocommit=True) as conn:
        conn.execute(VERSION_1_POSTGRES.encode())

    with Store.open(database_url) as store:
        assert store.schema_version() == latest_version() == 4
        assert list(store.verdicts()) == []
        assert store.probe_id() == PROBE_ID
        (run,) = store.runs()
        (measurement,) = store.measurements()

    with psycopg.connect(libpq_dsn(database_url)) as conn:
        row = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_measurements_latest'"
        ).fetchone()
    assert row is not None and "(platform, target, layer, endpoint, started_at)" in row[0]
    assert run.id == RUN_ID and run.started_at == datetime(2024, 11, 20, 9, 30, tzinfo=UTC)
    assert run.started_at.tzinfo is UTC
    assert measurement.observation.started_at == datetime(
        2024, 11, 20, 9, 30, 1, 250000, tzinfo=UTC
    )
    assert measurement.layer is Layer.TCP
    assert measurement.observation.failed_operation is Operation.CONNECT


def test_plain_postgresql_url_uses_the_installed_psycopg_driver(database_url: str) -> None:
    plain = database_url.replace("postgresql+psycopg://", "postgresql://")
    with Store.open(plain) as store:
        assert store.location == database_url
        assert store.schema_version() == latest_version()


def test_server_time_zone_does_not_shift_stored_timestamps(database_url: str) -> None:
    name = make_url(database_url).database
    with psycopg.connect(libpq_dsn(database_url), autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE \"{name}\" SET timezone TO 'Asia/Tehran'".encode())

    with Store.open(database_url) as store:
        run = make_run(store.probe_id())
        store.start_run(run)
        store.save_measurements([make_measurement(run.id, started_at=T0)])
        (measurement,) = store.measurements()
        (windowed,) = store.measurements(
            since=T0.astimezone(TEHRAN), until=T0 + timedelta(seconds=1)
        )

    assert measurement.observation.started_at == T0
    assert measurement.observation.started_at.tzinfo is UTC
    assert windowed.id == measurement.id
    with psycopg.connect(libpq_dsn(database_url)) as conn:
        row = conn.execute("SELECT started_at::text FROM measurements").fetchone()
    assert row == ("2024-11-20 13:00:00+03:30",)  # the session zone really was Tehran


def test_probes_opening_a_fresh_database_at_once_agree_on_its_probe_id(database_url: str) -> None:
    start = threading.Barrier(4)
    probe_ids: list[str] = []
    errors: list[BaseException] = []

    def open_store() -> None:
        start.wait()
        try:
            with Store.open(database_url) as store:
                probe_ids.append(store.probe_id())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert len(probe_ids) == 4 and len(set(probe_ids)) == 1


def test_measurements_are_read_through_a_server_side_cursor(database_url: str) -> None:
    with Store.open(database_url) as store:
        run = make_run(store.probe_id())
        store.start_run(run)
        store.save_measurements(
            [make_measurement(run.id, started_at=T0 + timedelta(seconds=i)) for i in range(3000)]
        )
        stream = store.measurements()
        next(stream)  # the first chunk is fetched; the rest waits on the server
        with psycopg.connect(libpq_dsn(database_url)) as conn:
            queries = [
                row[0]
                for row in conn.execute(
                    "SELECT query FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ]
        remaining = sum(1 for _ in stream)
    assert remaining == 2999
    assert any(query.startswith("FETCH FORWARD") for query in queries), queries
