"""Import OONI measurement documents into the store: each document becomes a run with its
measurements, our verdicts (OONI's test-helper control as the control where the document has
one), platform summaries, and OONI's own verdict keys beside it; then the agreement between
the two.

Idempotent: a run's id is derived from the document's identity (measurement_uid, else a digest
of its report, input and time), and Store.save_runs skips runs already stored, so importing the
same files twice adds nothing. Streaming: documents are read one at a time and saved in batches;
memory is bounded by one batch, never by the file. A malformed document is counted and reported
with its file and line; an experiment this importer does not read is counted and skipped.

Parallel: the lines of a file are parsed, mapped and judged in worker processes, chunk by chunk
(a few chunks per worker in flight), and this process saves what they return in the order the
lines were read, so the stored rows do not depend on the number of workers.

Provenance needs no new column: the run's probe_id is `ooni:<report_id>` (an OONI report is one
session of one probe, the nearest thing OONI has to a probe identity), its config_digest
`ooni:<measurement_uid or sha256:...>`, its software_version OONI's software and experiment
versions, and the document's verdict keys are kept as an annotation `ooni:<run_id>`.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import uuid
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from analysis.analyse import analyse
from analysis.controls import ControlEvidence
from probe.catalog import builtin_targets
from probe.codec import CodecError, decode_measurement, decode_run
from probe.model import Connectivity, Measurement, NetworkInfo, Run
from probe.names import normalise_host
from probe.ooni.agreement import AgreementRow, AgreementTable, compare
from probe.ooni.control import control_evidence
from probe.ooni.dataformat import MAX_ITEMS, FormatError
from probe.ooni.document import (
    EXPERIMENTS,
    OoniDocument,
    UnknownExperiment,
    experiment_of,
    parse_document,
)
from probe.ooni.export import EXTENSION_KEY, SOFTWARE_NAME
from probe.ooni.mapping import to_measurements, uuid5_hex
from probe.ooni.reader import RawDocument, RawLine, ReadProblem, parse_line, read_raw
from probe.ooni.targets import host_of_target, route
from probe.ooni.verdict_keys import key_fields, keys_of
from probe.records import Verdict
from probe.store import Store
from probe.store.database import RunBundle, RunRows, run_rows

# Every id an import makes is a uuid5 in this namespace: the same document, the same ids.
OONI_NAMESPACE = uuid.UUID("5f0e8a52-2b8c-4d0e-9a57-0c1e5a7d0001")
ANNOTATION_PREFIX = "ooni:"
# Documents saved per transaction (fewer, larger transactions rewrite index pages less often;
# each waits here as rows, ~40 KB a document: 1,000 held 40 MB of the importing process's peak).
BATCH_DOCUMENTS = 500
# Work sent to a worker process at a time: this many documents, or lines of this many bytes.
CHUNK_DOCUMENTS = 32
CHUNK_BYTES = 4 * 1024 * 1024
# Chunks given to the pool per worker before the oldest is waited for (bounds memory). Enough
# for the workers to go on while this process saves a batch: with two in flight per worker they
# sat idle through every save (88,440 documents: 1.4 of 2 CPUs busy). Four halved the import's
# wall-clock rate (4,345 documents at load ~3.4: 130 documents/s against 216 with eight, the
# same CPU per document) for ~20 MB less in this process.
WORKER_CHUNKS_IN_FLIGHT = 8
MAX_WORKERS = 8
# Problems kept for the report (every one is counted; a hostile file could hold millions).
MAX_PROBLEMS_KEPT = 100
MAX_EXPERIMENT_NAMES = 100
# The most measurements one of our exported runs may bring (its documents are gathered in memory).
MAX_OWN_MEASUREMENTS = 100_000


@dataclass(frozen=True, slots=True)
class ImportProblem:
    """A document that was not imported: where (file:line) and why (one line, raw text: escape
    it before printing)."""

    location: str
    message: str


@dataclass(slots=True)
class ImportReport:
    """What an import did."""

    documents: int = 0
    imported: Counter[str] = field(default_factory=Counter)
    already_imported: int = 0
    malformed: int = 0
    unknown: Counter[str] = field(default_factory=Counter)
    bytes_read: int = 0
    problems: list[ImportProblem] = field(default_factory=list)
    agreement: AgreementTable = field(default_factory=lambda: AgreementTable(Counter()))

    def problem(self, location: str, message: str) -> None:
        self.malformed += 1
        if len(self.problems) < MAX_PROBLEMS_KEPT:
            self.problems.append(ImportProblem(location, message))

    def skipped(self, experiment: str) -> None:
        # Bounded: a hostile file could name a million experiments.
        name = experiment[:64]
        if name not in self.unknown and len(self.unknown) >= MAX_EXPERIMENT_NAMES:
            name = "(other names)"
        self.unknown[name] += 1


def run_id_of(document: OoniDocument) -> str:
    return uuid5_hex(OONI_NAMESPACE, document.identity)


def run_of(document: OoniDocument) -> Run:
    """The run a document becomes (see the module docstring for where provenance goes)."""
    finished = None
    if document.test_runtime is not None and 0 <= document.test_runtime < 86400:
        finished = document.measurement_start_time + timedelta(seconds=document.test_runtime)
    return Run(
        id=run_id_of(document),
        probe_id=f"ooni:{document.report_id or 'unknown'}",
        started_at=document.measurement_start_time,
        software_version=(
            f"{document.software} {document.test_name} {document.test_version}".strip()
        ),
        config_digest=f"ooni:{document.identity}",
        network=NetworkInfo(
            asn=document.probe_asn,
            as_name=document.probe_network_name,
            country=document.probe_cc,
            resolver_asn=document.resolver_asn,
            resolver_as_name=document.resolver_network_name,
            source="ooni",
        ),
        finished_at=finished,
        connectivity=Connectivity.UNKNOWN,
    )


def _asn_lookup(document: OoniDocument) -> Callable[[str], int | None]:
    """IP -> ASN as OONI's probe recorded it in its DNS answers (df-002 `asn`)."""
    table = {
        a.value: a.asn
        for q in document.observations.queries
        for a in q.answers
        if a.value is not None and a.asn
    }
    return table.get


