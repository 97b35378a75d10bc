"""What a schedule runs: `probe run --unattended` with the absolute paths in effect at install
time (config, database, XDG directories, the Python interpreter), so that the scheduled run
measures exactly what the volunteer tried by hand; it never prompts (consent must already be on
record)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import probe
from probe.schedule.log import unattended_log_path

UNIT = "censorprobe"

MANAGED_NOTE = "managed by `probe schedule`; change it with `probe schedule install/remove`"

# A run takes minutes; one still going after this is hung and is interrupted (SIGINT: the run
# stores what it finished and marks itself interrupted).
RUN_TIME_LIMIT_S = 2 * 3600

_XDG_VARIABLES = ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME")


@dataclass(frozen=True, slots=True)
class Job:
    """The command a schedule runs, its environment and its log file."""

    argv: tuple[str, ...]
    environment: tuple[tuple[str, str], ...] = ()
    log_path: Path = field(default_factory=unattended_log_path)


def probe_job(
    *, config: Path | None = None, db: str | None = None, python: str | None = None
) -> Job:
    """`<python> -m probe run --unattended` with absolute --config/--db, and the environment the
    scheduled run needs to find the same files as this shell (XDG dirs; PYTHONPATH when the
    probe runs from a source tree rather than an installed package)."""
    argv = [python or sys.executable, "-m", "probe", "run", "--unattended"]
    if config is not None:
        argv += ["--config", str(config.expanduser().resolve())]
    if db is not None:
        argv += ["--db", db if "://" in db else str(Path(db).expanduser().resolve())]
    environment = [(name, os.environ[name]) for name in _XDG_VARIABLES if os.environ.get(name)]
    package_root = Path(probe.__file__).resolve().parent.parent
    if not {"site-packages", "dist-packages"} & set(package_root.parts):
        environment.append(("PYTHONPATH", str(package_root)))
    return Job(tuple(argv), tuple(environment))
