"""`probe report`: the latest status of every platform and endpoint, as a table."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from probe.cli.base import user_errors
from probe.cli.common import ConfigOption, DbOption, PlatformOption, open_store, settings_from


def register(app: typer.Typer) -> None:
    @app.command()
    @user_errors
    def report(
        config: ConfigOption = None, db: DbOption = None, platform: PlatformOption = None
    ) -> None:
        """Show the latest measured status of each platform and endpoint."""
        settings = settings_from(config)
        with open_store(settings, db) as store:
            names: list[str | None] = list(platform) if platform else [None]
            rows = [m for name in names for m in store.latest_status(platform=name)]
        console = Console()
        if not rows:
            console.print("No measurements yet: run `probe run` first.")
            return
        table = Table(title="Latest status per platform and endpoint")
        for column in ("platform", "target", "layer", "endpoint", "result", "measured (UTC)"):
            table.add_column(column, overflow="fold")
        for m in rows:
            obs = m.observation
            result = "[green]ok[/green]" if obs.ok else f"[red]{obs.failure}[/red]"
            when = obs.started_at.strftime("%Y-%m-%d %H:%M:%S")
            table.add_row(m.platform, m.target, obs.layer.value, obs.endpoint, result, when)
        console.print(table)
