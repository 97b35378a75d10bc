"""The `probe` command: the only place that wires config, checks, runner, store and analysis.

Each command module registers itself (`register(app)`) and is imported only when its command is
used (probe.cli.lazy): the table below names each top-level command's module and its summary.
Each command parses its options, calls one library function and renders the result (exit
statuses: probe.cli.base).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

try:
    import typer

    from probe.cli.lazy import CommandEntry, LazyGroup
    from probe.visible import visible
except KeyboardInterrupt:  # Ctrl-C while the command loads (seconds on a slow machine)
    sys.exit(130)

# In the order `probe --help` lists them.
COMMANDS = {
    "run": CommandEntry("probe.cli.run", "Measure every platform once and store it."),
    "runs": CommandEntry("probe.cli.runs", "List past runs, newest first."),
    "show": CommandEntry("probe.cli.runs", "One run's verdicts and their evidence."),
    "upload": CommandEntry("probe.cli.upload", "Send what the collector has not acknowledged."),
    "analyse": CommandEntry("probe.cli.analyse", "Re-judge verdicts with other networks' data."),
    "report": CommandEntry("probe.cli.report", "Current state, latest verdicts and events."),
    "export": CommandEntry(
        "probe.cli.export", "Export runs, measurements, verdicts, events or OONI documents."
    ),
    "merge": CommandEntry("probe.cli.merge", "Merge probe databases into one."),
    "targets": CommandEntry("probe.cli.targets", "List the targets a run would measure."),
    "locate": CommandEntry("probe.cli.locate", "Find the hop where a censor interferes."),
    "import": CommandEntry("probe.cli.ooni", "Import measurements made by other tools."),
    "schedule": CommandEntry("probe.cli.schedule", "Run the probe unattended on a schedule."),
    "helper": CommandEntry("probe.cli.helper", "The control test helper (for an uncensored host)."),
    "collector": CommandEntry(
        "probe.cli.collector", "The collector that receives probes' uploads."
    ),
}


class _ProbeGroup(LazyGroup):
    """The probe's commands; a usage error quoting the command line (an unknown command, an extra
    argument, a value outside a choice) shows the control and bidi characters in it visibly:
    click quotes some values with repr() and others (extra arguments) as they are."""

    entries = COMMANDS

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        with _visible_usage_errors():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: Any) -> Any:
        with _visible_usage_errors():
            return super().invoke(ctx)


@contextmanager
def _visible_usage_errors() -> Iterator[None]:
    try:
        yield
    except typer.TyperException as exc:  # click's exceptions, as typer vendors them
        message = getattr(exc, "message", None)
        if isinstance(message, str):
            exc.message = "\n".join(visible(line) for line in message.split("\n"))
        raise


app = typer.Typer(
    name="probe",
    cls=_ProbeGroup,
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
        from probe import __version__  # read from the package's metadata: only when shown

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


def _unraisable(report: Any) -> None:
    """A Ctrl-C that lands in a finaliser (a weakref callback or a __del__ the collector runs)
    cannot stop anything there: Python reports it as unraisable, with a traceback, and goes on,
    so the interrupt was lost and the volunteer saw a traceback. It is delivered again instead,
    from a thread, so that it lands outside the finaliser and ends the command quietly (exit
    130); anything else goes to the hook that was there before."""
    if isinstance(report.exc_value, KeyboardInterrupt):
        # _thread: threading.Thread.start() waits for the thread, and the signal would land in
        # that wait, inside this hook. The delay lets the finaliser end first; one landing in
        # a finaliser again comes back here.
        import _thread

        _thread.start_new_thread(_interrupt_again, ())
        return
    _previous_unraisable(report)


_previous_unraisable = sys.unraisablehook
_REDELIVERY_DELAY = 0.05  # s


def _interrupt_again() -> None:
    import os
    import signal
    import time

    time.sleep(_REDELIVERY_DELAY)
    os.kill(os.getpid(), signal.SIGINT)


def main() -> None:
    """Console-script entry point."""
    sys.unraisablehook = _unraisable
    try:
        app()
    except KeyboardInterrupt:
        from probe.cli.base import EXIT_INTERRUPTED, err

        err.print("interrupted")
        sys.exit(EXIT_INTERRUPTED)
