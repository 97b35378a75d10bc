"""Unattended runs: install, inspect and remove a schedule that runs `probe run --unattended`.

Two backends. A systemd user timer (censorprobe.timer + censorprobe.service in the user's unit
directory) when the user's systemd instance answers: RandomizedDelaySec spreads the start,
Persistent=true catches up a run missed while the machine was off. Otherwise a crontab entry,
between BEGIN/END marker lines so that status and remove touch exactly that block and never the
user's other lines; its jitter is a `sleep` on a random number from /dev/urandom (cron's /bin/sh
is often dash, which has no $RANDOM).

Both start at a random minute offset inside the period, so probes do not all fire at :00 (kinder
to the helper, and a less regular pattern on the wire). Both bake in absolute paths: the config
and database in effect at install time, the XDG directories, the Python interpreter, so that the
scheduled run measures exactly what the volunteer tried by hand. Output goes to a log file in the
user state directory; the run never prompts (consent must already be on record).
"""

from __future__ import annotations

import os
import pwd
import random
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TypedDict

import platformdirs

import probe
from probe.config import APP_NAME

UNIT = "censorprobe"
CRON_BEGIN = "# BEGIN censorprobe schedule"
CRON_END = "# END censorprobe schedule"
MANAGED_NOTE = "managed by `probe schedule`; change it with `probe schedule install/remove`"

MIN_INTERVAL_S = 5 * 60
DAY_S = 24 * 3600
DEFAULT_JITTER_S = 10 * 60
# A run takes minutes; one still going after this is hung and is interrupted (SIGINT: the run
# stores what it finished and marks itself interrupted).
RUN_TIME_LIMIT_S = 2 * 3600
# The unattended log is trimmed to its newest half when it grows past this.
LOG_MAX_BYTES = 1 << 20

# Where systemd records lingering users: without lingering, user timers only fire while the
# user is logged in.
LINGER_DIR = Path("/var/lib/systemd/linger")

_COMMAND_TIMEOUT_S = 30.0
_DURATION = re.compile(r"(\d+)([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": DAY_S}
_XDG_VARIABLES = ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME")


class ScheduleError(Exception):
    """The schedule could not be installed, read or removed; the message says why."""


class Backend(StrEnum):
    """Where the schedule lives."""

    SYSTEMD = "systemd"
    CRON = "cron"


# -- durations and cadence -----------------------------------------------------------------------


def parse_duration(text: str) -> int:
    """Seconds in a duration such as "30m", "1h", "6h", "1d", "1h30m" or "0"."""
    value = text.strip().lower()
    if value == "0":
        return 0
    if not value or _DURATION.sub("", value):
        raise ScheduleError(
            f"invalid duration {text!r}: write a number and a unit (s, m, h, d), e.g. 30m, 1h, 1d"
        )
    return sum(int(n) * _UNIT_S[unit] for n, unit in _DURATION.findall(value))


