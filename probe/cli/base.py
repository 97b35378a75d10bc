"""What every command shares: the consoles, exit statuses, and the user-error wrapper.

Bad input (config, test lists, databases) ends with a one-line message and exit status 1, never
a traceback; a usage error (an unknown option, a missing or malformed argument) is click's, exit
status 2. Exit status 3 means the run found no network connectivity; 4, no informed consent; 5,
some measurements of the run could not be stored (the database stayed locked or refused them);
75, another run holds the lock; 130, interrupted.

Output is wrapped to the terminal's width only on a terminal: in a log, a pipe or a file a line
stays one line (a table keeps its natural width), so that grep, `tail -1` and `probe schedule
status` read whole sentences.
"""

from __future__ import annotations

import inspect
import sys
import textwrap
from collections.abc import Callable, Iterable
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console, ConsoleDimensions
from rich.table import Table
from rich.text import Text
from typer.core import TyperCommand

from probe.catalog import CatalogError
from probe.cli.terminal import plain, visible
from probe.config import ConfigError
from probe.consent import default_consent_path, require_consent
from probe.outputs import OutputRefusedError
from probe.store import StoreError
from probe.testlists import TestListError

P = ParamSpec("P")
R = TypeVar("R")

EXIT_ERROR = 1
EXIT_USAGE = 2  # click's status for a usage error
EXIT_NO_CONNECTIVITY = 3
EXIT_NO_CONSENT = 4
EXIT_NOT_STORED = 5  # measured, but not all of it could be stored: the run is incomplete
EXIT_TARGETS_FAILED = 6  # measured and stored, but the probe failed on some targets (a bug)
EXIT_BUSY = 75  # EX_TEMPFAIL: another run holds the lock; try again later
EXIT_INTERRUPTED = 130

# Wide enough for any line the probe prints; a table is only as wide as its content needs.
UNWRAPPED_WIDTH = 100_000


