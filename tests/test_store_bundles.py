"""Store.save_runs (whole runs in one transaction, idempotent by run id) and the annotations kept
beside runs: what an import writes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from probe.records import Status, Verdict
from probe.store import Store, StoreError
from probe.store.database import RunBundle
from tests import builders as b


def _bundle(run_id: str) -> RunBundle:
    run = replace(b.make_run(), id=run_id)
    m = b.tcp("telegram", "149.154.175.50", "149.154.175.50", 443)
    m = replace(m, run_id=run_id, id=f"{run_id}-m")
    verdict = Verdict(
        run_id=run_id,
        probe_id=run.probe_id,
        measured_at=run.started_at,
        asn=58224,
        country="IR",
        platform="telegram",
        target="149.154.175.50",
        status=Status.OK,
        technique=None,
        confidence=None,
        rule_id="ok",
        rules_version="1",
        evidence=(m.id,),
    )
    return RunBundle(run, [m], [verdict], (), ((f"note:{run_id}", f"value of {run_id}"),))


def test_save_runs_writes_whole_runs_and_skips_those_already_stored(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.db") as store:
        assert store.save_runs([_bundle("a"), _bundle("b"), _bundle("a")]) == ["a", "b"]
        assert store.save_runs([_bundle("b"), _bundle("c")]) == ["c"]
        assert sorted(r.id for r in store.runs()) == ["a", "b", "c"]
        assert len(list(store.measurements())) == 3
        assert [v.run_id for v in store.verdicts()] == ["a", "b", "c"]
        assert list(store.annotations("note:")) == [
            ("note:a", "value of a"),
            ("note:b", "value of b"),
            ("note:c", "value of c"),
        ]


def test_annotation_prefixes_are_literal_and_never_the_stores_own_keys(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.db") as store:
        store.save_runs([_bundle("x_1"), _bundle("x%2")])
        assert [k for k, _ in store.annotations("note:x_")] == ["note:x_1"]
        assert [k for k, _ in store.annotations("note:x%")] == ["note:x%2"]
        for reserved in ("", "schema_version", "probe_id"):
            with pytest.raises(ValueError):
                list(store.annotations(reserved))


def test_a_failing_batch_saves_nothing(tmp_path: Path) -> None:
    good, bad = _bundle("good"), _bundle("bad")
    clash = replace(bad, measurements=[replace(bad.measurements[0], id=good.measurements[0].id)])
    with Store.open(tmp_path / "s.db") as store:
        with pytest.raises(StoreError):
            store.save_runs([good, clash])
        assert list(store.runs()) == []
