"""Verdicts read back from the store: the positional reader (probe.store.database's
_verdict_from_verdicts_row, a report's million rows) returns what was saved, and evidence written
by hand reads as the JSON says, as the reader by name does."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from probe.records import Confidence, Status, Verdict, VerdictRow
from probe.store import Store
from tests.replay import load_replay, recorded_scenarios, replay_path
from tests.store_rows import T0, make_run

AWKWARD_IDS = (
    (),
    ("m1",),
    ("m1", "m2", "m3"),
    ('quo"te', "back\\slash"),
    ('a", "b',),  # the list separator inside one id
    ("tab\there", "nul\x00", "\u2028line", "é ü 中"),
    ("",),
)


def _verdicts(run_id: str, probe_id: str) -> list[Verdict]:
    found = []
    confidences = (None, *Confidence)
    for i, evidence in enumerate(AWKWARD_IDS):
        status = tuple(Status)[i % len(Status)]
        found.append(
            Verdict(
                run_id=run_id,
                probe_id=probe_id,
                measured_at=T0 + timedelta(seconds=i),
                asn=None if i == 2 else 44244,
                country=None if i == 3 else "IR",
                platform="telegram",
                target=f"target-{i}",
                status=status,
                technique="tcp.timeout" if status is Status.BLOCKED else None,
                confidence=confidences[i % len(confidences)],
                rule_id="tcp-timeout",
                rules_version="2025.10",
                evidence=evidence,
                detail="" if i % 2 else "line one\nline two",
            )
        )
    return found


def test_verdicts_read_back_as_saved_whatever_their_evidence_ids(tmp_path: Path) -> None:
    with Store.open(tmp_path / "v.db") as store:
        run = make_run(store.probe_id(), asn=44244)
        store.start_run(run)
        saved = _verdicts(run.id, run.probe_id)
        store.save_verdicts(run.id, saved)
        assert sorted(store.verdicts(), key=lambda v: v.target) == saved


def test_recorded_lab_runs_verdicts_read_back_as_saved(tmp_path: Path) -> None:
    saved: list[Verdict] = []
    with Store.open(tmp_path / "lab.db") as store:
        for name in recorded_scenarios():
            replay = load_replay(replay_path(name))
            store.start_run(replay.run)
            store.save_verdicts(replay.run.id, replay.verdicts)
            saved.extend(replay.verdicts)
        read = list(store.verdicts())
    key = lambda v: (v.run_id, v.platform, v.target)  # noqa: E731
    assert len(saved) > 500
    assert sorted(read, key=key) == sorted(saved, key=key)


@pytest.mark.parametrize(
    "evidence", ['["a","b"]', '[ "a" ]', '["a",\n "b"]', '["\\u0061", "b"]', '["a\\"b"]']
)
def test_hand_written_evidence_reads_as_its_json_says(tmp_path: Path, evidence: str) -> None:
    path = tmp_path / "v.db"
    with Store.open(path) as store:
        run = make_run(store.probe_id())
        store.start_run(run)
        store.save_verdicts(run.id, _verdicts(run.id, run.probe_id)[:1])
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE verdicts SET evidence = ?", (evidence,))
    conn.close()
    with Store.open_readonly(path) as store:
        (verdict,) = store.verdicts()
    assert verdict.evidence == tuple(json.loads(evidence))


def test_a_verdict_row_has_the_verdicts_fields_in_its_order() -> None:
    # VerdictRow.verdict() is Verdict(*row): a field added to one and not the other, or moved,
    # would shift every value after it into the wrong field without an error.
    fields = dataclasses.fields(Verdict)
    assert VerdictRow._fields == tuple(f.name for f in fields)
    assert VerdictRow._field_defaults == {
        f.name: f.default for f in fields if f.default is not dataclasses.MISSING
    }
