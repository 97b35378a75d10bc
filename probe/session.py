"""One run of the probe, as a library call: the workflow that wires the layers together.

plan_run() picks the targets and the checks' dependencies; run_once() asks the test helper for
controls, identifies the network, streams the runner's measurements through the scrubber into the
store, finishes the run record and decides its verdicts. The command line (and the tests) call
these; nothing here prints: what the run wants a volunteer to know goes to the `notes` callback
and into the RunReport.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import resource
import signal
import threading
from collections.abc import Callable, Coroutine, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import probe.rawnet
from probe import __version__, eventloop
from probe.checks import CheckContext, default_ssl_context
from probe.checks.sessions import HTTP_CHECK
from probe.config import Settings, database_location
from probe.model import Connectivity, Measurement, Run, Target, new_run_id, to_the_second, utcnow
from probe.netid.helper_view import HelperView
from probe.netid.identify import NetworkIdentity, identify_network, resolver_addresses
from probe.netid.local import read_local_network
from probe.privacy import Scrubber, ScrubbingSink
from probe.rawnet import raw_capability
from probe.runner import Progress, RunOutcome, RunPlan, execute
from probe.store.sqlite_file import check_file
from probe.targets import load_platforms, select_targets

if TYPE_CHECKING:
    # Loaded when used (SQLAlchemy, the analysis; the helper's client and its controls when a
    # helper is configured): none of it is needed before the first check.
    from analysis.analyse import RunAnalysis
    from analysis.controls import ControlEvidence
    from probe.helper.client import HelperUnavailable
    from probe.helper.protocol import HelperResult
    from probe.netid.mmdb import AsnDatabase
    from probe.store import Store


class NoteKind(StrEnum):
    """What a note is about (the CLI styles them; tests match on the kind)."""

    SKIPPED = "skipped"  # a target that could not be built from the catalog, config or a list
    RAW_EVIDENCE = "raw_evidence"  # packet evidence is not available this run, and why
    NO_HELPER = "no_helper"  # a helper is configured but gave no controls this run
    VPN_SUSPECTED = "vpn_suspected"  # the network looks like a VPN or proxy: flagged
    ADDRESS_UNKNOWN = "address_unknown"  # the public address is unknown: it cannot be scrubbed
    UPLOAD = "upload"  # what the upload to the [upload] collector after the run did
    RECOVERED = "recovered"  # an earlier run that was killed was finished and analysed now
    STALLED = "stalled"  # the probe itself stalled while measuring (probe.stall)


@dataclass(frozen=True, slots=True)
class Note:
    """Something a volunteer should know about this run (plain text, no markup)."""

    kind: NoteKind
    text: str


Notes = Callable[[Note], None]


def _ignore(_note: Note) -> None:
    return None


@dataclass(frozen=True, slots=True)
class RunReport:
    """What one run did: its record, the runner's outcome, the verdicts, and the helper's answer
    (None when no helper is configured), with every note the run gave."""

    run: Run
    outcome: RunOutcome
    analysis: RunAnalysis
    helper: HelperResult | HelperUnavailable | None
    notes: tuple[Note, ...]


def check_context(settings: Settings) -> CheckContext:
    """The checks' dependencies, from the settings (trust store: ca_file, else SSL_CERT_FILE or
    the system's, which OpenSSL's default verify paths read)."""
    return CheckContext(
        timeouts=settings.timeouts,
        ssl_context=default_ssl_context(settings.ca_file),
        max_body_bytes=settings.max_body_bytes,
        transfer_bytes=settings.transfer_bytes,
        transfer_seconds=settings.transfer_seconds,
        body_prefix_bytes=settings.body_prefix_bytes,
        max_redirects=settings.max_redirects,
        user_agent=settings.user_agent,
        dns_second_answer_window=settings.dns_second_answer_window,
    )


def plan_run(settings: Settings, platforms: Sequence[str] = (), notes: Notes = _ignore) -> RunPlan:
    """What a run of these platforms (all configured ones when empty) measures, and how."""
    selection = select_targets(settings, platforms)
    for problem in selection.problems:
        notes(Note(NoteKind.SKIPPED, problem))
    raw = raw_capability()
    if raw.note:
        notes(Note(NoteKind.RAW_EVIDENCE, raw.note))
    return RunPlan(
        targets=selection.targets,
        controls=selection.controls,
        resolvers=settings.resolvers,
        context=check_context(settings),
        concurrency=settings.concurrency,
        max_addresses=settings.max_addresses,
        rawnet=probe.rawnet if raw.available else None,
    )


def run_once(
    settings: Settings,
    *,
    plan: RunPlan | None = None,
    db: str | None = None,
    platforms: Sequence[str] = (),
    progress: Progress | None = None,
    notes: Notes = _ignore,
    preload: Sequence[str] = (),
) -> RunReport:
    """Measure once and store it: ask the helper, identify the network, run the plan into the
    store (scrubbed), finish the run record and decide its verdicts.

    `plan` defaults to plan_run(settings, platforms); `db` to the configured database. A Ctrl-C,
    SIGTERM or SIGHUP while measuring ends the run early: what finished is kept, the run is
    marked interrupted and gets its verdicts. Earlier runs of this probe that were killed before
    they finished are finished and analysed too (a RECOVERED note each, after the measuring).

    `preload`: modules the caller needs once the run is done (the CLI's renderer), loaded
    while the checks run, in the thread that opens the database.

    The database opens while the first checks run (_StoreOpening). A SQLite file the store
    would refuse (not a database, damaged pages, another application's, a newer schema) is
    refused before any traffic (check_file); what only the open itself meets (a write lock held
    past the busy timeout, a PostgreSQL server that refuses) stops the run as soon as it is
    known, with the same one-line error and nothing stored.
    """
    given: list[Note] = []

    def note(item: Note) -> None:
        given.append(item)
        notes(item)

    if plan is None:
        plan = plan_run(settings, platforms, note)
    raise_file_limit()
    location = database_location(settings, db)
    # A path is checked here, before any traffic; a URL (PostgreSQL, or sqlite:///...) is
    # checked by the store as it opens it, page check included.
    pages_checked = "://" not in location
    if pages_checked:
        check_file(Path(location).expanduser(), location)
    opening = _StoreOpening(settings, location, pages_checked=pages_checked, preload=preload)
    try:
        helper = _ask_helper(settings, plan)
        view, controls = None, None
        if helper is not None:
            from analysis.controls import controls_from_helper_targets
            from probe.helper.client import HelperUnavailable

            if isinstance(helper, HelperUnavailable):
                note(Note(NoteKind.NO_HELPER, helper.reason))
            else:
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
            note(Note(NoteKind.VPN_SUSPECTED, reason))
        if not identity.own_addresses:
            note(
                Note(
                    NoteKind.ADDRESS_UNKNOWN,
                    "this probe's public address is unknown (no helper, no [network] "
                    "public_addresses), so it cannot be scrubbed from stored pages and errors.",
                )
            )
        record = Run(
            id=new_run_id(),
            probe_id="",  # the database's, set when it is open (_StoreOpening)
            started_at=to_the_second(utcnow()),
            software_version=__version__,
            config_digest=settings.digest(),
            network=identity.network,
        )
        opening.begin(record)
        outcome = RunOutcome()
        scrubber = Scrubber(identity.own_addresses)
        sink = ScrubbingSink(opening, scrubber)
        # The checks digest the body before the sink scrubs it: they scrub first (probe.checks).
        if scrubber:
            context = dataclasses.replace(plan.context, scrubber=scrubber)
            plan = dataclasses.replace(plan, context=context)
        try:
            with interruptible():
                measuring = execute(plan, record.id, sink, outcome=outcome, progress=progress)
                eventloop.run(_measure(opening, measuring))
        except KeyboardInterrupt:
            outcome.interrupted = True
        if outcome.stalls:
            note(Note(NoteKind.STALLED, stalled_text(outcome.stalls, outcome.stalled_seconds)))
        with finishing():
            store, record, recovered = opening.opened()
            for text in recovered:
                note(Note(NoteKind.RECOVERED, text))
            finished = max(to_the_second(utcnow()), record.started_at)
            store.finish_run(record.id, finished, outcome.connectivity, outcome.interrupted)
            analysis = _analyse(settings, store, record.id, controls, plan.targets, plan.controls)
    finally:
        opening.close()
    return RunReport(record, outcome, analysis, helper, tuple(given))


class _StoreOpening:
    """The run's database, opened in a thread of its own while the run's first checks start.

    Opening imports SQLAlchemy, checks (and may create or migrate) the schema, and finishes the
    runs this probe abandoned earlier (finish_abandoned_runs): about half a second of a cold
    start that no check needs. The run's record is stored once the database is open and the run
    has begun (begin()). Meanwhile the runner's writer, which saves from a thread of its own,
    waits here (save_measurements): what was measured before the database was ready is held in
    memory, then saved, never dropped. Opened before the first traffic instead, a probe's first
    check started a second after it was spawned (benchmarks/startup_benchmark.py).
    """

    def __init__(
        self, settings: Settings, location: str, *, pages_checked: bool, preload: Sequence[str] = ()
    ) -> None:
        """`pages_checked`: check_file has read the file's pages already (the store need not);
        `preload`: modules to import once the database is open (see run_once)."""
        self._settings = settings
        self._preload = tuple(preload)
        self._location = location
        self._pages_checked = pages_checked
        self._record: Future[Run] = Future()
        self._opened: Future[tuple[Store, Run, list[str]]] = Future()
        self._thread = threading.Thread(target=self._open, name="probe-store-open", daemon=True)
        self._thread.start()

    def _open(self) -> None:
        try:
            # The HTTP check first, if the run's own loading thread has not got to it (one
            # import, whichever thread starts it): the run's first fetch waits for it, while the
            # database is not needed before the first save (probe/checks/sessions.py).
            importlib.import_module(HTTP_CHECK)
            from probe.store import Store  # SQLAlchemy: loaded here, off the first check's path

            store = Store.open(self._location, pages_checked=self._pages_checked)
        except BaseException as exc:
            self._opened.set_exception(exc)
            return
        try:
            recovered = finish_abandoned_runs(self._settings, store)
            record = dataclasses.replace(self._record.result(), probe_id=store.probe_id())
            store.start_run(record)
            # The verdicts' code, loaded here while the checks run rather than after the last.
            importlib.import_module("analysis.analyse")
        except BaseException as exc:
            store.close()
            self._opened.set_exception(exc)
            return
        self._opened.set_result((store, record, recovered))
        for name in self._preload:
            # What fails to load here fails again where it is used, as it would have anyway.
            with suppress(Exception):
                importlib.import_module(name)

    def begin(self, record: Run) -> None:
        """The run starts: its record (probe_id filled in from the database) is stored once the
        database is open."""
        self._record.set_result(record)

    def ended(self) -> asyncio.Future[None]:
        """A future of the running loop that is done when opening has ended, either way."""
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[None] = loop.create_future()

        def settle() -> None:
            if not ended.done():
                ended.set_result(None)

        def wake(_done: Future[tuple[Store, Run, list[str]]]) -> None:
            # From the opening thread; the loop may have closed since (the run ended first).
            with suppress(RuntimeError):
                loop.call_soon_threadsafe(settle)

        self._opened.add_done_callback(wake)
        return ended

    def error(self) -> BaseException | None:
        """What opening raised, once it has ended (None while it runs, or when it succeeded)."""
        return self._opened.exception() if self._opened.done() else None

    def opened(self) -> tuple[Store, Run, list[str]]:
        """The open store, the run's record as stored and the lines for the runs it finished;
        waits for the opening thread. Raises what opening raised (a StoreError)."""
        return self._opened.result()

    def save_measurements(self, batch: Sequence[Measurement]) -> None:
        """The runner's sink: saved once the database is open and the run's record stored (the
        writer calls this from its own thread, so waiting here never blocks a check). When
        opening failed the run is being stopped with that error (_measure): nothing can be
        stored, and the batch is not kept."""
        if self._opened.exception() is not None:
            return
        store, _, _ = self._opened.result()
        store.save_measurements(batch)

    def close(self) -> None:
        """Close the store; a run that ended before it began releases the opening thread."""
        if not self._record.done():
            self._record.set_exception(RuntimeError("the run ended before it began"))
        self._thread.join()
        if self._opened.exception() is None:
            self._opened.result()[0].close()


async def _measure(opening: _StoreOpening, measuring: Coroutine[Any, Any, RunOutcome]) -> None:
    """Run `measuring` while the database opens; stop it at once when the database cannot be
    opened, and raise that error (a StoreError) once the runner has ended."""
    task = asyncio.ensure_future(measuring)
    either: list[asyncio.Future[Any]] = [task, opening.ended()]
    try:
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        error = opening.error()
        if error is not None:
            task.cancel()
            await asyncio.wait({task})
            raise error
        await task
    finally:
        if not task.done():  # cancelled from outside (Ctrl-C): the runner keeps what finished
            task.cancel()
            await asyncio.wait({task})


def upload_after_run(settings: Settings, report: RunReport, db: str | None = None) -> Note | None:
    """After a finished run, send the outbox to the [upload] collector (every run not yet
    acknowledged, this one included), bounded to AFTER_RUN_POLICY's few seconds: a collector
    that is down, slow or blocked never fails or holds up a run; its data stays queued. None
    when no collector is configured, or the run was interrupted or had no connectivity."""
    outcome = report.outcome
    if outcome.interrupted or outcome.connectivity is Connectivity.NONE or not settings.upload_url:
        return None
    # aiohttp's server side and the outbox tables: loaded only when a collector may be configured.
    from probe.collector.uploader import AFTER_RUN_POLICY, upload_summary, upload_target
    from probe.store import Store

    target = upload_target(settings)
    if target is None:
        return None
    with Store.open(database_location(settings, db)) as store:
        return Note(NoteKind.UPLOAD, upload_summary(store, target, AFTER_RUN_POLICY))


# What ends a run like Ctrl-C: systemd stops a service with SIGTERM (systemd.kill(5)), and a
# closed terminal sends SIGHUP to its session (POSIX, General Terminal Interface 11.1.10).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


@contextmanager
def interruptible() -> Iterator[None]:
    """Ctrl-C (SIGINT), SIGTERM and SIGHUP interrupt what runs inside, even when the probe was
    started with SIGINT ignored.

    A non-interactive shell starts a background job (`probe run &` in a script) with SIGINT
    ignored (POSIX, Shell Command Language 2.11), every child inherits that, and Python then
    leaves SIGINT ignored: the run would go on until its last timeout instead of keeping what it
    finished. Inside, an ignored or default SIGINT raises KeyboardInterrupt, which asyncio.run
    turns into cancelling the run; SIGTERM and SIGHUP are turned into that same SIGINT. A
    handler someone installed on purpose is left alone.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    replace = previous in (signal.SIG_IGN, signal.SIG_DFL)
    if replace:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    stops = {number: signal.signal(number, _as_sigint) for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, handler in stops.items():
            signal.signal(number, handler)
        if replace:
            signal.signal(signal.SIGINT, previous)


def stalled_text(count: int, seconds: float) -> str:
    """The note for a run in which the probe itself stalled."""
    times = "once" if count == 1 else f"{count} times"
    return (
        f"the probe stalled {times} ({seconds:.1f} s in all) while it measured: this machine was "
        "overloaded, or the probe was paused; a check that timed out across a stall is "
        "inconclusive, not blocking"
    )


def _as_sigint(_signum: int, _frame: object) -> None:
    # Raised as SIGINT, so that whoever handles SIGINT now (asyncio.run's runner cancels its
    # main task; outside it, KeyboardInterrupt) handles it the same way.
    signal.raise_signal(signal.SIGINT)


@contextmanager
def finishing() -> Iterator[list[int]]:
    """While a run is finished and analysed, a stop signal (SIGINT, SIGTERM, SIGHUP) does not cut
    the verdicts short (what was measured is all there): the first is noted in the list
    yielded, a second stops at once (KeyboardInterrupt)."""
    stopped: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield stopped
        return

    def note(signum: int, _frame: object) -> None:
        stopped.append(signum)
        if len(stopped) > 1:
            raise KeyboardInterrupt

    numbers = (signal.SIGINT, *STOP_SIGNALS)
    previous = {number: signal.signal(number, note) for number in numbers}
    try:
        yield stopped
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def finish_abandoned_runs(settings: Settings, store: Store) -> list[str]:
    """Finish and analyse this probe's runs that never finished (killed with SIGKILL, a power
    cut): each is marked interrupted, ends at its last measurement, and its finished
    measurements get verdicts. Called with the run lock held (`probe run` takes it), so no
    unfinished run of this probe id is still measuring. Returns a line per run for the user."""
    lines = []
    for run in store.unfinished_runs():
        ended = run.started_at
        count = 0
        for measurement in store.measurements(run_id=run.id):
            observation = measurement.observation
            count += 1
            end = observation.started_at + timedelta(milliseconds=observation.duration_ms)
            ended = max(ended, end)
        store.finish_run(run.id, ended, run.connectivity, interrupted=True)
        _analyse(settings, store, run.id, None, None, ())
        lines.append(
            f"run {run.id} (started {run.started_at.isoformat(timespec='seconds')}) ended "
            f"without finishing: its {count} measurements were analysed and it is marked "
            "interrupted"
        )
    return lines


def identify(settings: Settings, plan: RunPlan, helper: HelperView | None) -> NetworkIdentity:
    """The network this run measures from: helper's view, MaxMind files, local interfaces."""
    database = _asn_database(settings)
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


def raise_file_limit() -> None:
    """Many connections in flight need many descriptors: lift the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _helper_timeout(settings: Settings) -> float:
    """How long to wait for the helper: its batch runs the same phases as ours, plus transfer."""
    t = settings.timeouts
    return t.dns + t.connect + t.tls + t.http + 10.0


def _ask_helper(settings: Settings, plan: RunPlan) -> HelperResult | HelperUnavailable | None:
    """The control measurements of an uncensored vantage, when a helper is configured. Asked
    before the run, so the probe's public address it reports is scrubbed from every measurement."""
    if not (settings.helper_url and settings.helper_token):
        return None
    from probe.helper.client import query_helper  # aiohttp: loaded when a helper is configured

    with interruptible():
        return eventloop.run(
            query_helper(
                settings.helper_url,
                settings.helper_token,
                plan.targets,
                plan.context,
                _helper_timeout(settings),
            )
        )


def _analyse(
    settings: Settings,
    store: Store,
    run_id: str,
    controls: ControlEvidence | None,
    targets: Sequence[Target] | None,
    control_targets: Sequence[Target],
) -> RunAnalysis:
    """Verdicts for a run: of its planned targets (None: of what it measured)."""
    from analysis.analyse import analyse_run

    planned = None if targets is None else [*targets, *control_targets]
    platforms = load_platforms(settings)
    database = _asn_database(settings)
    if database is None:
        return analyse_run(store, run_id, controls=controls, targets=planned, platforms=platforms)
    with database:
        return analyse_run(
            store,
            run_id,
            controls=controls,
            targets=planned,
            platforms=platforms,
            asn_of=lambda address: database.lookup(address).asn,
        )


def _asn_database(settings: Settings) -> AsnDatabase | None:
    """The configured MaxMind ASN file, opened (its reader loaded only when one is configured)."""
    if not settings.mmdb:
        return None
    from probe.netid.mmdb import AsnDatabase

    return AsnDatabase(settings.mmdb)
