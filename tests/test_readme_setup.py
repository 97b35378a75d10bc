"""The README's setup lines: the first command installs into a virtual environment (Debian's
Python refuses a system-wide pip install, PEP 668) in one line, `.ci/run` runs exactly that line
in a fresh copy and then exactly the README's test command, and the lab's needs are an extra the
README's lab line installs."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

from tests.lab.__main__ import _parser

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")


def _first_command() -> str:
    done = subprocess.run(
        ["bash", str(REPO / ".ci" / "readme-command"), str(REPO / "README.md")],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_first_command_is_one_line_that_installs_into_a_venv_and_runs_its_probe() -> None:
    line = _first_command()
    assert line and "\n" not in line
    assert "python3 -m venv .venv" in line
    assert ".venv/bin/pip install ." in line
    assert line.endswith(".venv/bin/probe run")
    # Never the global interpreter's pip (externally-managed-environment on Debian/Ubuntu).
    assert "python3 -m pip" not in line
    assert "python3-venv" in line  # Debian's venv needs it: installed when ensurepip is missing


def test_ci_runs_the_first_command_in_a_fresh_copy_then_exactly_the_readme_test_command() -> None:
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    steps = [line for line in ci if line and not line.startswith("#")]
    assert steps[-2:] == ["bash .ci/first-command", "exec bash tests/run.sh"]
    assert "\n    bash tests/run.sh\n" in README
    first = (REPO / ".ci" / "first-command").read_text(encoding="utf-8")
    assert 'bash -c "$line"' in first  # the extracted line itself, not a copy of it
    assert "mktemp -d" in first and "git ls-files" in first


def test_lab_lines_install_the_lab_extra_and_use_the_venv_python() -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert any(req.startswith("trustme") for req in extras["lab"])
    lab_lines = [line.strip() for line in README.splitlines() if "-m tests.lab" in line]
    assert lab_lines[0].startswith(".venv/bin/pip install '.[lab]' && ")
    assert all("sudo .venv/bin/python -m tests.lab" in line for line in lab_lines)
    assert all("sudo python3" not in line for line in lab_lines)


def test_lab_cli_has_a_helper_switch() -> None:
    options = _parser().parse_args(["--helper", "--scenario", "site_down"])
    assert options.helper is True
    assert _parser().parse_args([]).helper is False
