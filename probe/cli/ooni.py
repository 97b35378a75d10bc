"""`probe import ooni PATH...`: import OONI measurement documents (probe.ooni.importer does the
work) and print what was imported and how our verdicts compare with OONI's own keys.

Everything printed from a document (experiment names, file names, error messages) is hostile
text: control characters and bidi overrides are escaped, lengths are bounded, one line each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from probe.cli.base import EXIT_ERROR, ProbeCommand, console, err, user_errors
from probe.cli.common import ConfigOption, DbOption, open_store_to_write, settings_from
from probe.cli.terminal import plain
from probe.ooni.agreement import Agreement
from probe.ooni.importer import ImportReport, import_ooni
from probe.ooni.reader import ReaderError

# Problems printed after an import (every one is counted in the summary line).
SHOWN_PROBLEMS = 20

# Printed text from a document is cut to this many characters (a name can be 8 KB).
SHOWN_CHARACTERS = 300


def _shown(text: str) -> str:
    """Untrusted text for the terminal: bounded, then escaped (probe.cli.terminal)."""
    cut = text if len(text) <= SHOWN_CHARACTERS else text[: SHOWN_CHARACTERS - 3] + "..."
    return plain(cut)


_COLUMNS = (
    (Agreement.AGREE, "agree"),
    (Agreement.DISAGREE, "disagree"),
    (Agreement.OURS_UNDECIDED, "we: undecided"),
    (Agreement.OONI_UNDECIDED, "OONI: undecided"),
    (Agreement.BOTH_UNDECIDED, "neither"),
)


def agreement_table(report: ImportReport) -> Table:
    table = Table(title="Our verdicts vs OONI's keys", title_justify="left")
    table.add_column("experiment", no_wrap=True)
    table.add_column("OONI key", no_wrap=True)
    for _, label in _COLUMNS:
        table.add_column(label, justify="right")
    for experiment, key, counts in report.agreement.rows():
        table.add_row(
            _shown(experiment),
            _shown(key),
            *(f"{counts.get(a, 0):,}" for a, _ in _COLUMNS),
        )
    return table


def render_import(report: ImportReport, out: Console) -> None:
    imported = sum(report.imported.values())
    out.print(
        f"{report.documents:,} document(s) read ({report.bytes_read / 1e6:,.1f} MB): "
        f"{imported:,} imported, {report.already_imported:,} already imported, "
        f"{report.malformed:,} malformed, {sum(report.unknown.values()):,} of other experiments"
    )
    for experiment, n in sorted(report.imported.items()):
        out.print(f"  {_shown(experiment)}: {n:,}")
    for experiment, n in sorted(report.unknown.items()):
        out.print(f"  skipped {_shown(experiment)}: {n:,}")
    if report.agreement.counts:
        out.print(agreement_table(report))
    for problem in report.problems[:SHOWN_PROBLEMS]:
        err.print(
            f"malformed: {_shown(problem.location)}: {_shown(problem.message)}",
            soft_wrap=True,
        )
    if report.malformed > SHOWN_PROBLEMS:
        err.print(f"... and {report.malformed - min(SHOWN_PROBLEMS, len(report.problems)):,} more")


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        name="import",
        help="Import measurements made by other tools (OONI's).",
        no_args_is_help=True,
        rich_markup_mode=None,
    )

    @group.command(
        "ooni", cls=ProbeCommand, short_help="Import OONI measurements and compare verdicts."
    )
    @user_errors
    def ooni(
        paths: Annotated[
            list[Path],
            typer.Argument(
                help="OONI files (.jsonl.gz, .jsonl, .json) or folders of them.", metavar="PATH"
            ),
        ],
        config: ConfigOption = None,
        db: DbOption = None,
    ) -> None:
        """Import OONI measurements (web_connectivity, telegram, whatsapp, signal,
        facebook_messenger) as runs with our verdicts, and compare them with OONI's."""
        settings = settings_from(config)
        try:
            with open_store_to_write(settings, db) as store:
                report = import_ooni(store, paths)
        except ReaderError as exc:
            err.print(f"[red]error:[/red] {_shown(str(exc))}", soft_wrap=True)
            raise typer.Exit(EXIT_ERROR) from None
        render_import(report, console())

    app.add_typer(group)
