"""`probe export`: stream stored data to CSV or JSON Lines with fixed, documented columns."""

from __future__ import annotations

import sys
from contextlib import ExitStack
from enum import StrEnum
from pathlib import Path
from typing import Annotated, TextIO

import typer

from analysis.export import write_measurements_csv, write_measurements_jsonl
from probe.cli.base import EXIT_ERROR, err, user_errors
from probe.cli.common import (
    ConfigOption,
    DbOption,
    PlatformOption,
    open_store,
    parse_when,
    settings_from,
)


class Format(StrEnum):
    csv = "csv"
    jsonl = "jsonl"


def register(app: typer.Typer) -> None:
    @app.command()
    @user_errors
    def export(
        csv_file: Annotated[
            Path | None,
            typer.Option("--csv", help="Write CSV to this file ('-' for stdout).", dir_okay=False),
        ] = None,
        jsonl_file: Annotated[
            Path | None,
            typer.Option(
                "--jsonl", help="Write JSON Lines to this file ('-' for stdout).", dir_okay=False
            ),
        ] = None,
        since: Annotated[
            str | None, typer.Option(help="From this time (ISO-8601, UTC by default, or 7d).")
        ] = None,
        until: Annotated[str | None, typer.Option(help="Before this time.")] = None,
        platform: PlatformOption = None,
        config: ConfigOption = None,
        db: DbOption = None,
    ) -> None:
        """Export measurements (columns: see the README's data dictionary)."""
        if (csv_file is None) == (jsonl_file is None):
            err.print("error: give exactly one of --csv FILE or --jsonl FILE")
            raise typer.Exit(EXIT_ERROR)
        start, end = parse_when(since, "--since"), parse_when(until, "--until")
        settings = settings_from(config)
        target = csv_file or jsonl_file
        assert target is not None
        writer = write_measurements_csv if csv_file is not None else write_measurements_jsonl
        with open_store(settings, db) as store, ExitStack() as stack:
            out: TextIO
            if str(target) == "-":
                out = sys.stdout
            else:
                out = stack.enter_context(target.open("w", encoding="utf-8", newline=""))
            count = 0
            names: list[str | None] = list(platform) if platform else [None]
            for i, name in enumerate(names):
                count += writer(store, out, since=start, until=end, platform=name, header=i == 0)
        err.print(f"exported {count} measurements to {target}")
