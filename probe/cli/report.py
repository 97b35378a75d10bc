"""`probe report`: per platform its current state, latest verdict per target and events over a
period, as terminal tables and, with --html, one self-contained page with timeline charts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from analysis.report.build import build_report
from analysis.report.page import render_html
from probe.cli.base import ProbeCommand, console, err, user_errors
from probe.cli.common import (
    ConfigOption,
    DbOption,
    NetworkOption,
    PlatformOption,
    SinceOption,
    UntilOption,
    open_store,
    parse_filters,
    settings_from,
)
from probe.cli.render import report_tables
from probe.cli.terminal import plain
from probe.outputs import atomic_output, refuse_database
from probe.store.crossnet import derived_verdicts


def register(app: typer.Typer) -> None:
    @app.command(cls=ProbeCommand)
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
                metavar="FILE",
                help="Also write the report as one self-contained HTML page with charts.",
                dir_okay=False,
            ),
        ] = None,
        config: ConfigOption = None,
        db: DbOption = None,
    ) -> None:
        """Per platform: current state, latest verdict per target, and events over the period."""
        filters = parse_filters(since, until, network, platform)
        settings = settings_from(config)
        params = settings.events
        with open_store(settings, db) as store:
            if html is not None:
                refuse_database(html, store.path)  # before the work, not after it
            built = build_report(
                store,
                since=filters.since,
                until=filters.until,
                platforms=filters.platforms,
                asns=filters.asns,
                params=params,
                derived=derived_verdicts(store, filters.since, filters.until),
            )
        if filters.given and not built.verdicts and not built.latest_measurements:
            console().print(
                f"Nothing matches {plain(filters.given)}: no verdicts, nothing to show."
            )
            if html is not None:
                err.print(f"{plain(str(html))} was not written")
            return
        if html is not None:
            with atomic_output(html, store.path) as handle:
                handle.write(render_html(built))
            err.print(f"wrote the HTML report to {plain(str(html))}")
        out = console()
        for renderable in report_tables(built):
            out.print(renderable)
