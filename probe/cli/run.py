"""`probe run`: measure every selected target once, store the measurements, print a summary.

Thin: parse the options, take consent and the run lock, call probe.session.run_once, render."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from probe.cli.base import (
    EXIT_BUSY,
    EXIT_INTERRUPTED,
    EXIT_NO_CONNECTIVITY,
    EXIT_NOT_STORED,
    EXIT_TARGETS_FAILED,
    ProbeCommand,
    consent_or_exit,
    console,
    err,
    user_errors,
)
from probe.cli.common import (
    ConfigOption,
    DbOption,
    PlatformOption,
    RisksOption,
    TestListOption,
    settings_from,
)
from probe.cli.terminal import plain
from probe.lock import RunInProgressError, RunLock
from probe.model import Connectivity, utcnow
from probe.schedule.log import trim_log
from probe.session import Note, NoteKind, RunReport, plan_run, run_once, upload_after_run

if TYPE_CHECKING:
    from rich.progress import Progress

# How each kind of note reads on the terminal (rich markup; the note's text is plain text). A
# VPN suspicion is not a note of its own: the run's "Measured ... from ..." line says it.
_NOTE_PREFIX = {
    NoteKind.SKIPPED: "[yellow]skipped:[/yellow] ",
    NoteKind.RAW_EVIDENCE: "note: ",
    NoteKind.NO_HELPER: "[yellow]no test helper this run:[/yellow] ",
    NoteKind.ADDRESS_UNKNOWN: "note: ",
    NoteKind.UPLOAD: "upload: ",
    NoteKind.RECOVERED: "note: ",
    NoteKind.STALLED: "[yellow]warning:[/yellow] ",
}


def _show(note: Note) -> None:
    prefix = _NOTE_PREFIX.get(note.kind)
    if prefix is not None:
        err.print(f"{prefix}{plain(note.text)}")


class _ProgressBar:
    """The runner's progress callback as a transient bar on stderr, shown from the first
    finished target until close()."""

    def __init__(self) -> None:
        self._bar: Progress | None = None
        self._task: Any = None

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            # rich's live display, loaded when the first target has finished: not on the way to
            # the first check.
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._bar = Progress(
                TextColumn("measuring"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=err,
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task("targets", total=None)
        self._bar.update(self._task, completed=done, total=total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def register(app: typer.Typer) -> None:
    @app.command(cls=ProbeCommand)
    @user_errors
    def run(
        config: ConfigOption = None,
        db: DbOption = None,
        platform: PlatformOption = None,
        test_list: TestListOption = None,
        as_json: Annotated[
            bool, typer.Option("--json", help="Print the run's results as JSON on stdout.")
        ] = False,
        unattended: Annotated[
            bool,
            typer.Option(
                "--unattended", help="Scheduled run: never prompt, no progress bar, log-friendly."
            ),
        ] = False,
        verbose: Annotated[
            bool, typer.Option("--verbose", "-v", help="List every target, ok ones too.")
        ] = False,
        i_understand_the_risks: RisksOption = False,
    ) -> None:
        """Measure every platform's reachability from this network, once, and store it.

        Prints where and when it measured, the platform table and every target that is not ok.
        """
        settings = settings_from(config, test_list)
        plan = plan_run(settings, platform or (), notes=_show)
        if unattended:
            trim_log()
            err.print(f"--- unattended run at {utcnow().isoformat(timespec='seconds')} ---")
        interactive = sys.stdin.isatty() and not unattended
        consent_or_exit(interactive, i_understand_the_risks)
        try:
            lock = RunLock()
            lock.acquire()
        except RunInProgressError as exc:
            err.print(f"{plain(exc)}; this run exits without measuring.")
            raise typer.Exit(EXIT_BUSY) from None
        bar = _ProgressBar() if err.is_terminal and not as_json and not unattended else None
        try:
            if lock.stale is not None:
                err.print(
                    f"note: took over the lock of a run that died ({plain(lock.stale.describe())})"
                )
            report = run_once(
                settings, plan=plan, db=db, progress=bar, notes=_show, preload=RENDERING
            )
        except KeyboardInterrupt:
            # Outside the measuring itself (asking the helper, deciding verdicts): nothing to show.
            err.print("interrupted before the run finished")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        finally:
            if bar is not None:
                bar.close()
            lock.release()
        _render(report, as_json=as_json, verbose=verbose, mmdb_configured=bool(settings.mmdb))
        outcome = report.outcome
        uploaded = upload_after_run(settings, report, db)
        if uploaded is not None:
            _show(uploaded)
        if outcome.unsaved:
            reasons = "; ".join(outcome.store_errors) or "the database refused them"
            err.print(
                f"[red]error:[/red] {outcome.unsaved} measurements of run {report.run.id} could "
                f"not be stored ({plain(reasons)}): the run is incomplete",
                soft_wrap=True,
            )
        if outcome.failed_targets:
            err.print(
                f"[red]error:[/red] the probe failed on {len(outcome.failed_targets)} target(s) "
                f"of run {report.run.id} (a bug; please report it), the others were measured: "
                + plain("; ".join(outcome.failed_targets[:3])),
                soft_wrap=True,
            )
        if outcome.interrupted:
            err.print(
                f"interrupted: {outcome.measurements} finished measurements were kept "
                f"(run {report.run.id})"
            )
        if outcome.unsaved:
            raise typer.Exit(EXIT_NOT_STORED)
        if outcome.interrupted:
            raise typer.Exit(EXIT_INTERRUPTED)
        if outcome.connectivity is Connectivity.NONE:
            raise typer.Exit(EXIT_NO_CONNECTIVITY)
        if outcome.failed_targets:
            raise typer.Exit(EXIT_TARGETS_FAILED)


# What _render imports: loaded while the run measures (run_once's preload), so that printing the
# results does not wait for it after the last check.
RENDERING = ("analysis.export", "probe.cli.render")


def _vpn_reasons(report: RunReport) -> list[str]:
    return [n.text for n in report.notes if n.kind is NoteKind.VPN_SUSPECTED]


def _render(report: RunReport, *, as_json: bool, verbose: bool, mmdb_configured: bool) -> None:
    # What shows a run (the analysis' labels and records, rich's tables): loaded once it is done,
    # so that none of it delays the first check.
    from analysis.export import verdict_record
    from probe.cli.render import (
        control_note,
        no_connectivity_message,
        resolver_broken_line,
        run_view,
        unknown_network_reason,
        where_line,
    )

    record, outcome, analysis = report.run, report.outcome, report.analysis
    note = control_note(report.helper)
    network = record.network
    if as_json:
        document = {
            "run_id": record.id,
            "probe_id": record.probe_id,
            "started_at": record.started_at.isoformat(),
            "software_version": record.software_version,
            "connectivity": outcome.connectivity.value,
            "interrupted": outcome.interrupted,
            "measurements": outcome.measurements,
            "unsaved_measurements": outcome.unsaved,
            "failed_targets": list(outcome.failed_targets),
            "stalls": {"count": outcome.stalls, "seconds": outcome.stalled_seconds},
            "network": {
                "asn": network.asn,
                "as_name": network.as_name,
                "country": network.country,
                "resolver_asn": network.resolver_asn,
                "resolver_as_name": network.resolver_as_name,
                "resolver_country": network.resolver_country,
                "source": network.source,
            },
            "vpn_suspected": network.vpn_suspected,
            "vpn_reasons": _vpn_reasons(report),
            "control": note,
            "platforms": [
                {
                    "platform": s.platform,
                    "status": s.status.value,
                    "techniques": list(s.techniques),
                    "blocked": s.blocked,
                    "total": s.total,
                    "detail": s.detail,
                }
                for s in analysis.summaries
            ],
            "verdicts": [verdict_record(v) for v in analysis.verdicts],
            "targets": [
                {
                    "platform": r.target.platform,
                    "target": r.target.name,
                    "control": r.target.control,
                    "reached": r.reached.value if r.reached else None,
                    "failure": r.failure,
                    "failed_layer": r.failed_layer.value if r.failed_layer else None,
                    "measurements": r.measurements,
                }
                for r in (*outcome.controls, *outcome.results)
            ],
        }
        json.dump(document, sys.stdout, indent=2)
        sys.stdout.write("\n")
        if outcome.connectivity is Connectivity.NONE:
            err.print(no_connectivity_message(len(outcome.controls)))
        return
    out = console()
    reason = unknown_network_reason(report.helper, mmdb_configured)
    out.print(where_line(network, record.started_at, reason, _vpn_reasons(report)))
    if outcome.connectivity is Connectivity.NONE:
        out.print(no_connectivity_message(len(outcome.controls)))
        out.print(f"run {record.id}: {outcome.measurements} measurements stored")
        return
    for renderable in run_view(analysis.summaries, analysis.verdicts, verbose=verbose):
        out.print(renderable)
    broken = resolver_broken_line(analysis.verdicts)
    if broken is not None:
        out.print(plain(broken), soft_wrap=True)
    out.print(plain(note))
    out.print(
        f"run {record.id}: {outcome.measurements} measurements stored; network connectivity "
        f"{outcome.connectivity.value}; the evidence: probe show {record.id[:8]}"
    )
