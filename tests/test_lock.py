"""The run lock, between real processes: a second run stops at once and names the first; the lock
of a run that crashed is taken over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from probe.lock import RunInProgressError, RunLock, default_lock_path

REPO = Path(__file__).resolve().parent.parent

# A run that takes the lock, says so, and holds it until its stdin closes (or it is killed).
_HOLD = """
import sys
from pathlib import Path
from probe.lock import RunLock
with RunLock(Path(sys.argv[1])) as lock:
    print("held", "stale" if lock.stale else "fresh", flush=True)
    sys.stdin.readline()
"""

# A second run: takes the lock or reports who holds it, and exits either way.
_TRY = """
import sys
from pathlib import Path
from probe.lock import RunInProgressError, RunLock
lock = RunLock(Path(sys.argv[1]))
try:
    lock.acquire()
except RunInProgressError as exc:
    print(exc, flush=True)
    sys.exit(75)
print("acquired", lock.stale.pid if lock.stale else "-", flush=True)
lock.release()
"""


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    path = tmp_path / "state" / "run.lock"
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(path)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().split() == ["held", "fresh"]
        yield process, path
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        for stream in (process.stdin, process.stdout):
            if stream:
                stream.close()


def _second_run(path: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", _TRY, str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    return done, time.monotonic() - started


def test_second_run_stops_at_once_and_names_the_first(
    holder: tuple[subprocess.Popen[str], Path],
) -> None:
    process, path = holder
    done, elapsed = _second_run(path)
    assert done.returncode == 75, done.stderr
    message = done.stdout.strip()
    assert message.startswith(f"another probe run (pid {process.pid}, started ")
    assert message.endswith(") is in progress")
    started = message.split("started ", 1)[1].removesuffix(") is in progress")
    assert datetime.fromisoformat(started).tzinfo is not None
    assert elapsed < 5.0  # no waiting for the lock: it is the interpreter's start-up time


def test_lock_of_a_crashed_run_is_taken_over(holder: tuple[subprocess.Popen[str], Path]) -> None:
    process, path = holder
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    done, _ = _second_run(path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.split() == ["acquired", str(process.pid)]


def test_run_that_finished_cleanly_leaves_nothing_to_take_over(
    holder: tuple[subprocess.Popen[str], Path],
) -> None:
    process, path = holder
    assert process.stdin is not None
    process.stdin.close()  # the run ends normally
    assert process.wait(timeout=10) == 0
    done, _ = _second_run(path)
    assert done.stdout.split() == ["acquired", "-"]


def test_the_same_process_cannot_take_the_lock_twice(tmp_path: Path) -> None:
    path = tmp_path / "run.lock"
    with RunLock(path) as first:
        assert first.held
        with pytest.raises(RunInProgressError, match=rf"\(pid {os.getpid()}, started "):
            RunLock(path).acquire()
    with RunLock(path) as again:
        assert again.stale is None


def test_lock_file_lives_in_the_user_state_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not $XDG_RUNTIME_DIR: cron runs without it, and must find the same lock.
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    assert default_lock_path() == tmp_path / "state" / "censorprobe" / "run.lock"
