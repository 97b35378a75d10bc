"""`probe run`: measure every selected target once, store the measurements, print a summary."""

from __future__ import annotations

import asyncio
import json
import resource
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from analysis.analyse import RunAnalysis, analyse_run
from analysis.controls import ControlEvidence, controls_from_helper_targets
from probe import __version__
from probe.checks import CheckContext, default_ssl_context
from probe.checks.dns import parse_resolver
from probe.cli.base import (
    EXIT_BUSY,
    EXIT_INTERRUPTED,
    EXIT_NO_CONNECTIVITY,
    EXIT_NO_CONSENT,
    err,
    user_errors,
)
from probe.cli.common import (
    ConfigOption,
    DbOption,
    PlatformOption,
    RisksOption,
    TestListOption,
    open_store,
    settings_from,
)
from probe.cli.render import control_note, no_connectivity_message, verdict_tables
from probe.config import Settings
from probe.consent import default_consent_path, require_consent
from probe.helper.client import HelperUnavailable, query_helper
from probe.helper.protocol import HelperResult
from probe.lock import RunInProgressError, RunLock
from probe.model import Connectivity, Run, new_run_id, utcnow
from probe.netid import (
    AsnDatabase,
    HelperView,
    NetworkIdentity,
    identify_network,
    read_local_network,
    resolver_addresses,
)
from probe.privacy import Scrubber, ScrubbingSink
from probe.rawnet import raw_capability
from probe.runner import RunOutcome, RunPlan, execute
from probe.schedule import trim_log
from probe.store import Store
from probe.targets import select_targets


def check_context(settings: Settings) -> CheckContext:
    """The checks' dependencies, from the settings (trust store: ca_file, else SSL_CERT_FILE or
    the system's, which OpenSSL's default verify paths read)."""
    return CheckContext(
        timeouts=settings.timeouts,
        ssl_context=default_ssl_context(settings.ca_file),
        max_body_bytes=settings.max_body_bytes,
        body_prefix_bytes=settings.body_prefix_bytes,
        max_redirects=settings.max_redirects,
        user_agent=settings.user_agent,
        dns_second_answer_window=settings.dns_second_answer_window,
    )


def _raise_file_limit() -> None:
    """Many connections in flight need many descriptors: lift the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@contextmanager
def _progress(enabled: bool) -> Iterator[Any]:
    if not enabled:
        yield None
        return
    bar = Progress(
        TextColumn("measuring"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )
    with bar:
        task = bar.add_task("targets", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def identify(settings: Settings, plan: RunPlan, helper: HelperView | None) -> NetworkIdentity:
    """The network this run measures from: helper's view, MaxMind files, local interfaces."""
    database = AsnDatabase(settings.mmdb) if settings.mmdb else None
    try:
        return identify_network(
            helper=helper,
            database=database,
            configured_addresses=settings.public_addresses,
            resolvers=resolver_addresses(plan.resolvers),
            local=read_local_network(),
        )
    finally:
        if database is not None:
            database.close()


def register(app: typer.Typer) -> None:
    @app.command()
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
        i_understand_the_risks: RisksOption = False,
    ) -> None:
        """Measure every platform's reachability from this network, once, and store it."""
        settings = settings_from(config, test_list)
        selection = select_targets(settings, platform or ())
        for problem in selection.problems:
            err.print(f"[yellow]skipped:[/yellow] {problem}", soft_wrap=True)
        raw = raw_capability()
        plan = RunPlan(
            targets=selection.targets,
            controls=selection.controls,
            resolvers=[parse_resolver(text) for text in settings.resolvers],
            context=check_context(settings),
            concurrency=settings.concurrency,
            max_addresses=settings.max_addresses,
            raw_evidence=raw.available,
        )
        if raw.note:
            err.print(f"note: {escape(raw.note)}", soft_wrap=True)
        if unattended:
            trim_log()
            err.print(f"--- unattended run at {utcnow().isoformat(timespec='seconds')} ---")
        interactive = sys.stdin.isatty() and not unattended
        if not require_consent(interactive, i_understand_the_risks, default_consent_path()):
            raise typer.Exit(EXIT_NO_CONSENT)
        try:
            lock = RunLock()
            lock.acquire()
        except RunInProgressError as exc:
            err.print(f"{exc}; this run exits without measuring.")
            raise typer.Exit(EXIT_BUSY) from None
        try:
            if lock.stale is not None:
                err.print(f"note: took over the lock of a run that died ({lock.stale.describe()})")
            record, outcome, analysis, note = _measure(settings, plan, db, as_json, unattended)
        finally:
            lock.release()
        _render(record, outcome, analysis, note, as_json)
        if outcome.interrupted:
            err.print(
                f"interrupted: {outcome.measurements} finished measurements were kept "
                f"(run {record.id})"
            )
            raise typer.Exit(EXIT_INTERRUPTED)
        if outcome.connectivity is Connectivity.NONE:
            raise typer.Exit(EXIT_NO_CONNECTIVITY)


