"""Signals against a real `probe run` process: SIGTERM (systemd stop) and SIGHUP (a closed
terminal) end a run like Ctrl-C, keeping what finished and deciding its verdicts; Ctrl-C while the
command starts exits 130 without a traceback; a run killed with SIGKILL is finished, marked
interrupted and analysed by the next run."""

from __future__ import annotations

import os
import pty
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import hostile
from tests.servers.background import background
from tests.sites import Site

RUN = [sys.executable, "-m", "probe", "run", "--i-understand-the-risks"]


@pytest.fixture
def hanging_config(site: Site, tmp_path: Path) -> Iterator[Path]:
    """The loopback site plus one target that accepts and never answers, with 60 s timeouts:
    a run of it measures the rest in a second, then hangs until it is stopped."""
    with background(hostile.silent) as (silent,):
        catalog = tmp_path / "catalog"
        catalog.mkdir()
        for name in ("lo.toml", "controls.toml"):
            (catalog / name).write_text((site.config.parent / "catalog" / name).read_text())
        with (catalog / "lo.toml").open("a") as handle:
            handle.write(f'[[targets]]\nurl = "https://ok.lo.test:{silent.port}/slow"\n')
        config = tmp_path / "config.toml"
        config.write_text(
            site.config.read_text()
            .replace("tls = 1.0", "tls = 60.0")
            .replace("http = 2.0", "http = 60.0")
            .replace(str(site.config.parent / "catalog"), str(catalog))
        )
        yield config


