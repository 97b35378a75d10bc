"""The `probe` command group that imports a command's module only when that command is run (or
its own help is shown).

Every command module pulls in what its library needs (aiohttp, SQLAlchemy, dnspython, rich: most
of a second on a slow machine); `probe --version` and `probe --help` need none of it, so the group
lists its commands from a table of names and one-line summaries and loads a module on first use
(click's "lazily loading subcommands" pattern: https://click.palletsprojects.com/en/stable/complex/).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from functools import cache
from typing import Any, ClassVar

import typer
import typer.main
from typer.core import TyperGroup


@dataclass(frozen=True, slots=True)
class CommandEntry:
    """A top-level command: the module whose `register(app)` defines it, and its summary in
    `probe --help` (the one place that summary is written)."""

    module: str
    summary: str


@cache
def _module_commands(module: str) -> Mapping[str, Any]:
    """The click commands `module.register` defines, built once (a module may define several:
    `runs` and `show`)."""
    commands = typer.Typer(rich_markup_mode=None)
    importlib.import_module(module).register(commands)
    return typer.main.get_group(commands).commands


class LazyCommands(MutableMapping[str, Any]):
    """A group's commands by name, each loaded from its module when first looked up; iterating
    gives the names in the table's order without loading anything."""

    def __init__(self, entries: Mapping[str, CommandEntry]) -> None:
        self._entries = entries
        self._added: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name in self._added:
            return self._added[name]
        entry = self._entries[name]
        command = _module_commands(entry.module)[name]
        command.short_help = entry.summary
        return command

    def __setitem__(self, name: str, command: Any) -> None:
        self._added[name] = command

    def __delitem__(self, name: str) -> None:
        del self._added[name]

    def __iter__(self) -> Iterator[str]:
        yield from self._entries
        yield from (name for name in self._added if name not in self._entries)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class LazyGroup(TyperGroup):
    """A typer group whose commands come from `entries` (set by a subclass), loaded lazily.

    Parameters are typed Any: typer vendors its own click in some versions (typer._click)."""

    entries: ClassVar[Mapping[str, CommandEntry]] = {}

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        lazy = LazyCommands(self.entries)
        for name, command in self.commands.items():
            lazy[name] = command
        self.commands = lazy

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """The listing from the table: no command module is imported to show it."""
        rows = [(name, entry.summary) for name, entry in self.entries.items()]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
