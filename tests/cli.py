"""The one way tests drive the `probe` command line (the user's directories are isolated for
every test by tests/conftest.py).

`invoke` runs it in process (typer's CliRunner: stdout and stderr are not a terminal, like a log
or a pipe). `on_terminal` runs the real `python3 -m probe` on a pseudo-terminal of a given width,
as a volunteer's shell would, and returns what the terminal received (escape sequences removed).
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import typer
from typer.testing import CliRunner

from probe.cli.app import app as probe_app

REPO = Path(__file__).resolve().parent.parent
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\r")


CONSENT = "--i-understand-the-risks"


class Outcome(NamedTuple):
    """A finished command: its exit status and what it wrote to stdout and stderr."""

    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def invoke(
    *args: str,
    app: typer.Typer = probe_app,
    consent: bool = False,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Outcome:
    """`probe ARGS` (or `app`'s commands) in process, read at a width no table wraps at;
    `consent` adds the informed-consent flag. A Python exception the CLI did not turn into an
    exit status (a traceback for a user) is re-raised into the test."""
    argv = [*args, CONSENT] if consent else list(args)
    environment = {"COLUMNS": "250"} if env is None else dict(env)
    result = CliRunner().invoke(app, argv, env=environment, input=input)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Outcome(result.exit_code, result.stdout, result.stderr)


def on_terminal(
    args: Sequence[str],
    *,
    columns: int,
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
    stderr_too: bool = False,
) -> Outcome:
    """`python3 -m probe ARGS` with stdin and stdout on a pseudo-terminal `columns` wide and
    stderr on a pipe (its notes and progress bar apart; `stderr_too`: on the terminal as well);
    `stdout` is what the terminal showed."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    environment = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    environment.update({"PYTHONPATH": str(REPO), "TERM": "xterm", **(env or {})})
    process = subprocess.Popen(
        [sys.executable, "-m", "probe", *args],
        stdin=follower,
        stdout=follower,
        stderr=follower if stderr_too else subprocess.PIPE,
        env=environment,
        cwd=REPO,
        close_fds=True,
    )
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if ready:
                try:
                    data = os.read(leader, 65536)
                except OSError:  # EIO: the terminal's last writer closed it
                    break
                if not data:
                    break
                chunks.append(data)
            elif process.poll() is not None:
                break
    finally:
        os.close(leader)
        if process.poll() is None:
            process.kill()
        code = process.wait(timeout=10)
    stderr = ""
    if process.stderr is not None:
        stderr = process.stderr.read().decode("utf-8", "replace")
        process.stderr.close()
    text = _ANSI.sub("", b"".join(chunks).decode("utf-8", "replace"))
    return Outcome(code, text, stderr)
