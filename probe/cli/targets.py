"""`probe targets`: what a run would test, after config, catalog overrides and test lists."""

from __future__ import annotations

import typer
from rich.table import Table

from probe.cli.base import ProbeCommand, console, print_skipped, user_errors
from probe.cli.common import ConfigOption, PlatformOption, TestListOption, settings_from
from probe.cli.terminal import plain
from probe.targets import select_targets


def register(app: typer.Typer) -> None:
    @app.command(cls=ProbeCommand)
    @user_errors
    def targets(
        config: ConfigOption = None,
        platform: PlatformOption = None,
        test_list: TestListOption = None,
    ) -> None:
        """List the targets a run would measure (controls included)."""
        settings = settings_from(config, test_list)
        selection = select_targets(settings, platform or ())
        print_skipped(selection.problems)
        table = Table(title=f"{len(selection.targets)} targets, {len(selection.controls)} controls")
        for column in ("platform", "target", "kind", "host", "ports", "method", "source"):
            table.add_column(column, overflow="fold")
        for t in (*selection.controls, *selection.targets):
            ports = ",".join(map(str, t.ports)) or "-"
            platform_name = f"{t.platform} (control)" if t.control else t.platform
            cells = (platform_name, t.name, t.kind.value, t.host, ports, t.method, t.source)
            # Names and hosts come from test lists and configs: shown as text, never as markup.
            table.add_row(*map(plain, cells))
        console().print(table)
