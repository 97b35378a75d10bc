"""`probe schedule install|status|remove`: run the probe unattended (systemd user timer or cron)."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer
from rich.console import Console

from analysis.report.labels import format_when
from probe.cli.base import (
    EXIT_ERROR,
    ProbeCommand,
    consent_or_exit,
    console,
    err,
    user_errors,
)
from probe.cli.common import ConfigOption, DbOption, RisksOption
from probe.cli.render import network_text
from probe.cli.terminal import plain, visible
from probe.config import ConfigError, Settings, database_location, find_config, load_settings
from probe.history import latest_overview
from probe.schedule.cadence import Cadence, parse_duration
from probe.schedule.commands import Backend, ScheduleStatus, install, remove, status
from probe.schedule.job import probe_job, scheduled_config
from probe.schedule.tools import ScheduleError
from probe.store import Store, StoreError

P = ParamSpec("P")
R = TypeVar("R")


def schedule_errors(func: Callable[P, R]) -> Callable[P, R]:
    """A ScheduleError ends the command with its message and exit status 1."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ScheduleError as exc:
            err.print(f"[red]error:[/red] {plain(exc)}")
            raise typer.Exit(EXIT_ERROR) from None

    return wrapper


def register(app: typer.Typer) -> None:
    schedule_app = typer.Typer(
        name="schedule",
        help="Run the probe unattended, on a schedule (systemd user timer, else cron).",
        no_args_is_help=True,
        rich_markup_mode=None,
    )

    @schedule_app.command(
        "install", cls=ProbeCommand, short_help="Install or replace the schedule."
    )
    @user_errors
    @schedule_errors
    def install_command(
        every: Annotated[
            str,
            typer.Option(
                "--every",
                metavar="DURATION",
                help="How often: 5m..30m, 1h..12h dividing a day, 1d.",
            ),
        ],
        jitter: Annotated[
            str | None,
            typer.Option(
                "--jitter",
                metavar="DURATION",
                help="Random delay added to each start (default: 10m).",
            ),
        ] = None,
        config: ConfigOption = None,
        db: DbOption = None,
        backend: Annotated[
            Backend | None,
            typer.Option(
                "--backend",
                metavar="[systemd|cron]",
                help="Force systemd or cron (default: systemd if usable).",
            ),
        ] = None,
        i_understand_the_risks: RisksOption = False,
    ) -> None:
        """Install (or replace) a schedule that runs `probe run --unattended`.

        The scheduled run uses --config and --db when given here, else the user config dir's
        config.toml (or the defaults): never a config.toml of the directory you run this in.
        """
        try:
            cadence = Cadence.make(
                parse_duration(every), None if jitter is None else parse_duration(jitter)
            )
        except ScheduleError as exc:
            raise typer.BadParameter(str(exc), param_hint="--every/--jitter") from None
        config_path = scheduled_config(find_config(config) if config is not None else None)
        # A config that fails now would fail every scheduled run.
        settings = load_settings(config_path) if config_path is not None else Settings()
        here = Path("config.toml")
        if config is None and here.is_file() and here.resolve() != config_path:
            err.print(
                f"note: {plain(str(here.resolve()))} is not used by scheduled runs (they read "
                f"{plain(str(config_path or 'the built-in defaults'))}); pass --config to use it"
            )
        interactive = sys.stdin.isatty()
        consent_or_exit(interactive, i_understand_the_risks)
        done = install(cadence, probe_job(config=config, db=db), backend)
        out = console()
        out.print(f"scheduled with {done.backend}: {done.cadence.describe()}")
        out.print(f"runs: {plain(shlex.join(done.job.argv))}")
        out.print(f"config: {plain(_config_text(done.job.config, config_path))}")
        out.print(f"database: {plain(database_location(settings, done.job.database))}")
        out.print(f"log: {plain(str(done.job.log_path))}")
        for warning in done.warnings:
            err.print(f"[yellow]note:[/yellow] {plain(warning)}")

    @schedule_app.command(
        "status", cls=ProbeCommand, short_help="The schedule, its config and its last run."
    )
    @user_errors
    @schedule_errors
    def status_command() -> None:
        """Show whether runs are scheduled, when the next one is, the config and database the
        runs use, the last run's outcome and the log's last line."""
        _render_status(status())

    @schedule_app.command("remove", cls=ProbeCommand, short_help="Remove the schedule.")
    @user_errors
    @schedule_errors
    def remove_command() -> None:
        """Remove the schedule (systemd units and/or the crontab block); nothing else."""
        removed = remove()
        shown = f"removed: {plain(', '.join(removed))}" if removed else "no schedule was installed"
        console().print(shown)

    app.add_typer(schedule_app, name="schedule")


def _config_text(given: Path | str | None, used: Path | None) -> str:
    if given is not None:
        return f"{given} (given at install)"
    return f"{used} (the user config)" if used else "none (the built-in defaults)"


def _render_last_run(out: Console, config: Path | None, db: str | None) -> None:
    """The database the scheduled runs write and the newest run in it (never created here)."""
    try:
        settings = load_settings(config) if config is not None else Settings()
    except ConfigError as exc:
        out.print(f"  database: unknown ({plain(str(exc))})")
        return
    location = database_location(settings, db)
    out.print(f"  database: {plain(location)}")
    if "://" not in location and not Path(location).expanduser().is_file():
        out.print("  last run: none yet (no database)")
        return
    try:
        with Store.open(location) as store:
            newest = latest_overview(store)
    except StoreError as exc:
        out.print(f"  last run: unknown ({plain(str(exc))})")
        return
    if newest is None:
        out.print("  last run: none yet")
        return
    run = newest.run
    out.print(
        f"  last run: {run.id[:8]} at {format_when(run.started_at)} UTC from "
        f"{plain(network_text(run.network))}: connectivity {run.connectivity.value}"
        f"{', interrupted' if run.interrupted else ''}; {newest.blocked} blocked, {newest.ok} "
        f"ok, {newest.down} down, {newest.inconclusive} inconclusive"
    )


def _render_status(state: ScheduleStatus) -> None:
    out = console()
    if not state.installed:
        out.print("not scheduled (install with: probe schedule install --every 1h)")
    else:
        every = state.every or "?"
        jitter = state.jitter if state.jitter not in (None, "0") else None
        extra = f" + up to {jitter} random delay" if jitter else ""
        out.print(plain(f"scheduled with {state.backend}: every {every}{extra}"))
        rows = (
            ("entry", state.entry),
            ("enabled", state.enabled),
            ("next run", state.next_run),
            ("last run", state.last_run),
            ("last result", state.last_result),
        )
        for label, value in rows:
            if value:
                out.print(visible(f"  {label}: {value}"), markup=False)
        config_path = scheduled_config(None if state.config is None else Path(state.config))
        out.print(f"  config: {plain(_config_text(state.config, config_path))}")
        _render_last_run(out, config_path, state.database)
    if state.log_updated is not None:
        when = state.log_updated.isoformat(timespec="seconds")
        out.print(visible(f"log: {state.log_path} (updated {when})"), markup=False)
        if state.log_last_line:
            # The log holds what a run printed: names from test lists, servers' titles.
            line = visible(state.log_last_line)
            out.print(f"  last line: {line}", markup=False)
    else:
        out.print(visible(f"log: {state.log_path} (no unattended run yet)"), markup=False)
    for warning in state.warnings:
        err.print(f"[yellow]note:[/yellow] {plain(warning)}")
