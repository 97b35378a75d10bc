"""`probe export --what verdicts|events` (and the measurement export's network filter) from a
real SQLite store, read back with csv.DictReader and json the way researchers' scripts read them:
fixed columns in the documented order, and every value parses to its documented type."""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from analysis.events import detect_events
from analysis.export import (
    EVENT_COLUMNS,
    MEASUREMENT_COLUMNS,
    VERDICT_COLUMNS,
    write_verdicts_csv,
)
from probe.records import Status, Verdict
from probe.store import Store
from tests.cli import invoke
from tests.store_rows import make_measurement, make_run
from tests.stored_verdicts import TELEGRAM, TWITTER, small_spec, store_verdicts
from tests.synthetic import SyntheticDataset, generate, score


@pytest.fixture(scope="module")
def dataset() -> SyntheticDataset:
    return generate(small_spec(), seed=3)


@pytest.fixture(scope="module")
def db(dataset: SyntheticDataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("export") / "probe.db"
    with Store.open(path) as store:
        store_verdicts(store, dataset.verdicts)
    return path


def export(db: Path, tmp_path: Path, what: str, form: str, *options: str) -> Path:
    out = tmp_path / f"{what}.{form}"
    code, _, err = invoke(
        "export", "--what", what, f"--{form}", str(out), "--db", str(db), *options
    )
    assert code == 0, err
    return out


def read_csv(path: Path) -> tuple[tuple[str, ...], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    return tuple(reader.fieldnames or ()), rows


def utc(text: str) -> datetime:
    """A time column: ISO-8601 ending in Z, microseconds always present."""
    assert text.endswith("Z") and len(text) == len("2024-03-01T00:00:00.000000Z"), text
    when = datetime.fromisoformat(text)
    assert when.utcoffset() is not None and not when.utcoffset()
    return when


def test_verdicts_csv_has_the_documented_columns_and_types(
    db: Path, dataset: SyntheticDataset, tmp_path: Path
) -> None:
    path = export(db, tmp_path, "verdicts", "csv")
    columns, rows = read_csv(path)
    assert columns == VERDICT_COLUMNS
    assert len(rows) == len(dataset.verdicts)
    times = [utc(row["measured_at"]) for row in rows]
    assert times == sorted(times)  # streamed in time order
    for row in rows:
        assert int(row["asn"]) in (44244, 3320)
        assert row["country"] in ("IR", "DE")
        assert row["platform"] in ("telegram", "twitter")
        status = Status(row["status"])
        if status is Status.BLOCKED:
            assert row["technique"] in ("tcp.timeout", "dns.bogon")
            assert row["confidence"] in ("confirmed", "anomaly")
        else:
            assert row["technique"] == row["confidence"] == ""
        assert row["evidence"].split() and row["rule_id"] and row["rules_version"]
    blocked = sum(row["status"] == "blocked" for row in rows)
    assert blocked == sum(v.status is Status.BLOCKED for v in dataset.verdicts)


def test_verdicts_jsonl_keeps_numbers_and_lists(db: Path, tmp_path: Path) -> None:
    path = export(db, tmp_path, "verdicts", "jsonl", "--platform", "twitter", "-n", "AS3320")
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 72 * len(TWITTER)  # 3 days of hourly runs of the one DTAG probe
    for record in records:
        assert tuple(record) == VERDICT_COLUMNS
        assert record["asn"] == 3320 and record["platform"] == "twitter"
        assert isinstance(record["evidence"], list) and record["technique"] is None
        utc(record["measured_at"])


def test_verdict_filters_are_a_half_open_time_window(db: Path, tmp_path: Path) -> None:
    path = export(
        db, tmp_path, "verdicts", "csv",
        "--since", "2024-03-02T00:00Z", "--until", "2024-03-02T01:00Z", "--network", "44244",
    )  # fmt: skip
    _, rows = read_csv(path)
    assert len(rows) == 2 * (len(TELEGRAM) + len(TWITTER))  # two probes, one run each
    assert all(row["measured_at"].startswith("2024-03-02T00:") for row in rows)


def test_events_csv_has_the_documented_columns_and_types(
    db: Path, dataset: SyntheticDataset, tmp_path: Path
) -> None:
    path = export(db, tmp_path, "events", "csv")
    columns, rows = read_csv(path)
    assert columns == EVENT_COLUMNS
    assert len(rows) == len(dataset.truth) == 2
    telegram, twitter = sorted(rows, key=lambda row: row["platform"])

    assert (telegram["kind"], telegram["technique"]) == ("blocking", "tcp.timeout")
    assert utc(telegram["onset"]) == datetime(2024, 3, 2, tzinfo=UTC)
    assert utc(telegram["end"]) == datetime(2024, 3, 3, tzinfo=UTC)
    assert telegram["ongoing"] == "false"
    assert int(telegram["asn"]) == 44244 and [int(a) for a in telegram["networks"].split()] == [
        44244
    ]
    assert sorted(telegram["targets"].split()) == sorted(TELEGRAM)
    assert int(telegram["hosts"]) == 2 and int(telegram["runs"]) > 0
    assert telegram["rate"] == ""  # intermittent events only
    assert "tcp.timeout" in telegram["detail"]

    assert twitter["end"] == "" and twitter["ongoing"] == "true"
    assert utc(twitter["onset"]) == datetime(2024, 3, 2, 12, tzinfo=UTC)


def test_events_jsonl_matches_the_detector(
    db: Path, dataset: SyntheticDataset, tmp_path: Path
) -> None:
    path = export(db, tmp_path, "events", "jsonl")
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert all(tuple(record) == EVENT_COLUMNS for record in records)
    twitter = next(r for r in records if r["platform"] == "twitter")
    assert twitter["end"] is None and twitter["ongoing"] is True
    assert twitter["networks"] == [44244] and twitter["asn"] == 44244
    assert sorted(twitter["targets"]) == sorted(TWITTER) and twitter["hosts"] == 2
    assert twitter["rate"] is None


def test_events_of_one_network_only(db: Path, tmp_path: Path) -> None:
    path = export(db, tmp_path, "events", "csv", "--network", "3320")
    _, rows = read_csv(path)
    assert rows == []  # DTAG blocks nothing


def test_events_match_the_ground_truth_through_the_export(
    db: Path, dataset: SyntheticDataset, tmp_path: Path
) -> None:
    """The export writes exactly what the detector finds: the known events, nothing else."""
    with Store.open(db) as store:
        events = detect_events(store.verdicts())
    assert not score(dataset.truth, events).missed
    _, rows = read_csv(export(db, tmp_path, "events", "csv"))
    assert [(r["platform"], r["onset"]) for r in rows] == [
        (e.platform, e.onset.strftime("%Y-%m-%dT%H:%M:%S.%fZ")) for e in events
    ]


def test_measurements_export_filters_by_the_run_network(tmp_path: Path) -> None:
    with Store.open(tmp_path / "m.db") as store:
        irancell = make_run(store.probe_id(), asn=44244, country="IR")
        dtag = make_run(store.probe_id(), asn=3320, country="DE")
        for run in (irancell, dtag):
            store.start_run(run)
            store.save_measurements([make_measurement(run.id)])
    out = export(tmp_path / "m.db", tmp_path, "measurements", "csv", "--network", "AS3320")
    columns, rows = read_csv(out)
    assert columns == MEASUREMENT_COLUMNS
    assert [(row["run_id"], row["asn"]) for row in rows] == [(dtag.id, "3320")]


def test_export_reports_what_it_wrote(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "v.csv"
    code, _, err = invoke(
        "export", "--what", "verdicts", "--csv", str(out), "--db", str(db), "-p", "twitter",
        "-n", "3320",
    )  # fmt: skip
    assert code == 0 and f"exported {72 * len(TWITTER)} verdicts to {out}" in err
    code, _, err = invoke("export", "--what", "trends", "--csv", str(out), "--db", str(db))
    assert code == 2 and "trends" in err


class RecordingVerdicts:
    """Verdicts handed over one at a time, noting how much output existed at each."""

    def __init__(self, verdicts: list[Verdict], out: io.StringIO) -> None:
        self.items, self.out = verdicts, out
        self.lines_seen: list[int] = []

    def __iter__(self) -> Iterator[Verdict]:
        for item in self.items:
            self.lines_seen.append(self.out.getvalue().count("\n"))
            yield item


def test_verdict_rows_are_written_as_they_stream(dataset: SyntheticDataset) -> None:
    items = list(itertools.islice(dataset.verdicts, 5))
    out = io.StringIO()
    source = RecordingVerdicts(items, out)
    assert write_verdicts_csv(source, out) == 5
    assert source.lines_seen == [1, 2, 3, 4, 5]  # header plus every row before it
