"""Import OONI measurement documents into the store: each document becomes a run with its
measurements, our verdicts (OONI's test-helper control as the control where the document has
one), platform summaries, and OONI's own verdict keys beside it; then the agreement between
the two.

Idempotent: a run's id is derived from the document's identity (measurement_uid, else a digest
of its report, input and time), and Store.save_runs skips runs already stored, so importing the
same files twice adds nothing. Streaming: documents are read one at a time and saved in batches;
memory is bounded by one batch, never by the file. A malformed document is counted and reported
with its file and line; an experiment this importer does not read is counted and skipped.

Provenance needs no new column: the run's probe_id is `ooni:<report_id>` (an OONI report is one
session of one probe, the nearest thing OONI has to a probe identity), its config_digest
`ooni:<measurement_uid or sha256:...>`, its software_version OONI's software and experiment
versions, and the document's verdict keys are kept as an annotation `ooni:<run_id>`.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
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
from probe.ooni.reader import RawDocument, read_documents
from probe.ooni.targets import host_of_target, route
from probe.ooni.verdict_keys import key_fields, keys_of
from probe.records import Verdict
from probe.store import Store
from probe.store.database import RunBundle

# Every id an import makes is a uuid5 in this namespace: the same document, the same ids.
OONI_NAMESPACE = uuid.UUID("5f0e8a52-2b8c-4d0e-9a57-0c1e5a7d0001")
ANNOTATION_PREFIX = "ooni:"
BATCH_DOCUMENTS = 200
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


def import_ooni(
    store: Store,
    paths: Iterable[Path],
    *,
    batch_documents: int = BATCH_DOCUMENTS,
    progress: Callable[[ImportReport], None] | None = None,
) -> ImportReport:
    """Import every OONI document under `paths` (files or folders) into `store`.

    ReaderError (before anything is read) when a path does not exist or is not an OONI file;
    StoreError when the database fails. Bad documents never raise: see ImportReport."""
    report = ImportReport()
    pending: list[ImportedDocument] = []
    own: _OwnRun | None = None

    def flush() -> None:
        saved = set(store.save_runs([p.bundle for p in pending]))
        for item in pending:
            if item.bundle.run.id in saved:
                saved.discard(item.bundle.run.id)  # a run twice in one batch counts once
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
            pending.append(_import_own(own))
            own = None

    for item in read_documents(paths):
        report.documents += 1
        if not isinstance(item, RawDocument):
            report.problem(str(item.location), item.message)
            continue
        report.bytes_read += item.size
        try:
            experiment = experiment_of(item.data)
            if experiment not in EXPERIMENTS and item.data.get("software_name") != SOFTWARE_NAME:
                report.skipped(experiment)
                continue
            document = parse_document(item.data, accept_any=True)
            records = _own_records(document)
            if records is not None:
                run, measurements = records
                if own is not None and own.run.id != run.id:
                    close_own()
                if own is None:
                    own = _OwnRun(run, [], [])
                if len(own.measurements) + len(measurements) > MAX_OWN_MEASUREMENTS:
                    raise FormatError(
                        f"run {run.id[:40]}: more than {MAX_OWN_MEASUREMENTS} measurements"
                    )
                own.measurements.extend(measurements)
                names = frozenset((m.platform, m.target) for m in measurements)
                own.documents.append((document, names))
            elif experiment not in EXPERIMENTS:
                report.skipped(experiment)
            else:
                close_own()
                pending.append(import_document(document))
        except UnknownExperiment as exc:
            report.skipped(exc.test_name)
        except ValueError as exc:
            # FormatError and CodecError, and a value our records refuse: the document's fault.
            report.problem(str(item.location), str(exc).splitlines()[0] if str(exc) else repr(exc))
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
