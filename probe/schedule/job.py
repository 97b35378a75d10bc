"""What a schedule runs: `probe run --unattended` with the absolute paths given at install time
(--config and --db when the volunteer named them, the XDG directories, the Python interpreter);
it never prompts (consent must already be on record). The job's config and database are written
beside it as comment lines (`# job-config: ...`), so that status reads them back without parsing
a command line."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import probe
from probe.config import user_config_path
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
    config: Path | None = None  # --config baked in (None: the run's default lookup)
    database: str | None = None  # --db baked in (None: the config's, else the default)


def probe_job(
    *, config: Path | None = None, db: str | None = None, python: str | None = None
) -> Job:
    """`<python> -m probe run --unattended` with absolute --config/--db, and the environment the
    scheduled run needs to find the same files as this shell (XDG dirs; PYTHONPATH when the
    probe runs from a source tree rather than an installed package)."""
    argv = [python or sys.executable, "-m", "probe", "run", "--unattended"]
    config = None if config is None else config.expanduser().resolve()
    if config is not None:
        argv += ["--config", str(config)]
    if db is not None:
        db = db if "://" in db else str(Path(db).expanduser().resolve())
        argv += ["--db", db]
    environment = [(name, os.environ[name]) for name in _XDG_VARIABLES if os.environ.get(name)]
    package_root = Path(probe.__file__).resolve().parent.parent
    if not {"site-packages", "dist-packages"} & set(package_root.parts):
        environment.append(("PYTHONPATH", str(package_root)))
    return Job(tuple(argv), tuple(environment), config=config, database=db)


def scheduled_config(explicit: Path | None) -> Path | None:
    """The config a scheduled run reads: the one named at install (--config), else the user
    config dir's config.toml when there is one (else None: the built-in defaults). A
    config.toml in the directory install runs from is not it: scheduled runs start elsewhere."""
    if explicit is not None:
        return explicit
    user = user_config_path()
    return user if user.is_file() else None


_JOB_CONFIG, _JOB_DATABASE = "# job-config: ", "# job-database: "


def job_comments(job: Job) -> list[str]:
    """The job's --config and --db as comment lines ("-" for none), for status to read back."""

    def one_line(value: object) -> str:
        return "-" if value is None else str(value).replace("\n", " ")

    return [f"{_JOB_CONFIG}{one_line(job.config)}", f"{_JOB_DATABASE}{one_line(job.database)}"]


def job_fields(lines: Sequence[str]) -> tuple[str | None, str | None]:
    """The (config, database) of job_comments() lines; None where there is none."""
    found: dict[str, str | None] = {_JOB_CONFIG: None, _JOB_DATABASE: None}
    for line in lines:
        for marker in found:
            if line.startswith(marker):
                value = line[len(marker) :].strip()
                found[marker] = None if value in ("", "-") else value
    return found[_JOB_CONFIG], found[_JOB_DATABASE]