def _helper_timeout(settings: Settings) -> float:
    """How long to wait for the helper: its batch runs the same phases as ours, plus transfer."""
    t = settings.timeouts
    return t.dns + t.connect + t.tls + t.http + 10.0


def _ask_helper(settings: Settings, plan: RunPlan) -> HelperResult | HelperUnavailable | None:
    """The control measurements of an uncensored vantage, when a helper is configured. Asked
    before the run, so the probe's public address it reports is scrubbed from every measurement."""
    if not (settings.helper_url and settings.helper_token):
        return None
    result = asyncio.run(
        query_helper(
            settings.helper_url,
            settings.helper_token,
            plan.targets,
            plan.context,
            _helper_timeout(settings),
        )
    )
    if isinstance(result, HelperUnavailable):
        reason = escape(result.reason)
        err.print(f"[yellow]no test helper this run:[/yellow] {reason}", soft_wrap=True)
    return result


def _measure(
    settings: Settings, plan: RunPlan, db: str | None, as_json: bool, unattended: bool
) -> tuple[Run, RunOutcome, RunAnalysis, str]:
    """Ask the helper, identify the network, run the plan into the store (scrubbed), finish the
    run record, and decide its verdicts."""
    _raise_file_limit()
    helper = _ask_helper(settings, plan)
    view, controls = None, None
    if isinstance(helper, HelperResult):
        client = helper.client
        view = HelperView(
            client_address=client.address,
            client_asn=client.asn,
            client_as_name=client.as_name,
            client_country=client.country,
        )
        controls = controls_from_helper_targets(helper.targets)
    identity = identify(settings, plan, view)
    for reason in identity.vpn_reasons:
        err.print(
            f"[yellow]VPN or proxy suspected:[/yellow] {escape(reason)}; measurements are flagged."
        )
    if not identity.own_addresses:
        err.print(
            "note: this probe's public address is unknown (no helper, no \\[network] "
            "public_addresses), so it cannot be scrubbed from stored pages and errors."
        )
    store = open_store(settings, db)
    try:
        record = Run(
            id=new_run_id(),
            probe_id=store.probe_id(),
            started_at=utcnow(),
            software_version=__version__,
            config_digest=settings.digest(),
            network=identity.network,
        )
        store.start_run(record)
        outcome = RunOutcome()
        sink = ScrubbingSink(store, Scrubber(identity.own_addresses))
        show_progress = err.is_terminal and not as_json and not unattended
        with _progress(show_progress) as progress:
            try:
                asyncio.run(execute(plan, record.id, sink, outcome=outcome, progress=progress))
            except KeyboardInterrupt:
                outcome.interrupted = True
        store.finish_run(record.id, utcnow(), outcome.connectivity, outcome.interrupted)
        analysis = _analyse(settings, store, record.id, controls, plan)
    finally:
        store.close()
    return record, outcome, analysis, control_note(helper)


def _analyse(
    settings: Settings,
    store: Store,
    run_id: str,
    controls: ControlEvidence | None,
    plan: RunPlan,
) -> RunAnalysis:
    targets = [*plan.targets, *plan.controls]
    if not settings.mmdb:
        return analyse_run(store, run_id, controls=controls, targets=targets)
    with AsnDatabase(settings.mmdb) as database:
        return analyse_run(
            store,
            run_id,
            controls=controls,
            targets=targets,
            asn_of=lambda address: database.lookup(address).asn,
        )


def _render(
    record: Run, outcome: RunOutcome, analysis: RunAnalysis, note: str, as_json: bool
) -> None:
    if as_json:
        document = {
            "run_id": record.id,
            "probe_id": record.probe_id,
            "started_at": record.started_at.isoformat(),
            "software_version": record.software_version,
            "connectivity": outcome.connectivity.value,
            "interrupted": outcome.interrupted,
            "measurements": outcome.measurements,
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
            "verdicts": [
                {
                    "platform": v.platform,
                    "target": v.target,
                    "status": v.status.value,
                    "technique": v.technique,
                    "confidence": v.confidence.value if v.confidence else None,
                    "rule_id": v.rule_id,
                    "rules_version": v.rules_version,
                    "detail": v.detail,
                    "evidence": list(v.evidence),
                }
                for v in analysis.verdicts
            ],
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
    out = Console()
    if outcome.connectivity is Connectivity.NONE:
        out.print(no_connectivity_message(len(outcome.controls)))
        return
    for table in verdict_tables(analysis.summaries, analysis.verdicts):
        out.print(table)
    out.print(escape(note))
    out.print(
        f"run {record.id}: {outcome.measurements} measurements stored; "
        f"network connectivity {outcome.connectivity.value}"
    )
