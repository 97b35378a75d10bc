"""`probe export`: stream stored data to CSV, JSON Lines or Parquet with fixed, documented columns
(runs, measurements, verdicts, or the events detected over them), with a Frictionless
datapackage.json beside it that types every column (analysis.dictionary)."""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer

from analysis.dictionary import TABLES, Format, resource, save_descriptor
from analysis.events import detect_events
from analysis.export import (
    measurement_rows,
    run_rows,
    select_verdict_rows,
    select_verdicts,
    test_list_categories,
    verdict_rows,
    write_events_csv,
    write_events_jsonl,
    write_measurements_csv,
    write_measurements_jsonl,
    write_runs_csv,
    write_runs_jsonl,
    write_verdicts_csv,
    write_verdicts_jsonl,
)
from analysis.model import Event
from analysis.parquet import write_parquet
from probe.cli.base import ProbeCommand, err, user_errors
from probe.cli.common import (
    ConfigOption,
    DbOption,
    NetworkOption,
    PlatformOption,
    SinceOption,
    TestListOption,
    UntilOption,
    open_store,
    parse_filters,
    settings_from,
)
from probe.cli.terminal import plain
from probe.model import Role, Run
from probe.ooni.disagreements import (
    disagreements,
    write_agreement_csv,
    write_agreement_jsonl,
)
from probe.ooni.export import write_ooni_jsonl
from probe.outputs import atomic_directory, atomic_output
from probe.store import Store
from probe.store.crossnet import derived_verdicts
from probe.targets import select_targets


class What(StrEnum):
    runs = "runs"
    measurements = "measurements"
    verdicts = "verdicts"
    events = "events"
    ooni_agreement = "ooni-agreement"


class Shape(StrEnum):
    columns = "columns"
    ooni = "ooni"


# What a failure count reads by default: the target's own checks (probe.model.Role).
PRIMARY_ONLY = (Role.PRIMARY,)
PARQUET_TABLES = (What.runs, What.measurements, What.verdicts)


