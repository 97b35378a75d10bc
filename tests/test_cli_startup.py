"""`probe --version` and `probe --help` start without loading the libraries only commands need
(aiohttp, SQLAlchemy, dnspython, rich): seen in the real `python3 -X importtime -m probe` the way
a volunteer's shell starts it, by module name, never by timing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.cli import REPO

HEAVY = ("aiohttp", "sqlalchemy", "dns", "rich")


def _imported_modules(*args: str, code: int = 0) -> set[str]:
    """The modules `python3 -m probe ARGS` imported (importtime's report on stderr); `code` is
    the exit status it must end with."""
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "probe", *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert done.returncode == code, done.stderr[-2000:]
    found = set()
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            found.add(line.rsplit("|", 1)[1].strip())
    return found


def _imported_packages(*args: str, code: int = 0) -> set[str]:
    """The top-level packages `python3 -m probe ARGS` imported."""
    return {name.split(".", 1)[0] for name in _imported_modules(*args, code=code)}


# No arguments shows the help too, with click's usage status (2).
@pytest.mark.parametrize(
    ("args", "code"),
    [(("--version",), 0), (("--help",), 0), ((), 2)],
    ids=["version", "help", "bare"],
)
def test_version_and_help_load_no_command_libraries(args: tuple[str, ...], code: int) -> None:
    imported = _imported_packages(*args, code=code)
    assert "probe" in imported  # the report was read (a vacuous empty set would pass below)
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))


def test_a_command_loads_what_it_needs() -> None:
    # Guards the detection above: the report command's help loads its module and its libraries.
    imported = _imported_packages("report", "--help")
    assert set(HEAVY) <= imported


# What `probe run` needs only once its checks have started (the HTTP check and aiohttp, loaded in
# a thread while the first DNS, TCP and TLS checks run; the database, opened in a thread while
# they run), after its last check (the verdicts, the JSON records, the terminal's tables
# and progress bar), or when a collector, a test helper or an IP-to-ASN file is configured (the
# uploader and aiohttp's server; the helper's client and its controls; the MaxMind reader).
AFTER_THE_FIRST_CHECK = (
    "aiohttp",
    "probe.checks.http",
    "probe.helper.client",
    "analysis.controls",
    "maxminddb",
    "sqlalchemy",
    "probe.store.database",
    "analysis.analyse",
    "analysis.verdicts",
    "analysis.export",
    "probe.cli.render",
    "rich.progress",
    "probe.collector.uploader",
    "aiohttp.web",
)


def test_the_run_command_loads_no_store_analysis_or_rendering_before_it_measures() -> None:
    # `probe run --help` loads the run command's module and everything it imports: what every
    # run loads before its first check.
    imported = _imported_modules("run", "--help")
    assert {"probe.session", "probe.runner", "probe.flows.https", "dns.message"} <= imported
    assert not imported & set(AFTER_THE_FIRST_CHECK), sorted(imported & set(AFTER_THE_FIRST_CHECK))
