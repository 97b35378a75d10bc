"""What every command shares: the error console, exit statuses, and the user-error wrapper.

Bad input (config, test lists, databases, arguments) ends with a one-line message and exit status
1, never a traceback. Exit status 3 means the run found no network connectivity; 4, no informed
consent; 75, another run holds the lock; 130, interrupted.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import wraps
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from probe.catalog import CatalogError
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

# C0 and C1 controls and DEL, but not tab: an ESC or CSI from a test list could rewrite the
# volunteer's terminal (OSC 8 links, CSI 2J).
_CONTROLS = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def plain(text: str) -> str:
    """Text from outside (a test list, a config) made safe to print: rich markup is escaped and
    control characters are shown as escapes, never sent to the terminal."""
    return escape(_CONTROLS.sub(lambda m: repr(m.group())[1:-1], text))


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
            err.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(EXIT_ERROR) from None
        except OSError as exc:
            message = f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")
            err.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
            raise typer.Exit(EXIT_ERROR) from None

    return wrapper
