"""`probe schedule`: a systemd user timer when systemd answers, else a marked crontab block that
leaves the user's own lines alone; durations, cadences, consent, and the unattended log.

systemctl and crontab are fakes on PATH (shell scripts that log their arguments and keep the
crontab in a file); HOME and the XDG directories point into the test's temporary directory.
"""

from __future__ import annotations

import itertools
import os
import pwd
import random
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import typer

import probe.schedule.systemd
from probe.cli.base import EXIT_NO_CONSENT
from probe.cli.schedule import register
from probe.consent import REFUSAL_MESSAGE
from probe.schedule.cadence import Cadence, format_duration, parse_duration
from probe.schedule.commands import Backend, install
from probe.schedule.cron import CRON_BEGIN, CRON_END, cron_block
from probe.schedule.job import probe_job
from probe.schedule.log import LOG_MAX_BYTES, trim_log
from probe.schedule.systemd import service_unit, timer_unit
from probe.schedule.tools import ScheduleError
from tests.cli import invoke

USER_CRONTAB = (
    "MAILTO=volunteer@example.org\n"
    "# nightly backup, mine\n"
    "30 3 * * * /usr/local/bin/backup.sh --all > /dev/null 2>&1\n"
)

FAKE_CRONTAB = """#!/bin/sh
# A crontab(1) stand-in: the table lives in $FAKE_CRONTAB.
echo "crontab $*" >> "$FAKE_TOOL_LOG"
case "$1" in
  -l) if [ -f "$FAKE_CRONTAB" ]; then cat "$FAKE_CRONTAB"; else
        echo "no crontab for $(id -un)" >&2; exit 1; fi ;;
  -) cat > "$FAKE_CRONTAB" ;;
  *) echo "fake crontab: unsupported $*" >&2; exit 2 ;;
esac
"""

FAKE_SYSTEMCTL = """#!/bin/sh
# A systemctl(1) stand-in: answers as a running user instance when $FAKE_SYSTEMD_UP is 1.
echo "systemctl $*" >> "$FAKE_TOOL_LOG"
[ "$FAKE_SYSTEMD_UP" = 1 ] || { echo "Failed to connect to bus: No medium found" >&2; exit 1; }
[ -n "$FAKE_SYSTEMCTL_FAIL" ] && [ "$2" = "$FAKE_SYSTEMCTL_FAIL" ] && {
  echo "Failed to $2: Access denied" >&2; exit 1; }
case "$2" in
  show-environment) echo "HOME=$HOME" ;;
  is-enabled) echo enabled ;;
  show)
    case "$3" in
      *.timer) echo "NextElapseUSecRealtime=Mon 2024-11-25 10:17:00 UTC"
               echo "LastTriggerUSec=n/a" ;;
      *.service) echo "Result=success" ;;
    esac ;;
esac
exit 0
"""


@dataclass
class Host:
    """The fake machine: its home, its tools' log and its crontab file."""

    root: Path
    tool_log: Path
    crontab: Path
    monkeypatch: pytest.MonkeyPatch

    @property
    def unit_dir(self) -> Path:
        return self.root / "config" / "systemd" / "user"

    @property
    def log_path(self) -> Path:
        return self.root / "state" / "censorprobe" / "unattended.log"

    def tool_calls(self) -> list[str]:
        return self.tool_log.read_text().splitlines() if self.tool_log.exists() else []

    def systemd(self, up: bool) -> None:
        self.monkeypatch.setenv("FAKE_SYSTEMD_UP", "1" if up else "0")
        if up:
            self.monkeypatch.setenv("XDG_RUNTIME_DIR", str(self.root / "run"))
        else:
            self.monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)


def _script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Host]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _script(bin_dir / "crontab", FAKE_CRONTAB)
    _script(bin_dir / "systemctl", FAKE_SYSTEMCTL)
    (tmp_path / "run").mkdir()
    (tmp_path / "linger").mkdir()
    host = Host(tmp_path, tmp_path / "tools.log", tmp_path / "crontab.txt", monkeypatch)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name, folder in (("CONFIG", "config"), ("STATE", "state"), ("DATA", "data")):
        monkeypatch.setenv(f"XDG_{name}_HOME", str(tmp_path / folder))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("PROBE_CONFIG", raising=False)
    monkeypatch.setenv("FAKE_TOOL_LOG", str(host.tool_log))
    monkeypatch.setenv("FAKE_CRONTAB", str(host.crontab))
    monkeypatch.setattr(probe.schedule.systemd, "LINGER_DIR", tmp_path / "linger")
    monkeypatch.chdir(tmp_path)
    host.systemd(up=False)
    yield host


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer(rich_markup_mode=None)  # as probe's own app: plain help and errors

    @app.callback()
    def _root() -> None:
        """probe (test)"""

    register(app)
    return app


