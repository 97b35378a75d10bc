"""A dead network is not censorship: `probe run` with the built-in catalog, in a network namespace
that has nothing but loopback, ends at once with the no-connectivity message and stores no
measurement that could be read as blocking."""

from __future__ import annotations

import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="needs root and iproute2 to create a network namespace",
)


@pytest.fixture
def isolated_namespace() -> Iterator[str]:
    name = f"cpd-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        links = subprocess.run(
            ["ip", "-n", name, "-o", "link"], check=True, capture_output=True, text=True
        ).stdout
        assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"]
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_dead_uplink_ends_with_no_connectivity_and_nothing_blocked(
    isolated_namespace: str, tmp_path: Path
) -> None:
    db = tmp_path / "dead.db"
    result = subprocess.run(
        ["ip", "netns", "exec", isolated_namespace, sys.executable, "-m", "probe", "run",
         "--config", str(REPO / "config.toml"), "--db", str(db), "--i-understand-the-risks"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert "No network connectivity: none of the 6 control sites could be reached" in " ".join(
        result.stdout.split()
    )
    assert "Traceback" not in result.stderr
    with sqlite3.connect(db) as conn:
        assert conn.execute("select connectivity, interrupted from runs").fetchall() == [
            ("none", 0)
        ]
        platforms = {row[0] for row in conn.execute("select distinct platform from measurements")}
    # Only what finished before the controls failed may be stored; the controls are among it.
    assert "control" in platforms