def register(app: typer.Typer) -> None:
    @app.command(cls=ProbeCommand)
    @user_errors
    def export(
        what: Annotated[
            What,
            typer.Option(
                "--what",
                metavar="[runs|measurements|verdicts|events|ooni-agreement]",
                help="What to export (columns: docs/data-dictionary.md).",
            ),
        ] = What.measurements,
        format_: Annotated[
            Shape,
            typer.Option(
                "--format",
                metavar="[columns|ooni]",
                help="columns: the data dictionary's fixed columns; ooni: measurements as OONI "
                "data-format documents (with --jsonl).",
            ),
        ] = Shape.columns,
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
        parquet_dir: Annotated[
            Path | None,
            typer.Option(
                "--parquet",
                metavar="DIR",
                help="Write Parquet into this new folder, one partition per UTC day (runs, "
                "measurements, verdicts; needs the parquet extra).",
                file_okay=False,
            ),
        ] = None,
        schema: Annotated[
            bool,
            typer.Option(
                "--schema",
                help="Print the datapackage.json (column types and meanings) an export of "
                "--what writes beside its file, and export nothing.",
            ),
        ] = False,
        all_roles: Annotated[
            bool,
            typer.Option(
                "--all-roles",
                help="Measurements: also the A/B harmless halves, protocol probes, packet "
                "captures and redirect lookups (column role), not only the targets' own checks.",
            ),
        ] = False,
        since: SinceOption = None,
        until: UntilOption = None,
        platform: PlatformOption = None,
        network: NetworkOption = None,
        test_list: TestListOption = None,
        config: ConfigOption = None,
        db: DbOption = None,
    ) -> None:
        """Export runs, measurements, verdicts or events (columns: docs/data-dictionary.md).

        Beside a file or in a Parquet folder goes a Frictionless datapackage.json with every
        column's type. Measurements are the targets' own checks unless --all-roles.
        """
        given = [f for f in (csv_file, jsonl_file, parquet_dir) if f is not None]
        form = (
            Format.CSV if csv_file is not None or not given
            else Format.JSONL if jsonl_file is not None
            else Format.PARQUET
        )  # fmt: skip
        if schema:
            _print_schema(what, form)
            return
        if len(given) != 1:
            raise typer.BadParameter(
                "give exactly one of --csv FILE, --jsonl FILE or --parquet DIR"
            )
        if format_ is Shape.ooni and (jsonl_file is None or what is not What.measurements):
            raise typer.BadParameter(
                "--format ooni writes measurements as JSON Lines: use --jsonl FILE"
            )
        if parquet_dir is not None and what not in PARQUET_TABLES:
            raise typer.BadParameter(
                "--parquet writes runs, measurements or verdicts (events and ooni-agreement: "
                "--csv or --jsonl)"
            )
        filters = parse_filters(since, until, network, platform)
        start, end, asns = filters.since, filters.until, filters.asns
        settings = settings_from(config, test_list)
        target = given[0]
        roles = None if all_roles else PRIMARY_ONLY
        with open_store(settings, db) as store, ExitStack() as stack:
            count = 0
            needs_targets = format_ is Shape.ooni or what in (What.measurements, What.verdicts)
            selection = select_targets(settings) if needs_targets else None
            targets = [] if selection is None else [*selection.targets, *selection.controls]
            categories = test_list_categories(targets)
            if parquet_dir is not None:
                table = TABLES[what.value]
                rows: Iterator[list[Any]]
                if what is What.runs:
                    rows = run_rows(store, since=start, until=end, asns=asns)
                elif what is What.measurements:
                    rows = _measurements(store, start, end, platform, asns, categories, roles)
                else:
                    verdicts = select_verdicts(
                        store, since=start, until=end, platforms=platform, asns=asns
                    )
                    rows = verdict_rows(verdicts, categories)
                with atomic_directory(parquet_dir) as folder:
                    written = write_parquet(table, rows, folder)
                count = written.rows
                # Beside the folder, not in it: readers take every file in it for Parquet.
                parts = [f"{parquet_dir.name}/{path}" for path in written.paths]
                save_descriptor(parquet_dir.absolute().parent, resource(table, form, parts))
            else:
                out: TextIO
                if str(target) == "-":
                    out = sys.stdout
                else:
                    out = stack.enter_context(atomic_output(target, store.path))
                if format_ is Shape.ooni:
                    count = write_ooni_jsonl(
                        store,
                        out,
                        since=start,
                        until=end,
                        platforms=set(platform) if platform else None,
                        asns=set(asns) if asns else None,
                        targets=targets,
                    )
                elif what is What.ooni_agreement:
                    writer_of = write_agreement_csv if form is Format.CSV else write_agreement_jsonl
                    count = writer_of(disagreements(store), out)
                elif what is What.runs:
                    write_runs = write_runs_csv if form is Format.CSV else write_runs_jsonl
                    count = write_runs(run_rows(store, since=start, until=end, asns=asns), out)
                elif what is What.measurements:
                    writer = (
                        write_measurements_csv if form is Format.CSV else write_measurements_jsonl
                    )
                    names: list[str | None] = list(platform) if platform else [None]
                    for i, name in enumerate(names):
                        count += writer(
                            store,
                            out,
                            since=start,
                            until=end,
                            platform=name,
                            asns=asns,
                            runs=_runs_of_period(store, start, end),
                            categories=categories,
                            roles=roles,
                            header=i == 0,
                        )
                elif what is What.verdicts:
                    verdicts = select_verdicts(
                        store, since=start, until=end, platforms=platform, asns=asns
                    )
                    write_verdicts = (
                        write_verdicts_csv if form is Format.CSV else write_verdicts_jsonl
                    )
                    count = write_verdicts(verdicts, out, categories)
                else:
                    write_events: Callable[[Iterable[Event], TextIO], int] = (
                        write_events_csv if form is Format.CSV else write_events_jsonl
                    )
                    # Events read the cross-network verdicts where `probe analyse` made them,
                    # as the report does; the verdicts export keeps the probe's own.
                    judged = select_verdict_rows(
                        store,
                        since=start,
                        until=end,
                        platforms=platform,
                        asns=asns,
                        derived=derived_verdicts(store, start, end),
                    )
                    count = write_events(detect_events(judged, settings.events), out)
                if str(target) != "-" and format_ is Shape.columns and what.value in TABLES:
                    folder = Path(target).absolute().parent
                    save_descriptor(folder, resource(TABLES[what.value], form, [target.name]))
        matched = f" (nothing matches {filters.given})" if count == 0 and filters.given else ""
        shown = "OONI documents" if format_ is Shape.ooni else what.value
        scope = ""
        if what is What.measurements and format_ is Shape.columns and roles is not None:
            scope = " (the targets' own checks: --all-roles adds the controls beside them)"
        err.print(f"exported {count} {shown}{scope} to {plain(str(target))}{matched}")


def _measurements(
    store: Store,
    start: Any,
    end: Any,
    platforms: list[str] | None,
    asns: Any,
    categories: dict[tuple[str, str], str],
    roles: tuple[Role, ...] | None,
) -> Iterator[list[Any]]:
    """Measurement rows for the Parquet writer, platform by platform as the CSV writer goes."""
    names: list[str | None] = list(platforms) if platforms else [None]
    return itertools.chain.from_iterable(
        measurement_rows(
            store,
            since=start,
            until=end,
            platform=name,
            asns=asns,
            runs=_runs_of_period(store, start, end),
            categories=categories,
            roles=roles,
        )
        for name in names
    )


def _runs_of_period(store: Store, start: datetime | None, end: datetime | None) -> Iterator[Run]:
    """The runs the measurements started in [start, end) may belong to, read in one query, not
    one each: a run starts before its measurements (one lasting over a day is looked up on its
    own by measurement_rows)."""
    return store.runs(since=None if start is None else start - timedelta(days=1), until=end)


def _print_schema(what: What, form: Format) -> None:
    table = TABLES.get(what.value)
    if table is None:
        raise typer.BadParameter(f"--schema describes {', '.join(TABLES)}, not {what.value}")
    paths = (
        [f"{what.value}/day=YYYY-MM-DD/part-0.parquet"]
        if form is Format.PARQUET
        else [f"{what.value}.{form}"]
    )
    descriptor = {"profile": "tabular-data-package", "resources": [resource(table, form, paths)]}
    sys.stdout.write(json.dumps(descriptor, indent=2) + "\n")
