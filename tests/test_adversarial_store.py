"""Nothing lost, nothing overwritten: the database against the commands that read it, outputs
aimed at it, files that are not what they claim, damaged pages, and merges of hostile files.
Real SQLite files, the real CLI (in-process, or as another user where permissions matter)."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from probe.outputs import OutputRefusedError, atomic_output
from probe.store import NotAProbeDatabaseError, SchemaTooNewError, Store, StoreError
from tests.cli import invoke
from tests.servers.dns_server import FakeNameserver
from tests.store_rows import make_measurement, make_run
from tests.stored_verdicts import small_spec, store_verdicts
from tests.synthetic import generate


def probe_db(path: Path, measurements: int = 3) -> Path:
    """A probe's database with one run and a few measurements, closed cleanly (WAL folded in)."""
    with Store.open(path) as store:
        run = make_run(store.probe_id())
        store.start_run(run)
        store.save_measurements(
            [make_measurement(run.id, target=f"t{i}") for i in range(measurements)]
        )
    return path


def fingerprint(path: Path) -> tuple[str, int, list[str]]:
    """The file's bytes, its modification time and what lies beside it."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest, path.stat().st_mtime_ns, sorted(p.name for p in path.parent.iterdir())


def tcp_config(folder: Path, port: int) -> Path:
    """A config measuring one TCP target on loopback `port`, no helper, no other platform."""
    catalog = folder / "catalog"
    catalog.mkdir(parents=True, exist_ok=True)
    (catalog / "lo.toml").write_text(
        f'platform = "lo"\n[[targets]]\nkind = "tcp"\nhost = "127.0.0.1"\nports = [{port}]\n'
    )
    config = folder / "config.toml"
    config.write_text(f'[probe]\nplatforms = ["lo"]\n[catalog]\ndir = "{catalog}"\n')
    return config


def one_line_error(code: int, err: str) -> None:
    assert code == 1, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


# -- outputs that would destroy the database ----------------------------------------------------


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return probe_db(tmp_path / "probe.db")


def _aliases(db: Path) -> Iterator[tuple[str, Path]]:
    yield "the same path", db
    symlink = db.with_name("link.csv")
    symlink.symlink_to(db)
    yield "a symlink", symlink
    hardlink = db.with_name("hard.csv")
    os.link(db, hardlink)
    yield "a hard link", hardlink
    yield "a relative path", Path(os.path.relpath(db))


@pytest.mark.parametrize("command", ["export-csv", "export-jsonl", "report-html"])
def test_an_output_naming_the_database_is_refused_and_the_database_survives(
    db: Path, command: str
) -> None:
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    for how, output in _aliases(db):
        if command == "report-html":
            args = ("report", "--html", str(output), "--db", str(db))
        else:
            args = ("export", f"--{command.split('-')[1]}", str(output), "--db", str(db))
        code, _, err = invoke(*args, consent=args[0] == "run")
        one_line_error(code, err)
        assert "is the database being read" in err, how
        assert hashlib.sha256(db.read_bytes()).hexdigest() == before, how
    with Store.open_readonly(db) as store:
        assert sum(1 for _ in store.measurements()) == 3


def test_an_output_naming_another_sqlite_file_is_refused(db: Path, tmp_path: Path) -> None:
    other = probe_db(tmp_path / "volunteer.db")
    before = fingerprint(other)
    for args in (
        ("export", "--csv", str(other), "--db", str(db)),
        ("report", "--html", str(other), "--db", str(db)),
    ):
        code, _, err = invoke(*args)
        one_line_error(code, err)
        assert "is a SQLite database: it is not overwritten" in err
    assert fingerprint(other)[:2] == before[:2]


def test_an_export_replaces_its_file_whole_and_keeps_a_symlink(db: Path, tmp_path: Path) -> None:
    real = tmp_path / "real.csv"
    real.write_text("old\n")
    link = tmp_path / "out.csv"
    link.symlink_to(real)
    code, _, err = invoke("export", "--csv", str(link), "--db", str(db))
    assert code == 0, err
    assert link.is_symlink() and real.read_text().count("\n") == 4  # header + 3 rows
    outputs = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("probe.db"))
    # No temporary file left; the export's schema goes beside it.
    assert outputs == ["datapackage.json", "out.csv", "real.csv"]


def test_a_failed_write_leaves_the_old_output_and_no_partial_file(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    out.write_text("the old report")
    with pytest.raises(RuntimeError), atomic_output(out) as handle:
        handle.write("half of a new report")
        raise RuntimeError("the disk filled up")
    assert out.read_text() == "the old report"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]
    with pytest.raises(KeyboardInterrupt), atomic_output(tmp_path / "new.csv") as handle:
        handle.write("a,b\n")
        raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_refusing_an_output_writes_nothing_at_all(db: Path) -> None:
    with pytest.raises(OutputRefusedError), atomic_output(db, db):
        raise AssertionError("the block must not run")
    assert sorted(p.name for p in db.parent.iterdir()) == ["probe.db"]


def test_a_datapackage_beside_the_export_that_is_the_database_is_refused(
    db: Path, tmp_path: Path
) -> None:
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    (tmp_path / "datapackage.json").symlink_to(db)
    code, _, err = invoke("export", "--csv", str(tmp_path / "out.csv"), "--db", str(db))
    one_line_error(code, err)
    assert "not a readable Data Package" in err
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before


@pytest.mark.parametrize("planted", [".datapackage.json.tmp", ".out.csv.tmp"])
def test_a_planted_temporary_file_name_cannot_redirect_an_export_into_the_database(
    db: Path, tmp_path: Path, planted: str
) -> None:
    # In a shared folder (/tmp) anyone can put a symlink where a predictable temporary name
    # would be: writing through it replaced the database with the export's descriptor.
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    (tmp_path / planted).symlink_to(db)
    code, _, err = invoke("export", "--csv", str(tmp_path / "out.csv"), "--db", str(db))
    assert code == 0, err
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert (tmp_path / planted).is_symlink()  # left as it was
    assert json.loads((tmp_path / "datapackage.json").read_text())["resources"]


# -- readers that write ------------------------------------------------------------------------


def test_a_mistyped_db_is_an_error_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "typo" / "sub" / "prboe.db"
    for args in (
        ("report",),
        ("export", "--csv", str(tmp_path / "out.csv")),
        ("export", "--what", "verdicts", "--jsonl", "-"),
    ):
        code, _, err = invoke(*args, "--db", str(missing), consent=args[0] == "run")
        one_line_error(code, err)
        assert f"no probe database at {missing}" in err
    assert list(tmp_path.iterdir()) == []


def _foreign(path: Path) -> Path:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE moz_places (id INTEGER PRIMARY KEY, url TEXT)")
    conn.close()
    return path


def _newer(path: Path) -> Path:
    probe_db(path)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=DELETE")
        conn.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    conn.close()
    return path


def _no_probe_id(path: Path) -> Path:
    probe_db(path)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=DELETE")
        conn.execute("DELETE FROM meta WHERE key = 'probe_id'")
    conn.close()
    return path


def _text(path: Path) -> Path:
    path.write_text("x")
    return path


def _empty_sqlite(path: Path) -> Path:
    sqlite3.connect(path).close()
    path.write_bytes(b"")
    return path


@pytest.mark.parametrize(
    ("make", "error", "says"),
    [
        (_foreign, NotAProbeDatabaseError, "holds other tables: moz_places"),
        (_newer, SchemaTooNewError, "written by a newer censorprobe"),
        (_no_probe_id, NotAProbeDatabaseError, "no probe_id in meta"),
        (_text, NotAProbeDatabaseError, "file is not a database"),
    ],
    ids=["foreign", "newer-schema", "no-probe-id", "one-byte-text"],
)
def test_a_refused_file_is_left_byte_identical_by_readers_and_writers(
    tmp_path: Path, make: object, error: type[StoreError], says: str
) -> None:
    assert callable(make)
    path = make(tmp_path / "some.db")
    config = tcp_config(tmp_path / "cfg", 9)
    before = fingerprint(path)
    for opener in (Store.open, Store.open_readonly):
        with pytest.raises(error, match=says):
            opener(path)
        assert fingerprint(path) == before, opener
    for args in (("report",), ("export", "--csv", "-"), ("run", "--config", str(config))):
        code, _, err = invoke(*args, "--db", str(path), consent=args[0] == "run")
        assert code != 0 and says in err and "Traceback" not in err, (args, err)
        assert fingerprint(path) == before, args
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() != ("wal",)


def test_an_empty_file_is_no_database_for_readers(tmp_path: Path) -> None:
    path = _empty_sqlite(tmp_path / "empty.db")
    with pytest.raises(NotAProbeDatabaseError, match="the file is empty"):
        Store.open_readonly(path)
    assert path.read_bytes() == b""


def test_an_older_schema_is_not_migrated_by_a_reader(tmp_path: Path) -> None:
    from tests.store_versions import write_version_1

    old = tmp_path / "v1.db"
    write_version_1(old)
    before = fingerprint(old)
    code, _, err = invoke("report", "--db", str(old))
    one_line_error(code, err)
    assert "schema version 1" in err and "probe merge" in err
    assert fingerprint(old) == before


def _holding_the_write_lock(path: Path) -> subprocess.Popen[str]:
    """A second process (a sqlite3 shell, a backup tool) that holds BEGIN IMMEDIATE until its
    stdin closes; returns once the lock is taken."""
    code = (
        "import sqlite3, sys\n"
        f"conn = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
        "conn.execute('BEGIN IMMEDIATE')\n"
        "print('locked', flush=True)\n"
        "sys.stdin.read()\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
    return holder


def _release(holder: subprocess.Popen[str]) -> None:
    if holder.stdin is not None:
        holder.stdin.close()
    holder.wait(timeout=30)


def test_readers_do_not_wait_for_another_process_holding_the_write_lock(db: Path) -> None:
    holder = _holding_the_write_lock(db)
    try:
        code, out, err = invoke("export", "--csv", "-", "--db", str(db))
        assert code == 0, err
        assert out.count("\n") == 4
        code, out, err = invoke("report", "--db", str(db))
        assert code == 0, err
    finally:
        _release(holder)


def _on_read_only_media(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m probe ARGS` with `folder` mounted read-only (a bind mount in a private mount
    namespace of its own: even root gets EROFS there, as from a CD or a write-protected stick)."""
    script = 'mount --bind -o ro "$0" "$0" && exec "$@"'
    return subprocess.run(
        [
            "unshare",
            "--mount",
            "sh",
            "-c",
            script,
            str(folder),
            sys.executable,
            "-m",
            "probe",
            *args,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=120,
    )


def test_report_and_export_read_a_database_on_read_only_media(tmp_path: Path) -> None:
    folder = tmp_path / "stick"
    folder.mkdir()
    path = probe_db(folder / "probe.db")  # WAL mode, closed cleanly: no -wal, no -shm beside it
    path.chmod(0o444)
    before = fingerprint(path)
    done = _on_read_only_media(folder, "export", "--csv", "-", "--db", str(path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 4 and "exported 3 measurements" in done.stderr
    done = _on_read_only_media(folder, "report", "--db", str(path))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    # The mount is read-only indeed: a writer is refused there, in one line.
    done = _on_read_only_media(folder, "merge", str(path), "--into", str(folder / "all.db"))
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"cannot open {folder / 'all.db'}" in done.stderr, done.stderr
    assert fingerprint(path) == before


# -- damaged databases and hostile files given to merge -----------------------------------------


def _damage(path: Path) -> None:
    """Overwrite b-tree pages mid-file (the header page survives)."""
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 6 * page
    data[3 * page : 6 * page] = b"\xa5" * (3 * page)
    path.write_bytes(bytes(data))


def test_a_run_into_a_database_with_damaged_pages_is_refused_before_measuring(
    tmp_path: Path,
) -> None:
    path = probe_db(tmp_path / "probe.db", measurements=400)
    _damage(path)
    before = fingerprint(path)
    # The one target is a real listener: a run that measured would connect to it.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        config = tcp_config(tmp_path, listener.getsockname()[1])
        code, _, err = invoke("run", "--config", str(config), "--db", str(path), consent=True)
        with pytest.raises(BlockingIOError):
            listener.accept()
    assert code == 1 and "Traceback" not in err
    assert (
        err.strip().splitlines()[-1]
        == f"error: {path} is damaged (database disk image is malformed)"
    )
    assert fingerprint(path)[:2] == before[:2]


def test_a_run_into_a_damaged_database_named_by_a_sqlite_url_is_refused_untouched(
    tmp_path: Path,
) -> None:
    """The same damaged file, as --db sqlite:///PATH: the pre-traffic file check reads paths
    only, so the store's own page check must still run when it opens the URL, and the file is
    left as it was."""
    path = probe_db(tmp_path / "probe.db", measurements=400)
    _damage(path)
    before = fingerprint(path)
    # Traffic may start before the store has opened the URL: its DNS stays on loopback.
    with socket.socket() as listener, FakeNameserver({}) as ns:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        config = tcp_config(tmp_path, listener.getsockname()[1])
        config.write_text(config.read_text() + f'[dns]\nresolvers = ["{ns.udp_spec}"]\n')
        url = f"sqlite:///{path}"
        code, _, err = invoke("run", "--config", str(config), "--db", url, consent=True)
    assert code == 1 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith(f"error: {url} is damaged ("), err
    assert fingerprint(path)[:2] == before[:2]


@pytest.mark.parametrize(
    "make",
    [_text, _empty_sqlite, lambda p: (sqlite3.connect(p).execute("VACUUM"), p)[1]],
    ids=["one-byte-text", "empty-file", "sqlite-without-tables"],
)
def test_merge_refuses_a_source_that_is_not_a_probe_database(
    db: Path, tmp_path: Path, make: object
) -> None:
    assert callable(make)
    source = make(tmp_path / "volunteer.db")
    dest = tmp_path / "all.db"
    before = fingerprint(source)
    code, _, err = invoke("merge", str(db), str(source), "--into", str(dest))
    one_line_error(code, err)
    assert f"{source} is not a probe database" in err
    assert not dest.exists() and fingerprint(source)[:2] == before[:2]


def test_merge_reads_a_source_another_process_is_writing_to(db: Path, tmp_path: Path) -> None:
    """A source a probe holds open (its write lock even): read through SQLite's backup, as one
    consistent snapshot, and left untouched."""
    holder = _holding_the_write_lock(db)
    try:
        before = hashlib.sha256(db.read_bytes()).hexdigest()
        code, out, err = invoke("merge", str(db), "--into", str(tmp_path / "all.db"))
        assert code == 0, err
        assert "measurements: 3 new of 3" in out
        assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    finally:
        _release(holder)


# -- hostile rows in a volunteer's database ------------------------------------------------------

ONE = " WHERE target = 't1'"
HOSTILE_ROWS = {
    "details-not-json": ("measurements", "UPDATE measurements SET details = '{not json'" + ONE),
    "details-not-codec": ("measurements", "UPDATE measurements SET details = '{\"v\": 9}'" + ONE),
    "unknown-layer": ("measurements", "UPDATE measurements SET layer = 'pigeon'" + ONE),
    "unknown-operation": ("measurements", "UPDATE measurements SET failed_operation = 'x'" + ONE),
    "bad-timestamp": ("measurements", "UPDATE measurements SET started_at = 'yesterday'" + ONE),
    "unknown-connectivity": ("runs", "UPDATE runs SET connectivity = 'telepathy'"),
    # SQLite keeps a value of any type in any column: what a hand-edited or hostile file holds.
    "run-asn-text": ("runs", "UPDATE runs SET asn = 'AS58224x'"),
    "run-resolver-asn-real": ("runs", "UPDATE runs SET resolver_asn = 3.5"),
    "run-country-blob": ("runs", "UPDATE runs SET country = x'4952'"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_ROWS))
def test_a_hostile_row_is_a_one_line_error_naming_it_in_report_export_and_merge(
    tmp_path: Path, case: str
) -> None:
    table, update = HOSTILE_ROWS[case]
    path = probe_db(tmp_path / "volunteer.db")
    with sqlite3.connect(path) as conn:
        (bad_id,) = conn.execute(
            "SELECT id FROM measurements WHERE target = 't1'"
            if table == "measurements"
            else "SELECT id FROM runs"
        ).fetchone()
        conn.execute(update)
    conn.close()
    dest = tmp_path / "all.db"
    # The report reads the verdicts and the newest measurements, not a run's connectivity.
    report = [("report", "--db", str(path))] if table == "measurements" else []
    for args in (
        *report,
        ("export", "--csv", str(tmp_path / "out.csv"), "--db", str(path)),
        ("export", "--jsonl", "-", "--db", str(path)),
        ("merge", str(path), "--into", str(dest)),
    ):
        code, _, err = invoke(*args)
        one_line_error(code, err)
        assert "does not parse" in err, (args, err)
        assert bad_id in err, (args, err)  # the row, named (a bad timestamp too)
        assert "source-0.db" not in err  # never merge's temporary copy
    assert not (tmp_path / "out.csv").exists()  # no partial export either
    with Store.open_readonly(dest) as merged:  # the destination took nothing of the source
        assert list(merged.runs()) == []


VERDICT = " WHERE target = 'x.com' AND run_id = (SELECT min(run_id) FROM verdicts)"
HOSTILE_VERDICT_ROWS = {
    "verdict-unknown-status": "UPDATE verdicts SET status = 'pigeon'" + VERDICT,
    "verdict-evidence-not-json": "UPDATE verdicts SET evidence = '[not json'" + VERDICT,
    "verdict-bad-timestamp": "UPDATE verdicts SET measured_at = 'yesterday'" + VERDICT,
    # A value of another type (SQLite keeps any that its column's affinity does not convert):
    # a text AS number sorted beside integer ones crashed the report with a TypeError.
    "verdict-asn-text": "UPDATE verdicts SET asn = 'AS58224x'" + VERDICT,
    "verdict-asn-real": "UPDATE verdicts SET asn = 58224.5" + VERDICT,
    "verdict-country-blob": "UPDATE verdicts SET country = x'4952'" + VERDICT,
}
# Values of another type in columns the report does not read: every command that reads them
# refuses the row (the report may go on without them).
HOSTILE_VERDICT_VALUES = {
    "verdict-detail-blob": "UPDATE verdicts SET detail = x'00ff'" + VERDICT,
    "verdict-technique-blob": "UPDATE verdicts SET technique = x'7463'" + VERDICT,
    "verdict-evidence-numbers": "UPDATE verdicts SET evidence = '[1, 2]'" + VERDICT,
    "verdict-rule-blob": "UPDATE verdicts SET rule_id = x'6f6b'" + VERDICT,
}


def _verdicts_db_with(tmp_path: Path, update: str) -> tuple[Path, str]:
    """A database of 120 verdicts with `update` applied, and the run id it names."""
    path = tmp_path / "volunteer.db"
    with Store.open(path) as store:
        store_verdicts(store, list(generate(small_spec(), seed=3).verdicts)[:120])
    with sqlite3.connect(path) as conn:
        (run_id,) = conn.execute("SELECT min(run_id) FROM verdicts").fetchone()
        conn.execute(update)
    conn.close()
    return path, run_id


@pytest.mark.parametrize("case", sorted(HOSTILE_VERDICT_ROWS))
def test_a_hostile_verdict_row_is_a_one_line_error_naming_it_in_report_export_and_merge(
    tmp_path: Path, case: str
) -> None:
    path, run_id = _verdicts_db_with(tmp_path, HOSTILE_VERDICT_ROWS[case])
    dest = tmp_path / "all.db"
    for args in (
        ("report", "--db", str(path)),
        ("export", "--what", "verdicts", "--csv", str(tmp_path / "out.csv"), "--db", str(path)),
        ("export", "--what", "events", "--jsonl", "-", "--db", str(path)),
        ("merge", str(path), "--into", str(dest)),
    ):
        code, _, err = invoke(*args)
        one_line_error(code, err)
        assert "verdicts row" in err and "does not parse" in err, (args, err)
        assert run_id in err and "'x.com'" in err, (args, err)
    assert not (tmp_path / "out.csv").exists()
    with Store.open_readonly(dest) as merged:
        assert list(merged.runs()) == []


@pytest.mark.parametrize("case", sorted(HOSTILE_VERDICT_VALUES))
def test_a_verdict_value_of_another_type_is_refused_by_every_command_that_reads_it(
    tmp_path: Path, case: str
) -> None:
    path, run_id = _verdicts_db_with(tmp_path, HOSTILE_VERDICT_VALUES[case])
    code, _, err = invoke("report", "--db", str(path))
    assert "Traceback" not in err and code in (0, 1), err
    for args in (
        ("export", "--what", "verdicts", "--csv", str(tmp_path / "out.csv"), "--db", str(path)),
        ("export", "--what", "verdicts", "--jsonl", "-", "--db", str(path)),
        ("merge", str(path), "--into", str(tmp_path / "all.db")),
    ):
        code, _, err = invoke(*args)
        one_line_error(code, err)
        assert "verdicts row" in err and run_id in err and "'x.com'" in err, (args, err)
    assert not (tmp_path / "out.csv").exists()


def test_a_run_with_a_bad_timestamp_is_a_one_line_error_naming_it(tmp_path: Path) -> None:
    path = probe_db(tmp_path / "volunteer.db")
    with sqlite3.connect(path) as conn:
        (run_id,) = conn.execute("SELECT id FROM runs").fetchone()
        conn.execute("UPDATE runs SET started_at = '2024-13-45T99:00:00'")
    conn.close()
    for args in (
        ("export", "--what", "runs", "--csv", "-", "--db", str(path)),
        ("export", "--csv", "-", "--db", str(path)),
        ("merge", str(path), "--into", str(tmp_path / "all.db")),
    ):
        code, _, err = invoke(*args)
        one_line_error(code, err)
        assert f"runs row (id {run_id!r})" in err and "started_at" in err, (args, err)
