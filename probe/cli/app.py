"""The `probe` command: the only place that wires config, checks, runner, store and analysis.

Each command parses its options, calls one library function and renders the result. Bad input
(config, test lists, databases, arguments) ends with a one-line message and exit status 1, never a
traceback. Exit status 3 means the run found no network connectivity; 130 means interrupted.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Annotated, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from probe import __version__
from probe.catalog import CatalogError
from probe.config import ConfigError
from probe.store import StoreError
from probe.testlists import TestListError

P = ParamSpec("P")
R = TypeVar("R")

EXIT_ERROR = 1
EXIT_NO_CONNECTIVITY = 3
EXIT_INTERRUPTED = 130

app = typer.Typer(
    name="probe",
    help="Measure censorship of messaging and social platforms from this network.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, highlight=False)

USER_ERRORS = (ConfigError, CatalogError, StoreError, TestListError)


def user_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn a user-facing error into a clear message and exit status 1."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except USER_ERRORS as exc:
            err.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(EXIT_ERROR) from None
        except OSError as exc:
            message = f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")
            err.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
            raise typer.Exit(EXIT_ERROR) from None

    return wrapper


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


def _register() -> None:
    from probe.cli import export, report, run, targets

    for module in (run, report, export, targets):
        module.register(app)


_register()


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(EXIT_INTERRUPTED)
