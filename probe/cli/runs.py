"""`probe runs` and `probe show`: the past runs in this database, and one run's verdicts with the
measurements they rest on (like `ooniprobe list` and `ooniprobe show`). Read-only."""

from __future__ import annotations

from typing import Annotated

import typer

from probe.cli.base import EXIT_ERROR, ProbeCommand, console, err, user_errors
from probe.cli.common import (
    ConfigOption,
    DbOption,
    NetworkOption,
    SinceOption,
    UntilOption,
    open_store,
    parse_filters,
    settings_from,
)
from probe.cli.render import run_detail_view, runs_table
from probe.cli.terminal import plain
from probe.history import RunLookupError, find_run, run_detail, run_overviews


def register(app: typer.Typer) -> None:
    @app.command(cls=ProbeCommand)
    @user_errors
    def runs(
        since: SinceOption = None,
        until: UntilOption = None,
        network: NetworkOption = None,
        limit: Annotated[
            int, typer.Option("--limit", metavar="N", min=1, help="Show at most N runs.")
        ] = 20,
        config: ConfigOption = None,
        db: DbOption = None,
    ) -> None:
        """List past runs, newest first: id, time, network, connectivity, verdict counts, VPN
        (and whether each was uploaded, when an [upload] collector is configured).

        Give an id (or its first characters) to `probe show` for the evidence.
        """
        filters = parse_filters(since, until, network)
        settings = settings_from(config)
        with open_store(settings, db) as store:
            overviews = run_overviews(
                store, since=filters.since, until=filters.until, asns=filters.asns, limit=limit
            )
        out = console()
        if not overviews:
            given = filters.given
            out.print(f"No runs match {plain(given)}." if given else "No runs yet.")
            return
        uploads = bool(settings.upload_url) or any(o.uploaded for o in overviews)
        out.print(runs_table(overviews, uploads=uploads))

    @app.command(cls=ProbeCommand)
    @user_errors
    def show(
        run: Annotated[
            str, typer.Argument(metavar="RUN", help="A run id, or its first characters.")
        ],
        targets: Annotated[
            list[str] | None,
            typer.Argument(
                metavar="TARGET",
                help="Only these targets: the exact name, else every target containing it.",
            ),
        ] = None,
        verbose: Annotated[
            bool,
            typer.Option("--verbose", "-v", help="The evidence of ok targets too."),
        ] = False,
        config: ConfigOption = None,
        db: DbOption = None,
    ) -> None:
        """One run: where and when it measured, its platforms, every verdict, and the
        measurements each rests on (failures, DNS answers, certificates, HTTP status, title)."""
        with open_store(settings_from(config), db) as store:
            try:
                found = find_run(store, run)
            except RunLookupError as exc:
                err.print(f"[red]error:[/red] {plain(str(exc))}")
                raise typer.Exit(EXIT_ERROR) from None
            detail = run_detail(store, found, targets or ())
        if targets and not detail.verdicts:
            err.print(
                f"[red]error:[/red] no target of run {found.id[:8]} matches "
                f"{plain(' '.join(targets))}"
            )
            raise typer.Exit(EXIT_ERROR)
        out = console()
        for renderable in run_detail_view(detail, verbose=verbose or bool(targets)):
            out.print(renderable)
