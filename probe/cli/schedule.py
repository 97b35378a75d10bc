"""`probe schedule install|status|remove`: run the probe unattended (systemd user timer or cron)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Annotated, ParamSpec, TypeVar

import typer
from rich.console import Console

from probe.cli.base import EXIT_ERROR, EXIT_NO_CONSENT, err, user_errors
from probe.cli.common import ConfigOption, DbOption, RisksOption
from probe.cli.terminal import plain, visible
from probe.config import find_config, load_settings
from probe.consent import default_consent_path, require_consent
from probe.schedule.cadence import Cadence, parse_duration
from probe.schedule.commands import Backend, ScheduleStatus, install, remove, status
from probe.schedule.job import probe_job
from probe.schedule.tools import ScheduleError

P = ParamSpec("P")
R = TypeVar("R")


def schedule_errors(func: Callable[P, R]) -> Callable[P, R]:
    """A ScheduleError ends the command with its message and exit status 1."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ScheduleError as exc:
            err.print(f"[red]error:[/red] {plain(exc)}", soft_wrap=True)
            raise typer.Exit(EXIT_ERROR) from None

    return wrapper


def _say(text: str) -> None:
    err.print(visible(text), markup=False, highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    schedule_app = typer.Typer(
        name="schedule",
        help="Run the probe unattended, on a schedule (systemd user timer, else cron).",
        no_args_is_help=True,
    )

    @schedule_app.command("install")
    @user_errors
    @schedule_errors
    def install_command(
        every: Annotated[
            str, typer.Option("--every", help="How often: 5m..30m, 1h..12h dividing a day, 1d.")
        ],
        jitter: Annotated[
            str | None,
            typer.Option("--jitter", help="Random delay added to each start (default: 10m)."),
        ] = None,
        config: ConfigOption = None,
        db: DbOption = None,
        backend: Annotated[
            Backend | None,
            typer.Option("--backend", help="Force systemd or cron (default: systemd if usable)."),
        ] = None,
        i_understand_the_risks: RisksOption = False,
    ) -> None:
        """Install (or replace) a schedule that runs `probe run --unattended`."""
        cadence = Cadence.make(
            parse_duration(every), None if jitter is None else parse_duration(jitter)
        )
        load_settings(config)  # a config that fails now would fail every scheduled run
        config_path = find_config(config)
        interactive = sys.stdin.isatty()
        if not require_consent(
            interactive, i_understand_the_risks, default_consent_path(), show=_say
        ):
            raise typer.Exit(EXIT_NO_CONSENT)
        done = install(cadence, probe_job(config=config_path, db=db), backend)
        out = Console(highlight=False)
        out.print(f"scheduled with {done.backend}: {done.cadence.describe()}", soft_wrap=True)
        out.print(f"runs: {' '.join(done.job.argv)}", soft_wrap=True, markup=False)
        out.print(f"log: {done.job.log_path}", soft_wrap=True, markup=False)
        for warning in done.warnings:
            err.print(f"[yellow]note:[/yellow] {plain(warning)}", soft_wrap=True)

    @schedule_app.command("status")
    @user_errors
    @schedule_errors
    def status_command() -> None:
        """Show whether runs are scheduled, when the next one is, and the log's last line."""
        _render_status(status())

    @schedule_app.command("remove")
    @user_errors
    @schedule_errors
    def remove_command() -> None:
        """Remove the schedule (systemd units and/or the crontab block); nothing else."""
        removed = remove()
        if removed:
            print(f"removed: {', '.join(removed)}")
        else:
            print("no schedule was installed")

    app.add_typer(schedule_app, name="schedule")


def _render_status(state: ScheduleStatus) -> None:
    out = Console(highlight=False)
    if not state.installed:
        out.print("not scheduled (install with: probe schedule install --every 1h)")
    else:
        every = state.every or "?"
        jitter = state.jitter if state.jitter not in (None, "0") else None
        extra = f" + up to {jitter} random delay" if jitter else ""
        out.print(plain(f"scheduled with {state.backend}: every {every}{extra}"), soft_wrap=True)
        rows = (
            ("entry", state.entry),
            ("enabled", state.enabled),
            ("next run", state.next_run),
            ("last run", state.last_run),
            ("last result", state.last_result),
        )
        for label, value in rows:
            if value:
                out.print(visible(f"  {label}: {value}"), markup=False, soft_wrap=True)
    if state.log_updated is not None:
        when = state.log_updated.isoformat(timespec="seconds")
        out.print(visible(f"log: {state.log_path} (updated {when})"), markup=False, soft_wrap=True)
        if state.log_last_line:
            # The log holds what a run printed: names from test lists, servers' titles.
            line = visible(state.log_last_line)
            out.print(f"  last line: {line}", markup=False, soft_wrap=True)
    else:
        out.print(
            visible(f"log: {state.log_path} (no unattended run yet)"), markup=False, soft_wrap=True
        )
    for warning in state.warnings:
        err.print(f"[yellow]note:[/yellow] {plain(warning)}", soft_wrap=True)
