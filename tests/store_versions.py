"""Databases as older versions of censorprobe left them (schema version 1, SQLite), for the
migration tests and the merge tests that must read them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

PROBE_ID = "0123456789abcdef0123456789abcdef"
RUN_ID = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
MEASUREMENT_ID = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

# The SQLite database version 1 of censorprobe created, as SQL, with one run and one measurement.
VERSION_1_SQLITE = f"""
CREATE TABLE meta (key VARCHAR NOT NULL, value VARCHAR NOT NULL, PRIMARY KEY (key));
CREATE TABLE runs (
    id VARCHAR NOT NULL, probe_id VARCHAR NOT NULL, started_at VARCHAR(32) NOT NULL,
    finished_at VARCHAR(32), software_version VARCHAR NOT NULL, config_digest VARCHAR NOT NULL,
    connectivity VARCHAR NOT NULL, interrupted BOOLEAN NOT NULL, asn BIGINT, as_name VARCHAR,
    country VARCHAR, resolver_asn BIGINT, resolver_as_name VARCHAR, resolver_country VARCHAR,
    vpn_suspected BOOLEAN, network_source VARCHAR NOT NULL, PRIMARY KEY (id)
);
CREATE INDEX ix_runs_started_at ON runs (started_at);
CREATE TABLE measurements (
    id VARCHAR NOT NULL, run_id VARCHAR NOT NULL, platform VARCHAR NOT NULL,
    target VARCHAR NOT NULL, endpoint VARCHAR NOT NULL, layer VARCHAR NOT NULL,
    started_at VARCHAR(32) NOT NULL, duration_ms FLOAT NOT NULL, failure VARCHAR,
    failed_operation VARCHAR, details TEXT NOT NULL, PRIMARY KEY (id),
    FOREIGN KEY(run_id) REFERENCES runs (id)
);
CREATE INDEX ix_measurements_run_started ON measurements (run_id, started_at);
CREATE INDEX ix_measurements_started_at ON measurements (started_at);
CREATE INDEX ix_measurements_platform_started ON measurements (platform, started_at);
INSERT INTO meta VALUES ('schema_version', '1'), ('probe_id', '{PROBE_ID}');
INSERT INTO runs VALUES ('{RUN_ID}', '{PROBE_ID}', '2024-11-20T09:30:00.000000+00:00',
    '2024-11-20T09:32:00.000000+00:00', '0.1.0', 'sha256:abc', 'ok', 0, 58224, 'TCI', 'IR',
    NULL, NULL, NULL, 0, 'helper');
INSERT INTO measurements VALUES ('{MEASUREMENT_ID}', '{RUN_ID}', 'telegram', 'dc1',
    '149.154.175.50:443', 'tcp', '2024-11-20T09:30:01.250000+00:00', 5000.0,
    'generic_timeout_error', 'connect', '{{"address": "149.154.175.50", "port": 443}}');
"""


def write_version_1(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.executescript(VERSION_1_SQLITE)
    conn.close()


def meta_value(path: Path, key: str) -> str:
    with sqlite3.connect(path) as conn:
        (value,) = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    conn.close()
    return str(value)
