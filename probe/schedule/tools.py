"""Running the system's scheduling tools (systemctl, crontab) under a timeout, and the one error
every part of the schedule raises."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Sequence

_COMMAND_TIMEOUT_S = 30.0


class ScheduleError(Exception):
    """The schedule could not be installed, read or removed; the message says why."""


def run_tool(argv: Sequence[str], *, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            list(argv),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=_COMMAND_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError:
        raise ScheduleError(f"{argv[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise ScheduleError(f"`{shlex.join(argv)}` did not answer in time") from None
