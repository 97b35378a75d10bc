"""The run lock: one probe run at a time per user, so a scheduled run and a manual one never
measure side by side (they would share the uplink and skew each other's timings).

The lock is an flock(2) on a small file holding the holder's PID, host and start time. The kernel
releases an flock when its holder dies, however it dies, so a crashed run can never wedge the
schedule: the next run takes the lock over and says it did. The PID and time in the file are only
for the message; the flock alone decides. The lock file lives in the user's state directory, not
in $XDG_RUNTIME_DIR, because cron jobs run without that variable and must find the same file.
"""

from __future__ import annotations

import fcntl
import os
import socket
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType

import platformdirs

from probe.config import APP_NAME
from probe.model import utcnow


def default_lock_path() -> Path:
    """The per-user lock file (the user state dir: ~/.local/state/censorprobe/run.lock)."""
    return Path(platformdirs.user_state_dir(APP_NAME)) / "run.lock"


@dataclass(frozen=True, slots=True)
class LockHolder:
    """Who holds (or held) the lock, as its file says."""

    pid: int | None
    host: str | None
    started_at: datetime | None

    def describe(self) -> str:
        pid = "pid unknown" if self.pid is None else f"pid {self.pid}"
        started = (
            f"started {self.started_at.isoformat(timespec='seconds')}"
            if self.started_at
            else "start time unknown"
        )
        host = f" on {self.host}" if self.host and self.host != socket.gethostname() else ""
        return f"{pid}{host}, {started}"


class RunInProgressError(RuntimeError):
    """Another probe run holds the lock."""

    def __init__(self, holder: LockHolder) -> None:
        self.holder = holder
        super().__init__(f"another probe run ({holder.describe()}) is in progress")


class RunLock:
    """Hold the run lock for a `with` block; raises RunInProgressError at once if it is taken.

    After acquiring, `stale` describes a previous holder that died without releasing it (its file
    was left behind): the lock was taken over from it.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_lock_path()
        self.stale: LockHolder | None = None
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunInProgressError(_read_holder(fd)) from None
            previous = _read_holder(fd)
            # A file with a holder but no flock on it: that run died without cleaning up.
            self.stale = previous if previous.pid is not None else None
            record = f"{os.getpid()}\n{socket.gethostname()}\n{utcnow().isoformat()}\n"
            os.ftruncate(fd, 0)
            os.pwrite(fd, record.encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        # Empty the file before unlocking: a file with no holder in it means a clean exit, so the
        # next run does not report a takeover. The file itself stays (unlinking a lock file
        # races with a process that has just opened it).
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing the last descriptor releases the flock

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _read_holder(fd: int) -> LockHolder:
    try:
        text = os.pread(fd, 512, 0).decode("utf-8", "replace")
    except OSError:
        text = ""
    lines = text.splitlines()
    pid = int(lines[0]) if lines and lines[0].strip().isdigit() else None
    host = lines[1].strip() or None if len(lines) > 1 else None
    started: datetime | None = None
    if len(lines) > 2:
        try:
            started = datetime.fromisoformat(lines[2].strip())
        except ValueError:
            started = None
    return LockHolder(pid, host, started)
