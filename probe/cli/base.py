"""What every command shares: the error console, exit statuses, and the user-error wrapper.

Bad input (config, test lists, databases, arguments) ends with a one-line message and exit status
1, never a traceback. Exit status 3 means the run found no network connectivity; 4, no informed
consent; 75, another run holds the lock; 130, interrupted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import wraps
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console

from probe.catalog import CatalogError
from probe.cli.terminal import plain
from probe.config import ConfigError
from probe.store import StoreError
from probe.testlists import TestListError

P = ParamSpec("P")
R = TypeVar("R")

EXIT_ERROR = 1
EXIT_NO_CONNECTIVITY = 3
EXIT_NO_CONSENT = 4
EXIT_BUSY = 75  # EX_TEMPFAIL: another run holds the lock; try again later
EXIT_INTERRUPTED = 130

err = Console(stderr=True, highlight=False)

USER_ERRORS = (ConfigError, CatalogError, StoreError, TestListError)


def print_skipped(problems: Iterable[str]) -> None:
    """One `skipped:` line per input row or entry that was left out."""
    for problem in problems:
        err.print(f"[yellow]skipped:[/yellow] {plain(problem)}", soft_wrap=True)


def user_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn a user-facing error into a clear message and exit status 1."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except USER_ERRORS as exc:
            err.print(f"[red]error:[/red] {plain(exc)}", soft_wrap=True)
            raise typer.Exit(EXIT_ERROR) from None
        except OSError as exc:
            message = f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")
            err.print(f"[red]error:[/red] {plain(message)}", soft_wrap=True)
            raise typer.Exit(EXIT_ERROR) from None

    return wrapper