class _Console(Console):
    """A rich console that hard-wraps to the terminal's width, and never when it writes
    elsewhere (the file is looked at on every print: CliRunner and redirections swap it)."""

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        return size if self.is_terminal else ConsoleDimensions(UNWRAPPED_WIDTH, size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size


def console(*, stderr: bool = False) -> Console:
    """The console commands print with (stdout, or stderr for notes and errors)."""
    return _Console(stderr=stderr, highlight=False)


err = console(stderr=True)


class ProbeCommand(TyperCommand):
    """A command whose help names each argument by its placeholder alone, as options are (typer
    would add its Python type, `SOURCE <list[Path]>`, and brace required ones, `{SOURCE}`), and
    wraps its text at spaces only (_wrap).

    Parameters are typed Any: typer vendors its own click in some versions (typer._click)."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        pieces += [_placeholder(p) for p in self.get_params(ctx) if _is_argument(p)]
        return pieces

    def format_help_text(self, ctx: Any, formatter: Any) -> None:
        text = inspect.cleandoc(self.help).partition("\f")[0] if self.help else ""
        if text:
            formatter.write_paragraph()
            with formatter.indentation():
                indent = " " * formatter.current_indent
                formatter.write(_wrap(text, formatter.width, indent) + "\n")

    def format_options(self, ctx: Any, formatter: Any) -> None:
        params = self.get_params(ctx)
        arguments = [
            (_placeholder(p), getattr(p, "help", None) or "") for p in params if _is_argument(p)
        ]
        options = [r for p in params if not _is_argument(p) and (r := p.get_help_record(ctx))]
        if arguments:
            with formatter.section("Arguments"):
                _write_dl(formatter, arguments)
        if options:
            with formatter.section("Options"):
                _write_dl(formatter, options)


def _wrap(text: str, width: int, indent: str) -> str:
    """Paragraphs (blank-line separated) filled to `width` at spaces: click's own wrapper also
    breaks at hyphens (`docs/data-`/`dictionary.md`); only a word wider than `width` itself is
    cut."""
    wrapper = textwrap.TextWrapper(
        width=max(width, len(indent) + 10),
        initial_indent=indent,
        subsequent_indent=indent,
        break_on_hyphens=False,
    )
    paragraphs = [" ".join(p.split()) for p in text.split("\n\n") if p.strip()]
    return "\n\n".join(wrapper.fill(p) for p in paragraphs)


def _write_dl(formatter: Any, rows: list[tuple[str, str]]) -> None:
    """click's definition list (options and their help), its help column wrapped by _wrap; a
    help holding a word wider than that column (a URL) goes below its option, 2 columns in."""
    first_col = min(max(len(first) for first, _ in rows), 30) + 2
    indent = formatter.current_indent
    text_width = max(formatter.width - first_col - 2, 10)
    for first, second in rows:
        formatter.write(f"{'':>{indent}}{first}")
        if not second:
            formatter.write("\n")
            continue
        if max(len(word) for word in second.split()) > text_width:
            # click's width keeps a 2-column margin to the terminal's edge: such a word may use it
            below = " " * (indent + 2)
            formatter.write("\n" + _wrap(second, formatter.width + 2, below) + "\n")
            continue
        if len(first) <= first_col - 2:
            formatter.write(" " * (first_col - len(first)))
        else:
            formatter.write("\n" + " " * (first_col + indent))
        lines = _wrap(second, text_width, "").splitlines() or [""]
        formatter.write(lines[0] + "\n")
        for line in lines[1:]:
            formatter.write(f"{'':>{first_col + indent}}{line}\n")


def _is_argument(param: Any) -> bool:
    return bool(param.param_type_name == "argument")


def _placeholder(param: Any) -> str:
    name = param.metavar or (param.name or "").upper()
    name += "..." if param.nargs != 1 else ""
    return name if param.required else f"[{name}]"


USER_ERRORS: tuple[type[Exception], ...] = (
    ConfigError,
    CatalogError,
    StoreError,
    TestListError,
    OutputRefusedError,
)
# User errors of modules only some commands load (the exports'), by module and class name: naming
# them here must not load them (and what they import) for every command. An error of a module
# that was never loaded cannot have been raised.
LOADED_LATER_USER_ERRORS = (
    ("analysis.dictionary", "DescriptorError"),
    ("analysis.parquet", "ParquetUnavailableError"),
)


def user_error_classes() -> tuple[type[Exception], ...]:
    """USER_ERRORS, and those of LOADED_LATER_USER_ERRORS whose module is loaded."""
    later = tuple(
        getattr(sys.modules[module], name)
        for module, name in LOADED_LATER_USER_ERRORS
        if module in sys.modules
    )
    return (*USER_ERRORS, *later)


def say(text: str) -> None:
    """Prose for the volunteer on stderr (the consent text, a refusal): on a terminal re-flowed
    to its width at words (lines written for 96 columns would be cut mid-word by an 80-column
    terminal itself), in a log one line per paragraph. A line starting with "* " begins a list
    item, a line indented by two spaces continues it, a blank line ends a paragraph."""
    items: list[tuple[bool, list[str]]] = []
    for line in text.split("\n"):
        if not line.strip():
            items.append((False, []))
        elif line.startswith("* "):
            items.append((True, [line[2:]]))
        elif items and items[-1][1] and line.startswith("  "):
            items[-1][1].append(line.strip())
        elif items and items[-1][1] and not items[-1][0]:
            items[-1][1].append(line)
        else:
            items.append((False, [line]))
    for bullet, lines in items:
        body = Text(visible(" ".join(lines)))
        if bullet:
            grid = Table.grid(padding=(0, 1))
            grid.add_column(no_wrap=True)
            grid.add_column()
            grid.add_row("*", body)
            err.print(grid, highlight=False)
        else:
            err.print(body, highlight=False)


def consent_or_exit(interactive: bool, flag: bool) -> None:
    """Go on only with the volunteer's consent (probe.consent: on record, given by --i-understand-
    the-risks, or typed at the prompt when `interactive`), its text shown through `say`;
    otherwise end with EXIT_NO_CONSENT."""
    if not require_consent(interactive, flag, default_consent_path(), show=say):
        raise typer.Exit(EXIT_NO_CONSENT)


def print_skipped(problems: Iterable[str]) -> None:
    """One `skipped:` line per input row or entry that was left out."""
    for problem in problems:
        err.print(f"[yellow]skipped:[/yellow] {plain(problem)}")


def user_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn a user-facing error into a clear message and exit status 1."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except user_error_classes() as exc:
            err.print(f"[red]error:[/red] {plain(exc)}")
            raise typer.Exit(EXIT_ERROR) from None
        except OSError as exc:
            message = f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")
            err.print(f"[red]error:[/red] {plain(message)}")
            raise typer.Exit(EXIT_ERROR) from None

    return wrapper