def _invoke(cli: typer.Typer, *args: str) -> tuple[int, str, str]:
    return invoke("schedule", *args, app=cli)


# -- durations and cadence -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30m", 1800), ("1h", 3600), ("6h", 21600), ("1d", 86400), ("1h30m", 5400), ("0", 0)],
)
def test_durations_read_like_people_write_them(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("text", ["", "1", "h", "1x", "-1h", "1 h", "1.5h"])
def test_malformed_durations_are_refused(text: str) -> None:
    with pytest.raises(ScheduleError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("every", "jitter", "message"),
    [
        ("1m", None, "too often"),
        ("45m", None, "must divide an hour"),
        ("5h", None, "must divide an hour"),
        ("2d", None, "must divide an hour"),
        ("1h", "1h", "shorter than --every"),
    ],
)
def test_cadences_that_cron_and_systemd_cannot_keep_are_refused(
    every: str, jitter: str | None, message: str
) -> None:
    with pytest.raises(ScheduleError, match=message):
        Cadence.make(parse_duration(every), None if jitter is None else parse_duration(jitter))


def test_default_jitter_is_ten_minutes_or_a_quarter_of_short_periods() -> None:
    assert Cadence.make(3600).jitter == 600
    assert Cadence.make(900).jitter == 225


def _cron_field(text: str, top: int) -> set[int]:
    """The values a (generated) cron field matches: "*", "n", or "a-b/step"."""
    if text == "*":
        return set(range(top + 1))
    match = re.fullmatch(r"(\d+)(?:-(\d+)/(\d+))?", text)
    assert match, text
    start, end, step = match.groups()
    if end is None:
        return {int(start)}
    return set(range(int(start), int(end) + 1, int(step)))


@pytest.mark.parametrize("every", ["5m", "15m", "30m", "1h", "2h", "6h", "8h", "12h", "1d"])
def test_both_backends_fire_once_per_period_at_the_same_random_offset(every: str) -> None:
    period = parse_duration(every)
    cadence = Cadence.make(period, rng=random.Random(every))
    # systemd's own calendar parser says when the timer elapses.
    shown = subprocess.run(
        ["systemd-analyze", "calendar", "--iterations=4", cadence.on_calendar()],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
        env={**os.environ, "TZ": "UTC"},
    ).stdout
    times = re.findall(r"(?:Next elapse|Iter\. #\d+): \w+ (\S+ \S+) UTC", shown)
    stamps = [int(datetime.fromisoformat(t).replace(tzinfo=UTC).timestamp()) for t in times]
    assert len(stamps) == 4
    assert {b - a for a, b in itertools.pairwise(stamps)} == {period}
    assert {s % period for s in stamps} == {cadence.offset}
    # cron's fields fire at the same minutes of the day.
    minute, hour, *_ = cadence.cron_times().split()
    fired = sorted(
        h * 3600 + m * 60 for h in _cron_field(hour, 23) for m in _cron_field(minute, 59)
    )
    assert fired == list(range(cadence.offset, 86400, period))


# -- systemd -------------------------------------------------------------------------------------


def test_install_with_systemd_writes_a_timer_and_enables_it(host: Host, cli: typer.Typer) -> None:
    host.systemd(up=True)
    config = host.root / "my config" / "config.toml"
    config.parent.mkdir()
    config.write_text("[probe]\nconcurrency = 8\n")
    code, out, err = _invoke(
        cli,
        "install",
        "--every", "1h",
        "--jitter", "10m",
        "--config", str(config),
        "--db", "runs/measurements.db",
        "--i-understand-the-risks",
    )  # fmt: skip
    assert code == 0, err
    assert "scheduled with systemd: every 1h + up to 10m random delay" in out
    timer = (host.unit_dir / "censorprobe.timer").read_text()
    assert re.search(r"^OnCalendar=\*-\*-\* 00/1:\d\d:00$", timer, re.M)
    assert "\nRandomizedDelaySec=600\n" in timer
    assert "\nPersistent=true\n" in timer
    service = (host.unit_dir / "censorprobe.service").read_text()
    db = host.root / "runs" / "measurements.db"
    assert (
        f'ExecStart={sys.executable} -m probe run --unattended --config "{config}" --db {db}\n'
        in service
    )
    assert f"StandardOutput=append:{host.log_path}\n" in service
    assert f"Environment=XDG_STATE_HOME={host.root / 'state'}\n" in service
    assert "KillSignal=SIGINT" in service
    assert host.tool_calls()[-2:] == [
        "systemctl --user daemon-reload",
        "systemctl --user enable --now censorprobe.timer",
    ]
    assert not host.crontab.exists()
    assert "loginctl enable-linger" in err  # runs only while logged in, and it says so


def test_generated_units_pass_systemd_verification(tmp_path: Path) -> None:
    odd = tmp_path / "dir with space" / "100% $HOME.toml"  # systemd specifiers and variables
    job = probe_job(config=odd, db=str(tmp_path / "m.db"))
    (tmp_path / "censorprobe.service").write_text(service_unit(job))
    (tmp_path / "censorprobe.timer").write_text(timer_unit(Cadence.make(1800)))
    done = subprocess.run(
        ["systemd-analyze", "verify", "censorprobe.service", "censorprobe.timer"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert '"' + str(odd).replace("%", "%%").replace("$", "$$") + '"' in service_unit(job)


def test_status_shows_the_timer_next_run_and_last_result(host: Host, cli: typer.Typer) -> None:
    host.systemd(up=True)
    (host.root / "linger" / _user()).touch()
    assert _invoke(cli, "install", "--every", "6h", "--i-understand-the-risks")[0] == 0
    host.log_path.write_text("run 1f2e: 312 measurements stored; network connectivity ok\n")
    code, out, err = _invoke(cli, "status")
    assert code == 0, err
    assert "scheduled with systemd: every 6h + up to 10m random delay" in out
    assert "next run: Mon 2024-11-25 10:17:00 UTC" in out
    assert "last result: success" in out
    assert "last line: run 1f2e: 312 measurements stored; network connectivity ok" in out
    assert err == ""  # lingering: no warning


def test_remove_disables_the_timer_and_deletes_only_its_units(host: Host, cli: typer.Typer) -> None:
    host.systemd(up=True)
    other = host.unit_dir / "syncthing.service"
    other.parent.mkdir(parents=True)
    other.write_text("[Service]\nExecStart=/usr/bin/syncthing\n")
    assert _invoke(cli, "install", "--every", "30m", "--i-understand-the-risks")[0] == 0
    code, out, _ = _invoke(cli, "remove")
    assert code == 0
    assert out.startswith("removed: ")
    assert sorted(p.name for p in host.unit_dir.iterdir()) == ["syncthing.service"]
    assert "systemctl --user disable --now censorprobe.timer" in host.tool_calls()
    assert _invoke(cli, "remove")[1] == "no schedule was installed\n"
    assert _invoke(cli, "status")[1].startswith("not scheduled")


# -- cron ------------------------------------------------------------------------------------------


def test_without_systemd_cron_gets_a_marked_block_and_the_users_lines_stay(
    host: Host, cli: typer.Typer
) -> None:
    host.crontab.write_text(USER_CRONTAB)
    code, out, err = _invoke(cli, "install", "--every", "15m", "--i-understand-the-risks")
    assert code == 0, err
    assert "scheduled with cron: every 15m + up to 3m45s random delay" in out
    lines = host.crontab.read_text().splitlines()
    assert lines[:3] == USER_CRONTAB.splitlines()
    assert lines[3].startswith(f"{CRON_BEGIN} every=15m jitter=3m45s")
    assert lines[4:6] == ["# job-config: -", "# job-database: -"]  # for status to read back
    assert re.match(r"^\d{1,2}-59/15 \* \* \* \* sleep \$\(\( \$\(od ", lines[6])
    assert r"\% 225 ))" in lines[6]  # cron would cut the line at a bare %
    assert lines[7] == CRON_END
    assert len(lines) == 8
    assert not (host.unit_dir / "censorprobe.timer").exists()

    # Installing again replaces the block in place: still one block.
    assert _invoke(cli, "install", "--every", "1h", "--i-understand-the-risks")[0] == 0
    text = host.crontab.read_text()
    assert text.count(CRON_BEGIN) == 1 and "every=1h jitter=10m" in text
    status = _invoke(cli, "status")[1]
    assert "scheduled with cron: every 1h + up to 10m random delay" in status

    assert _invoke(cli, "remove")[1] == "removed: crontab entry\n"
    assert host.crontab.read_text() == USER_CRONTAB


def test_cron_line_runs_under_sh_sleeps_a_random_while_and_logs(host: Host, tmp_path: Path) -> None:
    recorder = _script(
        tmp_path / "python with space",
        '#!/bin/sh\necho "args: $*"\necho "state: $XDG_STATE_HOME"\necho "oops" >&2\n',
    )
    job = probe_job(config=None, db=None, python=str(recorder))
    install(Cadence(every=300, jitter=1, offset=0), job, Backend.CRON)
    line = next(ln for ln in host.crontab.read_text().splitlines() if ln[:1].isdigit())
    command = line.split(" ", 5)[5].replace("\\%", "%")  # what cron hands to /bin/sh
    env = {"HOME": str(host.root / "home"), "PATH": "/usr/bin:/bin", "SHELL": "/bin/sh"}
    done = subprocess.run(
        ["/bin/sh", "-c", command], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    log = host.log_path.read_text().splitlines()
    assert log == ["args: -m probe run --unattended", f"state: {host.root / 'state'}", "oops"]
    # The jitter expression itself, in the same shell: spread over [0, N).
    draws = subprocess.run(
        ["/bin/sh", "-c", "for i in 1 2 3 4 5 6 7 8; do "
         "echo $(( $(od -An -N4 -tu4 /dev/urandom) % 600 )); done"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout.split()  # fmt: skip
    assert len(draws) == 8 and all(0 <= int(d) < 600 for d in draws)
    assert len(set(draws)) > 1


def test_damaged_block_is_reported_not_guessed_at(host: Host, cli: typer.Typer) -> None:
    damaged = USER_CRONTAB + f"{CRON_BEGIN} every=1h jitter=10m\n0 * * * * true\n"
    host.crontab.write_text(damaged)
    code, _, err = _invoke(cli, "remove")
    assert code == 1
    assert "without its end marker" in err
    assert host.crontab.read_text() == damaged


def test_cron_block_is_well_formed_for_every_cadence() -> None:
    job = probe_job(config=Path("/etc/probe/config.toml"), python="/usr/bin/python3")
    block = cron_block(Cadence(every=86400, jitter=0, offset=3 * 3600 + 7 * 60), job)
    assert block[0].startswith(f"{CRON_BEGIN} every=1d jitter=0")
    assert block[1:3] == ["# job-config: /etc/probe/config.toml", "# job-database: -"]
    assert block[3].startswith("7 3 * * * mkdir -p ")
    assert "sleep" not in block[3]
    assert block[4] == CRON_END


# -- consent and errors ----------------------------------------------------------------------------


def test_install_without_consent_and_without_a_terminal_installs_nothing(
    host: Host, cli: typer.Typer
) -> None:
    host.systemd(up=True)
    code, out, err = _invoke(cli, "install", "--every", "1h")
    assert code == EXIT_NO_CONSENT
    assert out == ""
    assert REFUSAL_MESSAGE.split(":")[0] in err
    assert not (host.unit_dir / "censorprobe.timer").exists()
    assert not any("enable" in call for call in host.tool_calls())
    assert not (host.root / "config" / "censorprobe" / "consent.toml").exists()


def test_consent_given_once_covers_later_installs(host: Host, cli: typer.Typer) -> None:
    assert _invoke(cli, "install", "--every", "1h", "--i-understand-the-risks")[0] == 0
    assert (host.root / "config" / "censorprobe" / "consent.toml").exists()
    assert _invoke(cli, "install", "--every", "2h")[0] == 0


def test_bad_interval_is_a_one_line_error(host: Host, cli: typer.Typer) -> None:
    code, _, err = _invoke(cli, "install", "--every", "45m", "--i-understand-the-risks")
    assert code == 2  # a usage error
    assert "--every 45m: the interval must divide an hour" in " ".join(err.split())
    assert not host.crontab.exists()


def test_broken_config_is_caught_at_install_not_at_3am(host: Host, cli: typer.Typer) -> None:
    config = host.root / "config.toml"
    config.write_text("[probe]\nconcurrency = 0\n")
    code, _, err = _invoke(
        cli, "install", "--every", "1h", "--config", str(config), "--i-understand-the-risks"
    )
    assert code == 1
    assert "concurrency" in err
    assert not host.crontab.exists()


@pytest.mark.parametrize(
    ("command", "summary"),
    [
        ("install", "Install (or replace) a schedule"),
        ("status", "Show whether runs are scheduled, when the next one is, the config"),
        ("remove", "Remove the schedule"),
    ],
)
def test_every_schedule_command_has_help(cli: typer.Typer, command: str, summary: str) -> None:
    code, out, _ = invoke("schedule", command, "--help", app=cli)
    assert code == 0
    assert summary in " ".join(out.split())


# -- the unattended log ----------------------------------------------------------------------------


def test_long_log_keeps_its_newest_lines_and_an_open_writer_carries_on(tmp_path: Path) -> None:
    log = tmp_path / "unattended.log"
    lines = [f"line {i:07d} " + "x" * 80 for i in range(40_000)]  # ~3.6 MB
    log.write_text("\n".join(lines) + "\n")
    with log.open("a") as writer:  # as cron's >> or systemd's append: hold it
        trim_log(log)
        writer.write("after trim\n")
    kept = log.read_text().splitlines()
    assert log.stat().st_size <= LOG_MAX_BYTES
    assert kept[-2:] == [lines[-1], "after trim"]
    assert kept[0] in lines  # cut at a line start
    assert len(kept) > 1000


def _user() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


def test_scheduled_run_uses_the_tree_it_was_installed_from(host: Host) -> None:
    job = probe_job()
    env = dict(job.environment)
    assert env["XDG_CONFIG_HOME"] == str(host.root / "config")
    package_root = Path(probe.__file__).resolve().parent.parent
    installed = "site-packages" in package_root.parts
    assert env.get("PYTHONPATH") == (None if installed else str(package_root))


# -- failures, configs and what status tells ------------------------------------------------


@pytest.mark.parametrize("verb", ["daemon-reload", "enable"])
def test_a_failed_install_leaves_no_units_and_status_says_not_scheduled(
    host: Host, cli: typer.Typer, verb: str
) -> None:
    host.systemd(up=True)
    host.monkeypatch.setenv("FAKE_SYSTEMCTL_FAIL", verb)
    code, _, err = _invoke(cli, "install", "--every", "1h", "--i-understand-the-risks")
    assert code == 1
    assert f"`systemctl --user {verb}" in err and "no schedule is installed" in err
    assert not (host.unit_dir / "censorprobe.timer").exists()
    assert not (host.unit_dir / "censorprobe.service").exists()
    host.monkeypatch.delenv("FAKE_SYSTEMCTL_FAIL")
    assert _invoke(cli, "status")[1].startswith("not scheduled")


def test_a_config_in_the_install_directory_is_not_baked_in_unless_given(
    host: Host, cli: typer.Typer
) -> None:
    here = host.root / "config.toml"  # the fixture runs in host.root
    here.write_text("[probe]\nconcurrency = 8\n")
    code, out, err = _invoke(cli, "install", "--every", "1h", "--i-understand-the-risks")
    assert code == 0, err
    entry = next(ln for ln in host.crontab.read_text().splitlines() if ln[:1].isdigit())
    assert "--config" not in entry
    assert f"{here} is not used by scheduled runs" in " ".join(err.split())
    assert "config: none (the built-in defaults)" in out

    code, out, err = _invoke(
        cli, "install", "--every", "1h", "--config", str(here), "--i-understand-the-risks"
    )
    assert code == 0, err
    entry = next(ln for ln in host.crontab.read_text().splitlines() if ln[:1].isdigit())
    assert f"--config {here}" in entry
    assert f"config: {here} (given at install)" in out
    assert "is not used by scheduled runs" not in err


def test_status_shows_the_config_database_and_the_last_runs_outcome(
    host: Host, cli: typer.Typer
) -> None:
    from datetime import UTC, datetime

    from probe.model import Connectivity, Run
    from probe.store import Store

    db = host.root / "scheduled.db"
    code, _, err = _invoke(
        cli, "install", "--every", "1h", "--db", str(db), "--i-understand-the-risks"
    )
    assert code == 0, err
    status = _invoke(cli, "status")[1]
    assert "  config: none (the built-in defaults)" in status
    assert f"  database: {db}" in status
    assert "  last run: none yet (no database)" in status
    assert not db.exists()  # status never creates the database

    started = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
    with Store.open(db) as store:
        store.start_run(Run("c0ffee" + "0" * 26, "p" * 32, started, "0.1.0", "d"))
        store.finish_run("c0ffee" + "0" * 26, started, Connectivity.NONE, False)
    host.log_path.parent.mkdir(parents=True, exist_ok=True)
    long_line = "run c0ffee: 25 measurements stored; network connectivity none; " + "x" * 90
    host.log_path.write_text(f"--- unattended run ---\n{long_line}\n")
    status = _invoke(cli, "status")[1]
    assert (
        "  last run: c0ffee00 at 2026-11-20 09:30 UTC from unknown network: connectivity none; "
        "0 blocked, 0 ok, 0 down, 0 inconclusive" in status.splitlines()
    )
    assert f"  last line: {long_line}" in status.splitlines()  # whole, not cut to a width
