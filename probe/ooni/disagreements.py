"""`probe export --what ooni-agreement`: every imported OONI key on which our verdicts and OONI's
differ, as CSV or JSON Lines with fixed columns (append new ones at the end, never reorder).

Columns (AGREEMENT_COLUMNS, in order):

    run_id            our run of the document (uuid5 of its measurement_uid)
    measured_at       the document's measurement_start_time, UTC, ISO-8601 with a Z suffix
    asn, country      the probe's network, from the document
    report_id         OONI's report_id
    measurement_uid   OONI's measurement_uid (empty when the document had none)
    input             the document's input (web_connectivity's URL)
    experiment        OONI's test_name
    key               the OONI verdict key, e.g. telegram_tcp_blocking
    ooni_value        the key's value in the document, as JSON
    ooni              ok | blocked | down | unknown
    ours              ok | blocked | down | unknown (our verdicts of the key's targets, combined
                      as OONI combines them)
    agreement         disagree | ours_undecided | ooni_undecided
    techniques        our blocking techniques among those targets, space-separated
    targets           each target of the key's scope and our status, space-separated

Rows where both sides agree, or neither decided, are not listed. CSV cells follow the other
exports' rules (analysis/export.py): one line each, and text that a spreadsheet would run as a
formula gets a leading '.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from datetime import UTC
from typing import Any, TextIO

from analysis.export import inert_cell
from probe.ooni.agreement import Agreement
from probe.ooni.importer import StoredAgreement, stored_agreement
from probe.store import Store

AGREEMENT_COLUMNS: tuple[str, ...] = (
    "run_id",
    "measured_at",
    "asn",
    "country",
    "report_id",
    "measurement_uid",
    "input",
    "experiment",
    "key",
    "ooni_value",
    "ooni",
    "ours",
    "agreement",
    "techniques",
    "targets",
)
LISTED = frozenset({Agreement.DISAGREE, Agreement.OURS_UNDECIDED, Agreement.OONI_UNDECIDED})


def _one_line(value: object) -> str:
    return " ".join(str(value).split()) if value is not None else ""


def agreement_record(item: StoredAgreement) -> dict[str, Any]:
    run, row, document = item.run, item.row, item.document
    return {
        "run_id": run.id,
        "measured_at": run.started_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "asn": run.network.asn,
        "country": run.network.country,
        "report_id": document.get("report_id"),
        "measurement_uid": document.get("measurement_uid"),
        "input": document.get("input"),
        "experiment": row.experiment,
        "key": row.key,
        "ooni_value": row.ooni_value,
        "ooni": row.ooni.value,
        "ours": row.ours.value,
        "agreement": row.agreement.value,
        "techniques": " ".join(row.techniques),
        "targets": " ".join(row.targets),
    }


def disagreements(store: Store) -> Iterator[dict[str, Any]]:
    """The listed rows (see the module docstring), by run."""
    for item in stored_agreement(store):
        if item.row.agreement in LISTED:
            yield agreement_record(item)


def write_agreement_csv(records: Iterable[dict[str, Any]], out: TextIO) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(AGREEMENT_COLUMNS)
    count = 0
    for record in records:
        writer.writerow([inert_cell(_one_line(record[name])) for name in AGREEMENT_COLUMNS])
        count += 1
    return count


def write_agreement_jsonl(records: Iterable[dict[str, Any]], out: TextIO) -> int:
    count = 0
    for record in records:
        out.write(json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n")
        count += 1
    return count
