"""A throwaway PostgreSQL server for tests: initdb in a temp dir, listen on 127.0.0.1, stop by PID.

PostgreSQL refuses to run as root, so when the tests run as root the server runs as `nobody`
(subprocess's user=/group=, so the PID we hold is the postmaster itself, not a wrapper). Durability
is switched off (fsync, synchronous_commit): the data dir is deleted at the end anyway.

`shared_server()` / `release_shared_server()` let several test modules share one server per
pytest session: the first user starts it, the last one stops it.

Binaries: PATH, then /usr/lib/postgresql/<version>/bin (Debian 12: package postgresql-15).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
SUPERUSER = "probe"


def find_binaries() -> Path | None:
    """The directory holding initdb and postgres, or None when PostgreSQL is not installed."""
    initdb = shutil.which("initdb")
    if initdb and shutil.which("postgres"):
        return Path(initdb).resolve().parent
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        path = Path(candidate)
        if (path / "initdb").exists() and (path / "postgres").exists():
            return path
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresServer:
    """One postmaster on 127.0.0.1:<free port>, trust auth, superuser `probe`."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = _free_port()
        self.tmpdir = Path(tempfile.mkdtemp(prefix="censorprobe-pg-"))
        self.datadir = self.tmpdir / "data"
        self.logfile = self.tmpdir / "postgres.log"
        self._process: subprocess.Popen[bytes] | None = None
        # Unprivileged identity when we are root; None means "run as ourselves".
        self._user: int | None = None
        self._group: int | None = None
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            self._user, self._group = nobody.pw_uid, nobody.pw_gid
            os.chown(self.tmpdir, nobody.pw_uid, nobody.pw_gid)

    def start(self) -> None:
        subprocess.run(
            [
                str(self.bindir / "initdb"),
                "--pgdata",
                str(self.datadir),
                "--username",
                SUPERUSER,
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--locale",
                "C",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            cwd=self.tmpdir,
            user=self._user,
            group=self._group,
            extra_groups=None if self._user is None else [],
        )
        with open(self.logfile, "wb") as log:
            self._process = subprocess.Popen(
                [
                    str(self.bindir / "postgres"),
                    "-D",
                    str(self.datadir),
                    "-p",
                    str(self.port),
                    "-k",
                    str(self.tmpdir),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.tmpdir,
                user=self._user,
                group=self._group,
                extra_groups=None if self._user is None else [],
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"postgres exited: {self.logfile.read_text(errors='replace')}")
            try:
                with psycopg.connect(self.admin_dsn(), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @property
    def pid(self) -> int:
        """The postmaster's process id (a benchmark reads its CPU time from /proc)."""
        if self._process is None:
            raise RuntimeError("the server is not running")
        return self._process.pid

    def admin_dsn(self, database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={database}"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        name = f"test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"'.encode())
        return self.url(name)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            # SIGINT to the postmaster's PID: PostgreSQL's "fast" shutdown.
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.tmpdir, ignore_errors=True)


_shared: PostgresServer | None = None
_users = 0


def shared_server() -> PostgresServer | None:
    """The session's server (started on first use), or None when PostgreSQL is not installed."""
    global _shared, _users
    if _shared is None:
        bindir = find_binaries()
        if bindir is None:
            return None
        server = PostgresServer(bindir)
        try:
            server.start()
        except BaseException:
            server.stop()
            raise
        _shared = server
    _users += 1
    return _shared


def release_shared_server() -> None:
    global _shared, _users
    _users -= 1
    if _users <= 0 and _shared is not None:
        server, _shared = _shared, None
        with contextlib.suppress(Exception):
            server.stop()
