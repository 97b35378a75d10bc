"""The one way tests drive the `probe` command line.

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
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from probe.cli.app import app

REPO = Path(__file__).resolve().parent.parent
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\r")


@dataclass(frozen=True, slots=True)
class Outcome:
    code: int
    stdout: str
    stderr: str


def invoke(*args: str, env: Mapping[str, str] | None = None, input: str | None = None) -> Outcome:
    """`probe ARGS` in process; a Python exception (a traceback for a user) is re-raised."""
    result = CliRunner().invoke(app, list(args), env=dict(env or {}), input=input)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Outcome(result.exit_code, result.stdout, result.stderr)


def on_terminal(
    args: Sequence[str],
    *,
    columns: int,
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
) -> Outcome:
    """`python3 -m probe ARGS` with stdin and stdout on a pseudo-terminal `columns` wide and
    stderr on a pipe (its notes and progress bar apart); `stdout` is what the terminal showed."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    environment = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    environment.update({"PYTHONPATH": str(REPO), "TERM": "xterm", **(env or {})})
    process = subprocess.Popen(
        [sys.executable, "-m", "probe", *args],
        stdin=follower,
        stdout=follower,
        stderr=subprocess.PIPE,
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
    assert process.stderr is not None
    stderr = process.stderr.read().decode("utf-8", "replace")
    process.stderr.close()
    text = _ANSI.sub("", b"".join(chunks).decode("utf-8", "replace"))
    return Outcome(code, text, stderr)
