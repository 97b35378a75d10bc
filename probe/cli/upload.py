"""`probe upload`: send what the collector has not acknowledged yet; `--status` shows the queue."""

from __future__ import annotations

from typing import Annotated

import typer

from probe.cli.base import EXIT_ERROR, ProbeCommand, console, err, user_errors
from probe.cli.common import ConfigOption, DbOption, open_store_to_write, settings_from
from probe.cli.terminal import plain
from probe.collector.uploader import upload_now, upload_status, upload_target
from probe.store import Store


def register(app: typer.Typer) -> None:
    @app.command(cls=ProbeCommand)
    @user_errors
    def upload(
        config: ConfigOption = None,
        db: DbOption = None,
        status: Annotated[
            bool, typer.Option("--status", help="Show what is not uploaded yet; send nothing.")
        ] = False,
    ) -> None:
        """Upload every run, measurement and verdict the collector has not acknowledged."""
        settings = settings_from(config)
        with open_store_to_write(settings, db) as store:
            if status:
                _render_status(store)
                return
            target = upload_target(settings)
            if target is None:
                err.print(plain("error: no collector configured: set [upload] url and token"))
                raise typer.Exit(EXIT_ERROR)
            report = upload_now(store, target)
        err.print(plain(report.describe()))
        if report.error is not None:
            raise typer.Exit(EXIT_ERROR)


def _render_status(store: Store) -> None:
    state = upload_status(store)
    out = console()
    if not state.queued:
        out.print("everything is uploaded")
        return
    out.print(
        f"{len(state.queued)} run(s) and {state.measurements} measurement(s) not yet uploaded"
    )
    for item in state.queued:
        line = f"  run {item.run.id} started {item.run.started_at.isoformat(timespec='seconds')}"
        if item.attempts:
            line += f", {item.attempts} attempt(s)"
        if item.last_error:
            line += f", last: {item.last_error}"
        out.print(plain(line))
