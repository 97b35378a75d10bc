"""The systemd backend: censorprobe.timer + censorprobe.service in the user's unit directory,
used when the user's systemd instance answers. RandomizedDelaySec spreads the start,
Persistent=true catches up a run missed while the machine was off; KillSignal=SIGINT lets a hung
run store what it finished."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
from contextlib import suppress
from pathlib import Path

import platformdirs

from probe.schedule.cadence import Cadence, format_duration
from probe.schedule.job import MANAGED_NOTE, RUN_TIME_LIMIT_S, UNIT, Job, job_comments
from probe.schedule.tools import ScheduleError, run_tool

# Where systemd records lingering users: without lingering, user timers only fire while the
# user is logged in.
LINGER_DIR = Path("/var/lib/systemd/linger")


def systemctl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = run_tool(["systemctl", "--user", *args])
    if check and done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()
        raise ScheduleError(f"`systemctl --user {' '.join(args)}` failed: {detail}")
    return done


def available() -> bool:
    """Whether this user's systemd instance is there to run timers."""
    if not shutil.which("systemctl") or not os.environ.get("XDG_RUNTIME_DIR"):
        return False
    try:
        return systemctl("show-environment", check=False).returncode == 0
    except ScheduleError:
        return False


def lingering() -> bool | None:
    """Whether user units run while the user is logged out (None: cannot tell)."""
    try:
        user = pwd.getpwuid(os.getuid()).pw_name
        return (LINGER_DIR / user).exists()
    except (KeyError, OSError):
        return None


# -- systemd ------------------------------------------------------------------------------------


def systemd_unit_dir() -> Path:
    """The user's systemd unit directory ($XDG_CONFIG_HOME/systemd/user)."""
    return Path(platformdirs.user_config_dir()) / "systemd" / "user"


def _unit_escape(text: str) -> str:
    # In unit files "%" starts a specifier and "$" an environment variable in ExecStart.
    return text.replace("%", "%%").replace("$", "$$")


def _unit_word(text: str) -> str:
    """One argument for ExecStart=/Environment=, quoted the way systemd splits command lines."""
    if text and re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]+", text):
        return _unit_escape(text)
    quoted = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{_unit_escape(quoted)}"'


def service_unit(job: Job) -> str:
    """censorprobe.service: one unattended run, output appended to the log."""
    log = _unit_escape(str(job.log_path))
    lines = [
        f"# {MANAGED_NOTE}",
        *job_comments(job),
        "[Unit]",
        "Description=censorprobe: one unattended censorship measurement run",
        "",
        "[Service]",
        "Type=oneshot",
        f"ExecStart={' '.join(_unit_word(a) for a in job.argv)}",
        *(f"Environment={_unit_word(f'{k}={v}')}" for k, v in job.environment),
        f"StandardOutput=append:{log}",
        f"StandardError=append:{log}",
        f"TimeoutStartSec={RUN_TIME_LIMIT_S}",
        # SIGINT, not SIGTERM: the run keeps what it finished and records itself interrupted.
        "KillSignal=SIGINT",
        "",
    ]
    return "\n".join(lines)


def timer_unit(cadence: Cadence) -> str:
    """censorprobe.timer: the cadence, the jitter, and catch-up after downtime."""
    lines = [
        f"# {MANAGED_NOTE}",
        f"# every={format_duration(cadence.every)} jitter={format_duration(cadence.jitter)}",
        "[Unit]",
        f"Description=censorprobe: measure {cadence.describe()}",
        "",
        "[Timer]",
        f"OnCalendar={cadence.on_calendar()}",
        f"RandomizedDelaySec={cadence.jitter}",
        "Persistent=true",
        "",
        "[Install]",
        "WantedBy=timers.target",
        "",
    ]
    return "\n".join(lines)


def unit_paths() -> tuple[Path, Path]:
    directory = systemd_unit_dir()
    return directory / f"{UNIT}.service", directory / f"{UNIT}.timer"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def install(cadence: Cadence, job: Job) -> list[str]:
    service, timer = unit_paths()
    try:
        _write(service, service_unit(job))
        _write(timer, timer_unit(cadence))
        systemctl("daemon-reload")
        systemctl("enable", "--now", f"{UNIT}.timer")
    except (ScheduleError, OSError) as exc:
        # Half an install is worse than none: status would report a schedule that never runs.
        with suppress(ScheduleError):
            remove()
        for path in (timer, service):
            path.unlink(missing_ok=True)
        raise ScheduleError(f"{exc}; no schedule is installed") from None
    return [str(timer), str(service)]


def remove() -> list[str]:
    service, timer = unit_paths()
    if not service.exists() and not timer.exists():
        return []
    if shutil.which("systemctl"):
        # The units may be installed while systemd is not reachable (cron-only session): then
        # deleting the files is all there is to do.
        systemctl("disable", "--now", f"{UNIT}.timer", check=False)
    removed = [str(p) for p in (timer, service) if p.exists()]
    for path in (timer, service):
        path.unlink(missing_ok=True)
    if shutil.which("systemctl"):
        systemctl("daemon-reload", check=False)
    return removed


def show(unit: str, *properties: str) -> dict[str, str]:
    done = systemctl("show", unit, *(f"--property={p}" for p in properties), check=False)
    values = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition("=")
        if key in properties and value not in ("", "n/a", "0"):
            values[key] = value
    return values
