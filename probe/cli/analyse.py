"""`probe analyse`: decide, with measurements from other networks, what one probe could not."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from analysis.crossnet import DEFAULT_WINDOW, analyse_across_networks
from probe.cli.base import ProbeCommand, console, err, user_errors
from probe.cli.common import ConfigOption, DbOption, open_store_to_write, parse_when, settings_from
from probe.cli.terminal import plain
from probe.records import Status


def register(app: typer.Typer) -> None:
    @app.command(cls=ProbeCommand)
    @user_errors
    def analyse(
        config: ConfigOption = None,
        db: DbOption = None,
        since: Annotated[
            str | None,
            typer.Option(
                "--since", metavar="TIME", help="Only runs started since (date or age: 7d)."
            ),
        ] = None,
        until: Annotated[
            str | None,
            typer.Option("--until", metavar="TIME", help="Only runs started before."),
        ] = None,
        window: Annotated[
            int,
            typer.Option(
                "--window",
                metavar="MINUTES",
                min=1,
                max=24 * 60,
                help="Minutes either side of a run in which other networks' measurements count.",
            ),
        ] = int(DEFAULT_WINDOW.total_seconds() // 60),
    ) -> None:
        """Re-judge inconclusive verdicts (no control) with other networks' measurements as
        controls; the probes' own verdicts are kept, derived ones are stored beside them."""
        settings = settings_from(config)
        with open_store_to_write(settings, db) as store:
            report = analyse_across_networks(
                store,
                since=parse_when(since, "--since"),
                until=parse_when(until, "--until"),
                window=timedelta(minutes=window),
            )
        out = console()
        for item in report.derived:
            v = item.verdict
            network = "unknown network" if v.asn is None else f"AS{v.asn}"
            technique = f" ({v.technique})" if v.technique else ""
            out.print(
                plain(
                    f"{v.measured_at.isoformat(timespec='minutes')} {network} "
                    f"{v.platform}/{v.target}: {v.status.value}{technique} [{v.rule_id}] "
                    f"{v.detail}; controls: {len(item.controls)} measurement(s)"
                ),
            )
        err.print(
            f"examined {report.examined} undecided verdict(s): "
            f"{report.count(Status.BLOCKED)} blocked and {report.count(Status.DOWN)} down "
            "from other networks' measurements"
        )
