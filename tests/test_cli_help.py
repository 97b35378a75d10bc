"""Every command and sub-command of `probe` has help, and `--help` on it exits 0: found by
walking the click command tree, so a command added later is covered without editing this."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol

import pytest
import typer.main

from probe import __version__
from probe.cli.app import app
from tests.cli import invoke


class Command(Protocol):
    """What the walk reads of a click command (typer ships its own copy of click's classes)."""

    hidden: bool
    help: str | None

    def get_short_help_str(self, limit: int = 45) -> str: ...


def _commands(
    command: Command, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Command]]:
    yield path, command
    subcommands: Mapping[str, Command] = getattr(command, "commands", {})  # a group's
    for name, sub in sorted(subcommands.items()):
        if not sub.hidden:
            yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(typer.main.get_command(app)))


def test_the_walk_finds_the_commands_a_user_knows() -> None:
    # Guards the walk itself: an empty or shallow tree would make the test below vacuous.
    paths = {" ".join(path) for path, _ in COMMANDS}
    assert {"run", "report", "export", "targets", "schedule", "helper serve"} <= paths


@pytest.mark.parametrize(
    ("path", "command"), COMMANDS, ids=[" ".join(p) or "probe" for p, _ in COMMANDS]
)
def test_every_command_has_help(path: tuple[str, ...], command: Command) -> None:
    summary = command.get_short_help_str(limit=200).strip()
    assert summary, f"`probe {' '.join(path)}` has no help text"
    code, out, err = invoke(*path, "--help")
    assert code == 0, err
    assert f"Usage: probe {' '.join(path)}".rstrip() in " ".join(out.split())
    # The page shows the command's own help (its one-line summary in a listing may be shorter).
    described = command.help or summary
    assert " ".join(described.split()[:3]) in " ".join(out.split())


def test_version_is_printed() -> None:
    code, out, _ = invoke("--version")
    assert code == 0 and out.strip() == f"probe {__version__}"