def _as_from_a_terminal() -> None:
    """SIGINT as an interactive shell leaves it for its foreground job: default (the test
    process itself may be running with it ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stored(db: Path, query: str) -> int:
    try:
        with sqlite3.connect(db) as conn:
            return int(conn.execute(query).fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def start_hung_run(config: Path, db: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A run that has stored its finished measurements and hangs on the silent target."""
    process = subprocess.Popen(
        [*RUN, "--config", str(config), "--db", str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 60
    count = 0
    while time.monotonic() < deadline and count < 8:
        time.sleep(0.2)
        if db.exists():
            count = stored(db, "select count(*) from measurements")
    if count < 8:
        process.kill()
        process.wait()
        pytest.fail("the run did not store its finished measurements while running")
    return process, count


def finish(process: subprocess.Popen[bytes]) -> str:
    try:
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return err.decode()


def run_row(db: Path) -> tuple[str, int, str | None]:
    with sqlite3.connect(db) as conn:
        ((run_id, interrupted, finished_at),) = conn.execute(
            "select id, interrupted, finished_at from runs"
        ).fetchall()
    return str(run_id), int(interrupted), finished_at


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_end_a_run_like_ctrl_c(
    hanging_config: Path,
    site: Site,
    tmp_path: Path,
    number: signal.Signals,
) -> None:
    db = tmp_path / "probe.db"
    process, before = start_hung_run(hanging_config, db)
    process.send_signal(number)
    err = finish(process)
    assert process.returncode == 130, err
    assert "finished measurements were kept" in err and "Traceback" not in err
    run_id, interrupted, finished_at = run_row(db)
    assert interrupted == 1 and finished_at is not None
    assert stored(db, "select count(*) from measurements") >= before
    # Verdicts for what finished: the site's working target among them.
    with sqlite3.connect(db) as conn:
        verdicts = dict(
            conn.execute("select target, status from verdicts where run_id = ?", (run_id,))
        )
    assert verdicts[f"https://ok.lo.test:{site.https_port}/"] == "ok"


def test_a_run_killed_with_sigkill_is_finished_and_analysed_by_the_next_run(
    hanging_config: Path,
    site: Site,
    tmp_path: Path,
) -> None:
    db = tmp_path / "probe.db"
    process, before = start_hung_run(hanging_config, db)
    process.kill()  # SIGKILL: nothing runs after it
    process.wait()
    (killed, interrupted, finished_at) = run_row(db)
    assert finished_at is None and interrupted == 0
    assert stored(db, "select count(*) from verdicts") == 0

    done = subprocess.run(
        [*RUN, "--config", str(site.config), "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert f"run {killed} (started" in done.stderr and "marked interrupted" in done.stderr
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "select interrupted, finished_at from runs where id = ?", (killed,)
        ).fetchone()
        last = conn.execute(
            "select max(started_at) from measurements where run_id = ?", (killed,)
        ).fetchone()[0]
        verdicts = conn.execute(
            "select count(*) from verdicts where run_id = ?", (killed,)
        ).fetchone()[0]
    assert row[0] == 1 and row[1] is not None and row[1] >= last  # ends at its last measurement
    assert verdicts > 0
    assert stored(db, f"select count(*) from measurements where run_id = '{killed}'") >= before


def test_ctrl_c_at_the_consent_prompt_exits_130_without_a_traceback(
    site: Site,
    tmp_path: Path,
) -> None:
    """Start-up, before any measuring: the consent prompt on a real terminal (a pty)."""
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "probe",
            "run",
            "--config",
            str(site.config),
            "--db",
            str(tmp_path / "p.db"),
        ],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=_as_from_a_terminal,
    )
    os.close(secondary)
    seen = b""
    try:
        deadline = time.monotonic() + 60
        while b"to accept and run the probe" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 1)
            if ready:
                seen += os.read(primary, 65536)
        assert b"to accept and run the probe" in seen, seen.decode(errors="replace")
        process.send_signal(signal.SIGINT)
        # Drain the terminal while waiting: a full pty buffer would block the process's writes.
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 0.2)
            if ready:
                try:
                    seen += os.read(primary, 65536)
                except OSError:  # EIO: the process closed its side of the terminal
                    process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(primary)
    assert process.returncode == 130
    assert b"Traceback" not in seen
    assert not (tmp_path / "p.db").exists()


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_while_asking_the_helper_exits_130_without_a_traceback_or_a_run(
    site: Site,
    tmp_path: Path,
    number: signal.Signals,
) -> None:
    """Start-up of the run: the helper (a listener that never answers) is asked for controls."""
    with socket.socket() as helper:
        helper.bind(("127.0.0.1", 0))
        helper.listen()
        config = tmp_path / "config.toml"
        config.write_text(
            site.config.read_text()
            + f'[helper]\nurl = "http://127.0.0.1:{helper.getsockname()[1]}/"\ntoken = "t0ken"\n'
        )
        db = tmp_path / "p.db"
        process = subprocess.Popen(
            [*RUN, "--config", str(config), "--db", str(db)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            helper.settimeout(60)
            connection, _ = helper.accept()  # the run is asking the helper now
            with connection:
                process.send_signal(number)
                err = finish(process)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    assert stored(db, "select count(*) from runs") == 0


def test_ctrl_c_at_any_moment_of_start_up_exits_130_without_a_traceback(
    site: Site,
    tmp_path: Path,
) -> None:
    """Ctrl-C while the interpreter loads the command's modules (seconds on a loaded machine),
    reads the config and plans, or measures: never a traceback. Only a signal before Python
    installed its own SIGINT handler kills the process by the signal itself (no output)."""
    outcomes: list[int | str] = []
    for number, delay in enumerate((0.3, 0.6, 1.0, 1.5, 2.0, 3.0)):
        process = subprocess.Popen(
            [*RUN, "--config", str(site.config), "--db", str(tmp_path / f"{number}.db")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=_as_from_a_terminal,
        )
        time.sleep(delay)
        process.send_signal(signal.SIGINT)
        err = finish(process)
        if err.startswith(_INTERPRETER_START_UP):
            # The signal landed in CPython's own start-up (importing `site`), before any of the
            # probe's code exists to handle it: the interpreter's fatal error, not ours.
            outcomes.append("interpreter")
            continue
        assert "Traceback" not in err, (delay, err)
        outcomes.append(process.returncode)
    assert set(outcomes) <= {130, -signal.SIGINT, 0, "interpreter"}, outcomes
    assert 130 in outcomes, outcomes  # at least one Ctrl-C met the probe's own handling


_INTERPRETER_START_UP = "Fatal Python error: init_import_site"


_INTERRUPT_IN_A_FINALISER = """
import sys, time
from probe.cli import app

sys.unraisablehook = app._unraisable  # what app.main() installs


class Finaliser:
    def __del__(self):
        raise KeyboardInterrupt  # a Ctrl-C whose handler ran inside a finaliser


try:
    Finaliser()
    time.sleep(10)
except KeyboardInterrupt:
    print("interrupted outside the finaliser")
    sys.exit(130)
print("the interrupt was lost")
"""


def test_ctrl_c_that_lands_in_a_finaliser_still_ends_the_command_quietly() -> None:
    # Found by the test above under load: the signal's KeyboardInterrupt was raised inside a
    # weakref callback, Python printed it as an unraisable exception (a traceback) and went on.
    done = subprocess.run(
        [sys.executable, "-c", _INTERRUPT_IN_A_FINALISER],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert done.returncode == 130, (done.stdout, done.stderr)
    assert done.stdout.strip() == "interrupted outside the finaliser"
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr


def test_the_probe_command_installs_the_finaliser_interrupt_hook() -> None:
    code = "import sys; from probe.cli import app; sys.argv = ['probe', '--version']\n"
    code += "try:\n    app.main()\nexcept SystemExit:\n    pass\n"
    code += "print(sys.unraisablehook is app._unraisable)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "True", done.stdout