def annotation_of(
    document: OoniDocument, targets: Collection[tuple[str, str]] | None = None
) -> str:
    """What is kept of the document beside its run: provenance, the verdict keys' values and,
    when the run has several documents, the targets this one judged."""
    return json.dumps(
        {
            "test_name": document.test_name,
            "test_version": document.test_version,
            "measurement_uid": document.measurement_uid,
            "report_id": document.report_id,
            "input": document.input,
            "keys": key_fields(document.test_name, document.test_keys),
            "targets": None if targets is None else sorted(targets),
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )


@dataclass(frozen=True, slots=True)
class ImportedDocument:
    """One run made from one document (or, for our own export, from the documents of one of our
    runs), ready to save, and how our verdicts compare with the documents' OONI keys."""

    experiments: tuple[str, ...]
    bundle: RunBundle
    agreement: list[AgreementRow]


def _agreement(
    documents: Sequence[tuple[str, Mapping[str, Any], Collection[tuple[str, str]] | None]],
    verdicts: Sequence[Verdict],
    hosts: Mapping[tuple[str, str], str],
) -> list[AgreementRow]:
    """The rows of each (experiment, test_keys, its targets) document: a key judges the targets
    of its own document (None: all of the run's)."""
    rows = []
    for experiment, test_keys, names in documents:
        mine = [v for v in verdicts if names is None or (v.platform, v.target) in names]
        rows.extend(compare(experiment, keys_of(experiment, test_keys), mine, hosts))
    return rows


def import_document(document: OoniDocument) -> ImportedDocument:
    """The run, measurements, verdicts and summaries of one OONI document (no I/O)."""
    run = run_of(document)
    routed = route(document)
    targets = [r.target for r in routed]
    measurements = to_measurements(run.id, document, routed, OONI_NAMESPACE)
    controls = ControlEvidence()
    if document.test_name == "web_connectivity" and targets:
        controls = control_evidence(document, targets[0].platform, targets[0].name)
    analysis = analyse(
        run, measurements, controls=controls, targets=targets, asn_of=_asn_lookup(document)
    )
    hosts = {(t.platform, t.name): normalise_host(t.host) for t in targets}
    rows = _agreement([(document.test_name, document.test_keys, None)], analysis.verdicts, hosts)
    bundle = RunBundle(
        run=run,
        measurements=measurements,
        verdicts=analysis.verdicts,
        summaries=analysis.summaries,
        annotations=((f"{ANNOTATION_PREFIX}{run.id}:0", annotation_of(document)),),
    )
    return ImportedDocument((document.test_name,), bundle, rows)


# -- our own export (probe/ooni/export.py): the records ride along in x_censorprobe ------------


@dataclass(slots=True)
class _OwnRun:
    """The documents of one of our runs, gathered as they stream by (they are consecutive)."""

    run: Run
    measurements: list[Measurement]
    documents: list[tuple[OoniDocument, frozenset[tuple[str, str]]]]


def _own_records(document: OoniDocument) -> tuple[Run, list[Measurement]] | None:
    """Our run and measurements from a censorprobe export; None for any other document.
    FormatError when the extension is there but does not decode."""
    extension = document.test_keys.get(EXTENSION_KEY)
    if document.software_name != SOFTWARE_NAME or not isinstance(extension, dict):
        return None
    try:
        run = decode_run(extension.get("run"), f"test_keys.{EXTENSION_KEY}.run")
        entries = extension.get("measurements")
        if not isinstance(entries, list) or len(entries) > MAX_ITEMS:
            raise FormatError(f"test_keys.{EXTENSION_KEY}.measurements: expected a list")
        measurements = [
            decode_measurement(entry, f"test_keys.{EXTENSION_KEY}.measurements[{i}]")
            for i, entry in enumerate(entries)
        ]
    except CodecError as exc:
        raise FormatError(str(exc)) from None
    if any(m.run_id != run.id for m in measurements):
        raise FormatError(f"test_keys.{EXTENSION_KEY}: a measurement of another run")
    return run, measurements


def _import_own(own: _OwnRun) -> ImportedDocument:
    by_name = {(t.platform, t.name): t for t in builtin_targets()}
    every = dict.fromkeys((m.platform, m.target) for m in own.measurements)
    targets = [by_name[n] for n in every if n in by_name]
    analysis = analyse(own.run, own.measurements, targets=targets or None)
    hosts = {n: host_of_target(n[1]) for n in every}
    documents = [(d.test_name, d.test_keys, names) for d, names in own.documents]
    rows = _agreement(documents, analysis.verdicts, hosts)
    bundle = RunBundle(
        run=own.run,
        measurements=own.measurements,
        verdicts=analysis.verdicts,
        summaries=analysis.summaries,
        annotations=tuple(
            (f"{ANNOTATION_PREFIX}{own.run.id}:{i}", annotation_of(d, names))
            for i, (d, names) in enumerate(own.documents)
        ),
    )
    return ImportedDocument(tuple(d.test_name for d, _ in own.documents), bundle, rows)


# -- preparing documents (in this process or in worker processes) ------------------------------


@dataclass(frozen=True, slots=True)
class _Judged:
    """A document of an experiment read here, judged, as the rows to save."""

    size: int
    experiments: tuple[str, ...]
    rows: RunRows
    agreement: list[AgreementRow]


@dataclass(frozen=True, slots=True)
class _Own:
    """A document of one of our own exports: gathered by run in the importing process."""

    size: int
    location: str
    document: OoniDocument
    run: Run
    measurements: list[Measurement]


@dataclass(frozen=True, slots=True)
class _Skipped:
    size: int
    experiment: str


@dataclass(frozen=True, slots=True)
class _Problem:
    size: int  # 0: the reader could not read it (nothing counted as read)
    location: str
    message: str


_Prepared = _Judged | _Own | _Skipped | _Problem


def _prepare(item: RawLine | RawDocument | ReadProblem) -> _Prepared:
    """What one document read is, with all the work that needs no other document done."""
    if isinstance(item, RawLine):
        item = parse_line(item)
    if not isinstance(item, RawDocument):
        return _Problem(0, str(item.location), item.message)
    try:
        experiment = experiment_of(item.data)
        if experiment not in EXPERIMENTS and item.data.get("software_name") != SOFTWARE_NAME:
            return _Skipped(item.size, experiment)
        document = parse_document(item.data, accept_any=True)
        records = _own_records(document)
        if records is not None:
            return _Own(item.size, str(item.location), document, *records)
        if experiment not in EXPERIMENTS:
            return _Skipped(item.size, experiment)
        imported = import_document(document)
        return _Judged(
            item.size, imported.experiments, run_rows(imported.bundle), imported.agreement
        )
    except UnknownExperiment as exc:
        return _Skipped(item.size, exc.test_name)
    except ValueError as exc:
        # FormatError and CodecError, and a value our records refuse: the document's fault.
        return _Problem(item.size, str(item.location), _message(exc))


def _message(exc: ValueError) -> str:
    return str(exc).splitlines()[0] if str(exc) else repr(exc)


def _prepare_chunk(items: list[RawLine | RawDocument | ReadProblem]) -> list[_Prepared]:
    return [_prepare(item) for item in items]


def _chunks(
    items: Iterator[RawLine | RawDocument | ReadProblem],
) -> Iterator[list[RawLine | RawDocument | ReadProblem]]:
    """Consecutive items, CHUNK_DOCUMENTS or CHUNK_BYTES of lines at most per chunk."""
    chunk: list[RawLine | RawDocument | ReadProblem] = []
    size = 0
    for item in items:
        chunk.append(item)
        size += len(item.raw) if isinstance(item, RawLine) else 0
        if len(chunk) >= CHUNK_DOCUMENTS or size >= CHUNK_BYTES:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def default_workers() -> int:
    """Worker processes for an import: one per CPU this process may run on, MAX_WORKERS at
    most; 0 (everything in this process) on one CPU."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    count = min(cpus or 1, MAX_WORKERS)
    return count if count > 1 else 0


def _prepared(
    items: Iterable[RawLine | RawDocument | ReadProblem], workers: int
) -> Iterator[_Prepared]:
    """Every item prepared, in order. With workers, chunks go to a pool of worker processes,
    WORKER_CHUNKS_IN_FLIGHT per worker at most (memory is bounded by those chunks, not by the
    file); a file of fewer than two chunks is prepared here (no processes started)."""
    stream = iter(items)
    head = list(itertools.islice(stream, 2 * CHUNK_DOCUMENTS))
    if workers <= 0 or len(head) < 2 * CHUNK_DOCUMENTS:
        yield from map(_prepare, head)
        yield from map(_prepare, stream)
        return
    methods = multiprocessing.get_all_start_methods()
    # fork: the workers start with this process's modules loaded (spawn re-imports them all).
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    in_flight: deque[Future[list[_Prepared]]] = deque()
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        try:
            for chunk in _chunks(itertools.chain(head, stream)):
                in_flight.append(pool.submit(_prepare_chunk, chunk))
                if len(in_flight) >= workers * WORKER_CHUNKS_IN_FLIGHT:
                    yield from in_flight.popleft().result()
            while in_flight:
                yield from in_flight.popleft().result()
        finally:
            for future in in_flight:
                future.cancel()


def import_ooni(
    store: Store,
    paths: Iterable[Path],
    *,
    batch_documents: int = BATCH_DOCUMENTS,
    progress: Callable[[ImportReport], None] | None = None,
    workers: int | None = None,
) -> ImportReport:
    """Import every OONI document under `paths` (files or folders) into `store`.

    Documents are parsed, mapped and judged in `workers` processes (default_workers() when
    None; 0: in this one), saved here in the order they were read: the stored rows are the same
    whatever the number of workers.

    ReaderError (before anything is read) when a path does not exist or is not an OONI file;
    StoreError when the database fails. Bad documents never raise: see ImportReport."""
    report = ImportReport()
    pending: list[_Judged] = []
    own: _OwnRun | None = None

    def flush() -> None:
        saved = set(store.save_run_rows([p.rows for p in pending]))
        for item in pending:
            if item.rows.run["id"] in saved:
                saved.discard(item.rows.run["id"])  # a run twice in one batch counts once
                report.imported.update(item.experiments)
                report.agreement.add(item.agreement)
            else:
                report.already_imported += len(item.experiments)
        pending.clear()
        if progress is not None:
            progress(report)

    def close_own() -> None:
        nonlocal own
        if own is not None:
            imported = _import_own(own)
            pending.append(
                _Judged(0, imported.experiments, run_rows(imported.bundle), imported.agreement)
            )
            own = None

    items = read_raw(paths)
    for outcome in _prepared(items, default_workers() if workers is None else workers):
        report.documents += 1
        report.bytes_read += outcome.size
        if isinstance(outcome, _Problem):
            report.problem(outcome.location, outcome.message)
        elif isinstance(outcome, _Skipped):
            report.skipped(outcome.experiment)
        elif isinstance(outcome, _Judged):
            close_own()
            pending.append(outcome)
        else:
            run, measurements = outcome.run, outcome.measurements
            if own is not None and own.run.id != run.id:
                close_own()
            if own is None:
                own = _OwnRun(run, [], [])
            if len(own.measurements) + len(measurements) > MAX_OWN_MEASUREMENTS:
                report.problem(
                    outcome.location,
                    f"run {run.id[:40]}: more than {MAX_OWN_MEASUREMENTS} measurements",
                )
            else:
                own.measurements.extend(measurements)
                names = frozenset((m.platform, m.target) for m in measurements)
                own.documents.append((outcome.document, names))
        if len(pending) >= batch_documents:
            flush()
    close_own()
    if pending:
        flush()
    return report


@dataclass(frozen=True, slots=True)
class StoredAgreement:
    """One agreement row of a stored import, with the run it belongs to."""

    run: Run
    document: Mapping[str, Any]
    row: AgreementRow


def stored_agreement(store: Store) -> Iterator[StoredAgreement]:
    """Every agreement row of every imported document, recomputed from what the store holds
    (OONI's keys as imported, our verdicts as they are now), by run id."""
    current: str | None = None
    documents: list[Mapping[str, Any]] = []

    def rows() -> Iterator[StoredAgreement]:
        if current is None:
            return
        run = store.get_run(current)
        if run is None:
            return
        verdicts = list(store.verdicts(run_id=current))
        hosts = {(v.platform, v.target): host_of_target(v.target) for v in verdicts}
        for document in documents:
            experiment = str(document.get("test_name", ""))
            keys = document.get("keys")
            for row in compare(
                experiment,
                keys_of(experiment, keys if isinstance(keys, dict) else {}),
                verdicts,
                hosts,
            ):
                yield StoredAgreement(run, document, row)

    for key, value in store.annotations(ANNOTATION_PREFIX):
        run_id = key[len(ANNOTATION_PREFIX) :].rpartition(":")[0]
        if run_id != current:
            yield from rows()
            current, documents = run_id, []
        try:
            documents.append(json.loads(value))
        except ValueError:
            continue
    yield from rows()
