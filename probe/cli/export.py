"""`probe export`: stream stored data to CSV or JSON Lines with fixed, documented columns:
measurements, verdicts, or the events detected over them."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, TextIO

import typer

from analysis.events import detect_events
from analysis.export import (
    select_verdicts,
    write_events_csv,
    write_events_jsonl,
    write_measurements_csv,
    write_measurements_jsonl,
    write_verdicts_csv,
    write_verdicts_jsonl,
)
from analysis.model import Event
from probe.cli.base import ProbeCommand, err, user_errors
from probe.cli.common import (
    ConfigOption,
    DbOption,
    NetworkOption,
    PlatformOption,
    SinceOption,
    UntilOption,
    open_store,
    parse_networks,
    parse_when,
    settings_from,
)
from probe.cli.render import filters_text
from probe.cli.terminal import plain
from probe.ooni.disagreements import (
    disagreements,
    write_agreement_csv,
    write_agreement_jsonl,
)
from probe.ooni.export import write_ooni_jsonl
from probe.outputs import atomic_output
from probe.records import Verdict
from probe.targets import select_targets


class What(StrEnum):
    measurements = "measurements"
    verdicts = "verdicts"
    events = "events"
    ooni_agreement = "ooni-agreement"


class Format(StrEnum):
    columns = "columns"
    ooni = "ooni"


def register(app: typer.Typer) -> None:
    @app.command(cls=ProbeCommand)
    @user_errors
    def export(
        what: Annotated[
            What,
            typer.Option(
                "--what",
                metavar="[measurements|verdicts|events|ooni-agreement]",
                help="What to export (columns: the README's data dictionary).",
            ),
        ] = What.measurements,
        format_: Annotated[
            Format,
            typer.Option(
                "--format",
                metavar="[columns|ooni]",
                help="columns: the data dictionary's fixed columns; ooni: measurements as OONI "
                "data-format documents (with --jsonl).",
            ),
        ] = Format.columns,
        csv_file: Annotated[
            Path | None,
            typer.Option(
                "--csv",
                metavar="FILE",
                help="Write CSV to this file ('-' for stdout).",
                dir_okay=False,
            ),
        ] = None,
        jsonl_file: Annotated[
            Path | None,
            typer.Option(
                "--jsonl",
                metavar="FILE",
                help="Write JSON Lines to this file ('-' for stdout).",
                dir_okay=False,
            ),
        ] = None,
        since: SinceOption = None,
        until: UntilOption = None,
        platform: PlatformOption = None,
        network: NetworkOption = None,
        config: ConfigOption = None,
        db: DbOption = None,
    ) -> None:
        """Export measurements, verdicts or events (columns: see the README's data dictionary)."""
        if (csv_file is None) == (jsonl_file is None):
            raise typer.BadParameter("give exactly one of --csv FILE or --jsonl FILE")
        if format_ is Format.ooni and (jsonl_file is None or what is not What.measurements):
            raise typer.BadParameter(
                "--format ooni writes measurements as JSON Lines: use --jsonl FILE"
            )
        start, end = parse_when(since, "--since"), parse_when(until, "--until")
        asns = parse_networks(network)
        settings = settings_from(config)
        params = settings.events if what is What.events else None
        target = csv_file or jsonl_file
        assert target is not None
        as_csv = csv_file is not None
        with open_store(settings, db) as store, ExitStack() as stack:
            out: TextIO
            if str(target) == "-":
                out = sys.stdout
            else:
                out = stack.enter_context(atomic_output(target, store.path))
            count = 0
            if format_ is Format.ooni:
                # The configured targets (catalog, config, test lists) tell each target's kind.
                selection = select_targets(settings)
                count = write_ooni_jsonl(
                    store,
                    out,
                    since=start,
                    until=end,
                    platforms=set(platform) if platform else None,
                    asns=set(asns) if asns else None,
                    targets=[*selection.targets, *selection.controls],
                )
            elif what is What.ooni_agreement:
                writer_of = write_agreement_csv if as_csv else write_agreement_jsonl
                count = writer_of(disagreements(store), out)
            elif what is What.measurements:
                writer = write_measurements_csv if as_csv else write_measurements_jsonl
                names: list[str | None] = list(platform) if platform else [None]
                # Runs read in one query, not one each: a run starts before its measurements
                # (and one lasting over a day is looked up on its own).
                runs_since = None if start is None else start - timedelta(days=1)
                for i, name in enumerate(names):
                    count += writer(
                        store,
                        out,
                        since=start,
                        until=end,
                        platform=name,
                        asns=asns,
                        runs=store.runs(since=runs_since, until=end),
                        header=i == 0,
                    )
            else:
                verdicts = select_verdicts(
                    store, since=start, until=end, platforms=platform, asns=asns
                )
                if what is What.verdicts:
                    write_verdicts: Callable[[Iterable[Verdict], TextIO], int] = (
                        write_verdicts_csv if as_csv else write_verdicts_jsonl
                    )
                    count = write_verdicts(verdicts, out)
                else:
                    write_events: Callable[[Iterable[Event], TextIO], int] = (
                        write_events_csv if as_csv else write_events_jsonl
                    )
                    count = write_events(detect_events(verdicts, params), out)
        given = filters_text(since=since, until=until, networks=network, platforms=platform)
        matched = f" (nothing matches {given})" if count == 0 and given else ""
        shown = "OONI documents" if format_ is Format.ooni else what.value
        err.print(f"exported {count} {shown} to {plain(str(target))}{matched}")
