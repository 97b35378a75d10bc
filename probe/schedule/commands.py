"""The common front of `probe schedule`: install, status and remove, each choosing or reading
the backend (systemd user timer first, else cron) so that one schedule exists at a time."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from probe.schedule import cron, systemd
from probe.schedule.cadence import Cadence
from probe.schedule.job import UNIT, Job, job_fields
from probe.schedule.log import log_summary, unattended_log_path
from probe.schedule.tools import ScheduleError


class Backend(StrEnum):
    """Where the schedule lives."""

    SYSTEMD = "systemd"
    CRON = "cron"


def detect_backend() -> Backend:
    """systemd user units when they can run, else cron (if there is a crontab command)."""
    if systemd.available():
        return Backend.SYSTEMD
    if shutil.which("crontab"):
        return Backend.CRON
    raise ScheduleError(
        "cannot schedule runs: no systemd user instance (systemctl --user) and no crontab command"
    )


@dataclass(frozen=True, slots=True)
class Installed:
    """What `install` did."""

    backend: Backend
    cadence: Cadence
    job: Job
    written: tuple[str, ...]
    warnings: tuple[str, ...] = ()


def install(cadence: Cadence, job: Job, backend: Backend | None = None) -> Installed:
    """Install (or replace) the schedule; a schedule in the other backend is removed first."""
    backend = backend or detect_backend()
    job.log_path.parent.mkdir(parents=True, exist_ok=True)
    warnings: list[str] = []
    if backend is Backend.SYSTEMD:
        cron.remove()
        written = systemd.install(cadence, job)
        if systemd.lingering() is False:
            warnings.append(
                "systemd runs your timers only while you are logged in; to measure while you "
                "are logged out too, run: loginctl enable-linger"
            )
    else:
        systemd.remove()
        written = cron.install(cadence, job)
    return Installed(backend, cadence, job, tuple(written), tuple(warnings))


def remove() -> list[str]:
    """Remove the schedule from both backends; what was removed (empty: there was none)."""
    return [*systemd.remove(), *cron.remove()]


@dataclass(frozen=True, slots=True)
class ScheduleStatus:
    """Whether and how the probe is scheduled, and how its last unattended runs went."""

    backend: Backend | None
    every: str | None = None
    jitter: str | None = None
    entry: str | None = None
    enabled: str | None = None
    next_run: str | None = None
    last_run: str | None = None
    last_result: str | None = None
    config: str | None = None  # the job's --config (None: the run's default lookup)
    database: str | None = None  # the job's --db (None: the config's, else the default)
    log_path: Path = field(default_factory=unattended_log_path)
    log_updated: datetime | None = None
    log_last_line: str | None = None
    warnings: tuple[str, ...] = ()

    @property
    def installed(self) -> bool:
        return self.backend is not None


_MARKED = re.compile(r"every=(\S+) jitter=(\S+)")


def status() -> ScheduleStatus:
    """The schedule as installed (systemd units first, then the crontab block)."""
    log = log_summary(unattended_log_path())
    service, timer = systemd.unit_paths()
    if timer.exists():
        marked = _MARKED.search(timer.read_text(encoding="utf-8"))
        try:
            config, database = job_fields(service.read_text(encoding="utf-8").splitlines())
        except OSError:
            config = database = None
        enabled = next_run = last_run = last_result = None
        warnings: list[str] = []
        if systemd.available():
            enabled = systemd.systemctl("is-enabled", f"{UNIT}.timer", check=False).stdout.strip()
            timer_props = systemd.show(f"{UNIT}.timer", "NextElapseUSecRealtime", "LastTriggerUSec")
            next_run = timer_props.get("NextElapseUSecRealtime") or None
            last_run = timer_props.get("LastTriggerUSec") or None
            last_result = systemd.show(f"{UNIT}.service", "Result").get("Result") or None
            if systemd.lingering() is False:
                warnings.append("not lingering: runs only while you are logged in")
        else:
            warnings.append("the units are installed but systemd --user is not reachable here")
        return ScheduleStatus(
            Backend.SYSTEMD,
            every=marked.group(1) if marked else None,
            jitter=marked.group(2) if marked else None,
            entry=str(timer),
            enabled=enabled,
            next_run=next_run,
            last_run=last_run,
            last_result=last_result,
            config=config,
            database=database,
            warnings=tuple(warnings),
            **log,
        )
    if shutil.which("crontab"):
        lines = cron.read_crontab()
        block = cron.find_block(lines)
        if block is not None:
            marked = _MARKED.search(lines[block[0]])
            inside = lines[block[0] + 1 : block[1]]
            entry = next((ln for ln in inside if ln.strip() and not ln.startswith("#")), None)
            config, database = job_fields(inside)
            return ScheduleStatus(
                Backend.CRON,
                every=marked.group(1) if marked else None,
                jitter=marked.group(2) if marked else None,
                entry=entry,
                config=config,
                database=database,
                **log,
            )
    return ScheduleStatus(None, **log)
