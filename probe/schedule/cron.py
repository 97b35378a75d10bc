"""The crontab backend, used when there is no systemd user instance: one entry between BEGIN/END
marker lines, so that status and remove touch exactly that block and never the user's other
lines. Its jitter is a `sleep` on a random number from /dev/urandom (cron's /bin/sh is often
dash, which has no $RANDOM); a run past the time limit gets SIGINT from timeout(1)."""

from __future__ import annotations

import shlex
import shutil

from probe.schedule.cadence import Cadence, format_duration
from probe.schedule.job import MANAGED_NOTE, RUN_TIME_LIMIT_S, Job, job_comments
from probe.schedule.tools import ScheduleError, run_tool

CRON_BEGIN = "# BEGIN censorprobe schedule"
CRON_END = "# END censorprobe schedule"


def read_crontab() -> list[str]:
    done = run_tool(["crontab", "-l"])
    if done.returncode != 0:
        if "no crontab" in (done.stderr + done.stdout).lower():
            return []
        raise ScheduleError(f"`crontab -l` failed: {(done.stderr or done.stdout).strip()}")
    return done.stdout.splitlines()


def write_crontab(lines: list[str]) -> None:
    text = "\n".join(lines) + "\n" if lines else ""
    done = run_tool(["crontab", "-"], stdin=text)
    if done.returncode != 0:
        raise ScheduleError(f"`crontab -` failed: {(done.stderr or done.stdout).strip()}")


def find_block(lines: list[str]) -> tuple[int, int] | None:
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
        *job_comments(job),
        f"{cadence.cron_times()} {cron_command(cadence, job)}",
        CRON_END,
    ]


def install(cadence: Cadence, job: Job) -> list[str]:
    lines = read_crontab()
    block = find_block(lines)
    new = cron_block(cadence, job)
    # Replace our block where it stands, or append: the user's other lines stay as they are.
    before, after = (lines, []) if block is None else (lines[: block[0]], lines[block[1] + 1 :])
    write_crontab([*before, *new, *after])
    return ["crontab"]


def remove() -> list[str]:
    if not shutil.which("crontab"):
        return []
    lines = read_crontab()
    block = find_block(lines)
    if block is None:
        return []
    write_crontab([*lines[: block[0]], *lines[block[1] + 1 :]])
    return ["crontab entry"]
