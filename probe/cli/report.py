"""`probe report`: per platform its current state, latest verdict per target and events over a
period, as terminal tables and, with --html, one self-contained page with timeline charts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from analysis.events import DetectorParams
from analysis.report import build_report, render_html, report_tables
from probe.cli.base import EXIT_ERROR, err, user_errors
from probe.cli.common import (
    ConfigOption,
    DbOption,
    PlatformOption,
    open_store,
    parse_when,
    settings_from,
)
from probe.config import Settings

SinceOption = Annotated[
    str | None,
    typer.Option(help="From this time (ISO-8601, UTC unless a zone is given, or an age: 7d)."),
]
UntilOption = Annotated[str | None, typer.Option(help="Before this time (same forms).")]
NetworkOption = Annotated[
    list[str] | None,
    typer.Option(
        "--network",
        "-n",
        help="Only this network: an AS number such as 58224 or AS58224 (repeatable).",
    ),
]


def parse_networks(values: list[str] | None) -> list[int] | None:
    """--network values as AS numbers ("AS58224" and "58224" alike); None when none given."""
    if not values:
        return None
    asns = []
    for value in values:
        text = value.strip()
        digits = text[2:] if text[:2].upper() == "AS" else text
        if not digits.isdigit() or int(digits) >= 2**32:
            raise typer.BadParameter(
                f"{value!r} is not an AS number (e.g. 58224 or AS58224)", param_hint="--network"
            )
        asns.append(int(digits))
    return asns


def detector_params(settings: Settings) -> DetectorParams:
    """The event detector's settings from config.toml's [events]; a bad value ends the command
    with a one-line message naming the key (exit status 1)."""
    try:
        return DetectorParams.from_mapping(settings.events)
    except ValueError as exc:
        where = f"{settings.source}: " if settings.source else ""
        err.print(f"[red]error:[/red] {escape(where + str(exc))}", soft_wrap=True)
        raise typer.Exit(EXIT_ERROR) from None


def register(app: typer.Typer) -> None:
    @app.command()
    @user_errors
    def report(
        since: SinceOption = None,
        until: UntilOption = None,
        network: NetworkOption = None,
        platform: PlatformOption = None,
        html: Annotated[
            Path | None,
            typer.Option(
                "--html",
                help="Also write the report as one self-contained HTML page with charts.",
                dir_okay=False,
            ),
        ] = None,
        config: ConfigOption = None,
        db: DbOption = None,
    ) -> None:
        """Per platform: current state, latest verdict per target, and events over the period."""
        start, end = parse_when(since, "--since"), parse_when(until, "--until")
        asns = parse_networks(network)
        settings = settings_from(config)
        params = detector_params(settings)
        with open_store(settings, db) as store:
            built = build_report(
                store, since=start, until=end, platforms=platform, asns=asns, params=params
            )
        if html is not None:
            html.write_text(render_html(built), encoding="utf-8")
            err.print(f"wrote the HTML report to {escape(str(html))}")
        console = Console()
        for renderable in report_tables(built):
            console.print(renderable)
