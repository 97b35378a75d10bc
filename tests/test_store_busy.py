"""Nothing lost under a busy or refusing database: a real second process holds the SQLite write
lock longer than the store's busy timeout while `probe run` measures, and a database refuses
some rows (as SQLite refuses an oversized one). The run's writes happen off the event loop,
refused batches are retried, and what could not be stored is said, with exit status 5."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from probe.store import Store
from probe.store.sqlite_file import SQLITE_BUSY_TIMEOUT_S
from tests.sites import Site

RUN = [sys.executable, "-m", "probe", "run", "--i-understand-the-risks", "--json"]

# Waits for the run's row, then holds the write lock (BEGIN IMMEDIATE, as a sqlite3 shell, a
# backup or `probe merge --into` would) for longer than the store's busy timeout.
HOLDER = """
import sqlite3, sys, time
path, hold = sys.argv[1], float(sys.argv[2])
while True:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            if conn.execute("select count(*) from runs").fetchone()[0]:
                break
    except sqlite3.Error:
        pass
    time.sleep(0.01)
conn = sqlite3.connect(path, isolation_level=None, timeout=60)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(hold)
conn.execute("COMMIT")
print("released", flush=True)
"""


def test_a_write_lock_held_past_the_busy_timeout_loses_nothing_and_freezes_no_check(
    site: Site,
    tmp_path: Path,
) -> None:
    db = tmp_path / "probe.db"
    Store.open(db).close()
    hold = SQLITE_BUSY_TIMEOUT_S + 5
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db), str(hold)], stdout=subprocess.PIPE, text=True
    )
    try:
        done = subprocess.run(
            [*RUN, "--config", str(site.config), "--db", str(db)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        out, _ = holder.communicate(timeout=120)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert out == "locked\nreleased\n"  # the lock was really held while the run went on
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["unsaved_measurements"] == 0
    with sqlite3.connect(db) as conn:
        stored = conn.execute("select count(*) from measurements").fetchone()[0]
        timeouts = conn.execute(
            "select count(*) from measurements where failure = 'generic_timeout_error'"
        ).fetchone()[0]
    assert stored == document["measurements"] > 0
    assert timeouts == 0  # no check froze behind the blocked write
    verdicts = {v["target"]: v["status"] for v in document["verdicts"]}
    assert verdicts[f"https://ok.lo.test:{site.https_port}/"] == "ok"


def test_rows_the_database_refuses_are_said_and_the_run_exits_5_keeping_the_rest(
    site: Site,
    tmp_path: Path,
) -> None:
    db = tmp_path / "probe.db"
    Store.open(db).close()
    with sqlite3.connect(db) as conn:
        # SQLite's own refusal of an oversized row (SQLITE_TOOBIG), for the TLS rows only.
        conn.execute(
            "CREATE TRIGGER too_big BEFORE INSERT ON measurements WHEN NEW.layer = 'tls' "
            "BEGIN SELECT RAISE(ABORT, 'string or blob too big'); END"
        )
    conn.close()
    done = subprocess.run(
        [*RUN, "--config", str(site.config), "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 5, done.stderr
    assert "Traceback" not in done.stderr
    document = json.loads(done.stdout)
    unsaved = document["unsaved_measurements"]
    assert unsaved > 0
    assert f"{unsaved} measurements of run {document['run_id']} could not be stored" in done.stderr
    assert "string or blob too big" in done.stderr
    with sqlite3.connect(db) as conn:
        layers = {row[0] for row in conn.execute("select layer from measurements")}
        stored = conn.execute("select count(*) from measurements").fetchone()[0]
    assert stored == document["measurements"] > 0
    assert "tls" not in layers and {"dns", "tcp", "http"} <= layers  # the rest is all there
