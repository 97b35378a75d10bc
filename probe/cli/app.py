"""The `probe` command: the only place that wires config, checks, runner, store and analysis.

Each command module registers itself here; each command parses its options, calls one library
function and renders the result (exit statuses: probe.cli.base).
"""

from __future__ import annotations

import sys
from typing import Annotated

try:
    import typer

    from probe import __version__
    from probe.cli import (
        analyse,
        collector,
        export,
        helper,
        locate,
        merge,
        ooni,
        report,
        run,
        runs,
        schedule,
        targets,
        upload,
    )
    from probe.cli.base import EXIT_INTERRUPTED, err
except KeyboardInterrupt:  # Ctrl-C while the command loads (seconds on a slow machine)
    sys.exit(130)

app = typer.Typer(
    name="probe",
    help="Measure censorship of messaging and social platforms from this network.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help: rich's would show flags as taking a value (`--json <bool>`) and
    # swallow `[probe]` in help strings as markup.
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        print(f"probe {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Measure censorship of messaging and social platforms from this network."""


for _module in (
    run,
    runs,
    upload,
    analyse,
    report,
    export,
    merge,
    ooni,
    targets,
    schedule,
    helper,
    locate,
    collector,
):
    _module.register(app)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(EXIT_INTERRUPTED)