def format_duration(seconds: int) -> str:
    """The shortest text parse_duration reads back to `seconds` ("1h30m", "10m", "0")."""
    if seconds == 0:
        return "0"
    parts = []
    for unit in ("d", "h", "m", "s"):
        count, seconds = divmod(seconds, _UNIT_S[unit])
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class Cadence:
    """Every `every` seconds, at `offset` seconds into each period, plus up to `jitter` seconds.

    `every` divides an hour (in whole minutes) or a day (in whole hours), or is a day: the only
    periods that both cron and systemd calendars express exactly.
    """

    every: int
    jitter: int
    offset: int

    @classmethod
    def make(
        cls, every: int, jitter: int | None = None, rng: random.Random | None = None
    ) -> Cadence:
        """A cadence with a random offset; `jitter` None picks min(10m, every / 4)."""
        if every < MIN_INTERVAL_S:
            raise ScheduleError(
                f"--every {format_duration(every)} is too often: the shortest is "
                f"{format_duration(MIN_INTERVAL_S)}"
            )
        if not _expressible(every):
            raise ScheduleError(
                f"--every {format_duration(every)}: the interval must divide an hour "
                "(5m, 10m, 15m, 20m, 30m) or a day (1h, 2h, 3h, 4h, 6h, 8h, 12h), or be 1d"
            )
        if jitter is None:
            jitter = min(DEFAULT_JITTER_S, every // 4)
        if jitter < 0 or jitter >= every:
            raise ScheduleError(
                f"--jitter {format_duration(jitter)} must be shorter than --every "
                f"{format_duration(every)}"
            )
        rng = rng or random.SystemRandom()
        offset = rng.randrange(every // 60) * 60
        return cls(every, jitter, offset)

    def on_calendar(self) -> str:
        """The systemd OnCalendar= expression."""
        minute, hour = (self.offset // 60) % 60, self.offset // 3600
        if self.every < 3600:
            return f"*-*-* *:{minute:02d}/{self.every // 60}:00"
        if self.every < DAY_S:
            return f"*-*-* {hour:02d}/{self.every // 3600}:{minute:02d}:00"
        return f"*-*-* {hour:02d}:{minute:02d}:00"

    def cron_times(self) -> str:
        """The five time fields of a crontab line."""
        minute, hour = (self.offset // 60) % 60, self.offset // 3600
        if self.every < 3600:
            return f"{minute}-59/{self.every // 60} * * * *"
        if self.every < DAY_S:
            return f"{minute} {hour}-23/{self.every // 3600} * * *"
        return f"{minute} {hour} * * *"

    def describe(self) -> str:
        jitter = f" + up to {format_duration(self.jitter)} random delay" if self.jitter else ""
        return f"every {format_duration(self.every)}{jitter}"


def _expressible(every: int) -> bool:
    if every % 60:
        return False
    if every < 3600:
        return 3600 % every == 0
    if every < DAY_S:
        return every % 3600 == 0 and DAY_S % every == 0
    return every == DAY_S


# -- what runs ---------------------------------------------------------------------------------


def unattended_log_path() -> Path:
    """Where unattended runs write their output (the user state dir)."""
    return Path(platformdirs.user_state_dir(APP_NAME)) / "unattended.log"


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


def trim_log(path: Path | None = None, max_bytes: int = LOG_MAX_BYTES) -> None:
    """Keep the unattended log under max_bytes: past it, keep the newest half, from a line start.
    In place, so a writer that holds the file open in append mode (cron's >>, systemd's
    append:) goes on writing at its new end."""
    path = path or unattended_log_path()
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    if size <= max_bytes:
        return
    with path.open("r+b") as handle:
        handle.seek(size - max_bytes // 2)
        tail = handle.read()
        newline = tail.find(b"\n")
        tail = tail[newline + 1 :] if newline >= 0 else tail
        handle.seek(0)
        handle.write(tail)
        handle.truncate()


# -- running the system's tools ------------------------------------------------------------------


def _tool(argv: Sequence[str], *, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
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


def _systemctl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = _tool(["systemctl", "--user", *args])
    if check and done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()
        raise ScheduleError(f"`systemctl --user {' '.join(args)}` failed: {detail}")
    return done


def systemd_available() -> bool:
    """Whether this user's systemd instance is there to run timers."""
    if not shutil.which("systemctl") or not os.environ.get("XDG_RUNTIME_DIR"):
        return False
    try:
        return _systemctl("show-environment", check=False).returncode == 0
    except ScheduleError:
        return False


def detect_backend() -> Backend:
    """systemd user units when they can run, else cron (if there is a crontab command)."""
    if systemd_available():
        return Backend.SYSTEMD
    if shutil.which("crontab"):
        return Backend.CRON
    raise ScheduleError(
        "cannot schedule runs: no systemd user instance (systemctl --user) and no crontab command"
    )


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


def _unit_paths() -> tuple[Path, Path]:
    directory = systemd_unit_dir()
    return directory / f"{UNIT}.service", directory / f"{UNIT}.timer"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def _install_systemd(cadence: Cadence, job: Job) -> list[str]:
    service, timer = _unit_paths()
    _write(service, service_unit(job))
    _write(timer, timer_unit(cadence))
    _systemctl("daemon-reload")
    _systemctl("enable", "--now", f"{UNIT}.timer")
    return [str(timer), str(service)]


def _remove_systemd() -> list[str]:
    service, timer = _unit_paths()
    if not service.exists() and not timer.exists():
        return []
    if shutil.which("systemctl"):
        # The units may be installed while systemd is not reachable (cron-only session): then
        # deleting the files is all there is to do.
        _systemctl("disable", "--now", f"{UNIT}.timer", check=False)
    removed = [str(p) for p in (timer, service) if p.exists()]
    for path in (timer, service):
        path.unlink(missing_ok=True)
    if shutil.which("systemctl"):
        _systemctl("daemon-reload", check=False)
    return removed


# -- cron ---------------------------------------------------------------------------------------


def _read_crontab() -> list[str]:
    done = _tool(["crontab", "-l"])
    if done.returncode != 0:
        if "no crontab" in (done.stderr + done.stdout).lower():
            return []
        raise ScheduleError(f"`crontab -l` failed: {(done.stderr or done.stdout).strip()}")
    return done.stdout.splitlines()


def _write_crontab(lines: list[str]) -> None:
    text = "\n".join(lines) + "\n" if lines else ""
    done = _tool(["crontab", "-"], stdin=text)
    if done.returncode != 0:
        raise ScheduleError(f"`crontab -` failed: {(done.stderr or done.stdout).strip()}")


def _find_block(lines: list[str]) -> tuple[int, int] | None:
    """(begin, end) line indexes of our block, inclusive; None when there is none."""
    begins = [i for i, line in enumerate(lines) if line.startswith(CRON_BEGIN)]
    if not begins:
        return None
    if len(begins) > 1:
        raise ScheduleError(
            "the crontab holds more than one censorprobe block: fix it with `crontab -e`"
        )
    begin = begins[0]
    for end in range(begin + 1, len(lines)):
        if lines[end].startswith(CRON_END):
            return begin, end
    raise ScheduleError(
        f"the crontab has a {CRON_BEGIN!r} line without its end marker: fix it with `crontab -e`"
    )


def cron_command(cadence: Cadence, job: Job) -> str:
    """The shell command of the crontab line (with cron's "%" escaped)."""
    parts = []
    if cadence.jitter:
        parts.append(f"sleep $(( $(od -An -N4 -tu4 /dev/urandom) % {cadence.jitter} ));")
    run = [*(f"{k}={shlex.quote(v)}" for k, v in job.environment)]
    if shutil.which("timeout"):
        run += ["timeout", "-s", "INT", str(RUN_TIME_LIMIT_S)]
    run += [shlex.quote(a) for a in job.argv]
    log = shlex.quote(str(job.log_path))
    parts.append(f"mkdir -p {shlex.quote(str(job.log_path.parent))} &&")
    parts.append(f"{' '.join(run)} >> {log} 2>&1")
    # cron turns an unescaped "%" into a newline (and ends the command there).
    return " ".join(parts).replace("%", "\\%")


def cron_block(cadence: Cadence, job: Job) -> list[str]:
    every, jitter = format_duration(cadence.every), format_duration(cadence.jitter)
    return [
        f"{CRON_BEGIN} every={every} jitter={jitter} ({MANAGED_NOTE})",
        f"{cadence.cron_times()} {cron_command(cadence, job)}",
        CRON_END,
    ]


def _install_cron(cadence: Cadence, job: Job) -> list[str]:
    lines = _read_crontab()
    block = _find_block(lines)
    new = cron_block(cadence, job)
    # Replace our block where it stands, or append: the user's other lines stay as they are.
    before, after = (lines, []) if block is None else (lines[: block[0]], lines[block[1] + 1 :])
    _write_crontab([*before, *new, *after])
    return ["crontab"]


def _remove_cron() -> list[str]:
    if not shutil.which("crontab"):
        return []
    lines = _read_crontab()
    block = _find_block(lines)
    if block is None:
        return []
    _write_crontab([*lines[: block[0]], *lines[block[1] + 1 :]])
    return ["crontab entry"]


# -- the three commands ----------------------------------------------------------------------


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
        _remove_cron()
        written = _install_systemd(cadence, job)
        if lingering() is False:
            warnings.append(
                "systemd runs your timers only while you are logged in; to measure while you "
                "are logged out too, run: loginctl enable-linger"
            )
    else:
        _remove_systemd()
        written = _install_cron(cadence, job)
    return Installed(backend, cadence, job, tuple(written), tuple(warnings))


def remove() -> list[str]:
    """Remove the schedule from both backends; what was removed (empty: there was none)."""
    return [*_remove_systemd(), *_remove_cron()]


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
    log = _log_summary(unattended_log_path())
    timer = _unit_paths()[1]
    if timer.exists():
        marked = _MARKED.search(timer.read_text(encoding="utf-8"))
        enabled = next_run = last_run = last_result = None
        warnings: list[str] = []
        if systemd_available():
            enabled = _systemctl("is-enabled", f"{UNIT}.timer", check=False).stdout.strip()
            timer_props = _show(f"{UNIT}.timer", "NextElapseUSecRealtime", "LastTriggerUSec")
            next_run = timer_props.get("NextElapseUSecRealtime") or None
            last_run = timer_props.get("LastTriggerUSec") or None
            last_result = _show(f"{UNIT}.service", "Result").get("Result") or None
            if lingering() is False:
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
            warnings=tuple(warnings),
            **log,
        )
    if shutil.which("crontab"):
        lines = _read_crontab()
        block = _find_block(lines)
        if block is not None:
            marked = _MARKED.search(lines[block[0]])
            entry = next((ln for ln in lines[block[0] + 1 : block[1]] if ln.strip()), None)
            return ScheduleStatus(
                Backend.CRON,
                every=marked.group(1) if marked else None,
                jitter=marked.group(2) if marked else None,
                entry=entry,
                **log,
            )
    return ScheduleStatus(None, **log)


def _show(unit: str, *properties: str) -> dict[str, str]:
    done = _systemctl("show", unit, *(f"--property={p}" for p in properties), check=False)
    values = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition("=")
        if key in properties and value not in ("", "n/a", "0"):
            values[key] = value
    return values


class _LogSummary(TypedDict):
    log_path: Path
    log_updated: datetime | None
    log_last_line: str | None


def _log_summary(path: Path) -> _LogSummary:
    try:
        updated = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - 4096))
            lines = handle.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return {"log_path": path, "log_updated": None, "log_last_line": None}
    last = next((line.strip() for line in reversed(lines) if line.strip()), None)
    return {"log_path": path, "log_updated": updated, "log_last_line": last}
