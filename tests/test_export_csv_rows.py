"""The measurements CSV as the straightforward writer makes it: every cell through inert_cell,
then the details JSON. write_measurements_csv formats a row once and only sends rows where a cell
could start like a formula through inert_cell (analysis.export, _CELL_MAY_RUN); its file must be
byte-identical to the straightforward one, on recorded lab runs, on the export fixture and on
cells made to start like formulas (or to look as if they did). compact_json, which writes the
details JSON through a C encoder made once, writes what json.dumps writes."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from analysis.export import (
    compact_json,
    format_timestamp,
    measurement_rows,
    write_measurements_csv,
)
from probe.codec import encode_details
from probe.model import HttpTransaction, Layer, Measurement, Run
from probe.store import Store
from tests.export_store import build_export_store, reference_csv
from tests.replay import load_replay, recorded_scenarios, replay_path
from tests.store_rows import make_measurement, make_run

# Cells that start like a formula, behind blanks (ASCII and not), or only seem to: a formula
# character inside a quoted cell after a comma, a minus inside, a plain negative-looking text.
TRICKY = (
    "=1+1",
    "+cmd",
    "-2",
    "@SUM(A1)",
    "\tx",
    "\rx",
    "  =x",
    "\u00a0=x",
    "\u3000@x",
    "a,=b",
    'say "=x"',
    "a, b",
    "x-y",
    "",
    " ",
    "plain",
)


def _tricky(store: Store) -> None:
    for i, text in enumerate(TRICKY):
        run = make_run(store.probe_id(), country=text or None, asn=i)
        store.start_run(run)
        title = HttpTransaction(f"https://{i}.example/", status=200, title=text or None)
        store.save_measurements(
            [
                make_measurement(run.id, target=text or "t", endpoint=text or "e"),
                make_measurement(run.id, failure=text or None, failure_detail=text or None),
                make_measurement(
                    run.id, platform=text or "p", layer=Layer.HTTP, endpoint="u", details=title
                ),
            ]
        )


def _both(store: Store, runs: list[Run]) -> tuple[str, str]:
    written = io.StringIO()
    count = write_measurements_csv(store, written, runs=runs)
    rows = list(measurement_rows(store, runs=runs))
    assert count == len(rows) > 0
    return written.getvalue(), reference_csv(rows)


def test_cells_that_start_like_formulas_are_written_as_every_cell_through_inert_cell(
    tmp_path: Path,
) -> None:
    with Store.open(tmp_path / "tricky.db") as store:
        _tricky(store)
        written, expected = _both(store, list(store.runs()))
    assert written == expected
    assert "'=1+1" in written and "'  =x" in written and "'\u00a0=x" in written
    assert ",a, b," not in written  # quoted: a cell with a comma is one cell


def test_recorded_lab_runs_export_as_every_cell_through_inert_cell(tmp_path: Path) -> None:
    with Store.open(tmp_path / "lab.db") as store:
        measurements: list[Measurement] = []
        for name in recorded_scenarios():
            replay = load_replay(replay_path(name))
            store.start_run(replay.run)
            measurements.extend(replay.measurements)
        store.save_measurements(measurements)
        written, expected = _both(store, list(store.runs()))
    assert written == expected
    assert written.count("\n") == len(measurements) + 1


def test_the_export_fixture_exports_as_every_cell_through_inert_cell(tmp_path: Path) -> None:
    data = build_export_store(tmp_path)
    with Store.open_readonly(data.db) as store:
        # Without the runs read up front as well: each run is then looked up on its own.
        for runs in (list(store.runs()), []):
            written, expected = _both(store, runs)
            assert written == expected
    assert "'=HYPERLINK" in written


def test_a_run_network_with_a_formula_country_is_made_inert(tmp_path: Path) -> None:
    with Store.open(tmp_path / "c.db") as store:
        run = make_run(store.probe_id(), country="=IR")
        store.start_run(run)
        store.save_measurements([make_measurement(run.id)])
        written, expected = _both(store, list(store.runs()))
    assert written == expected
    assert ",'=IR," in written


def test_compact_json_writes_what_json_dumps_writes_compactly() -> None:
    values: list[Any] = ["x", "é\u2028\x00", 1, -0.0, 1.5, 1e300, float("nan"), float("inf"), None]
    values += [True, [], {}, {"a": [1, {"b": 'c"'}], "é": 2.0}, (1, 2), {1: 2, None: 3}]
    for name in recorded_scenarios()[:3]:
        values += [
            encode_details(m.observation.details)
            for m in load_replay(replay_path(name)).measurements
        ]
    for value in values:
        assert compact_json(value) == json.dumps(value, separators=(",", ":")), value
    for bad in (object(), {"a": {1}}, {(1, 2): 3}):
        with pytest.raises(TypeError) as ours:
            compact_json(bad)
        with pytest.raises(TypeError) as theirs:
            json.dumps(bad, separators=(",", ":"))
        assert str(ours.value) == str(theirs.value)


def test_a_time_formats_the_same_when_it_repeats_and_after_another(tmp_path: Path) -> None:
    tehran = timezone(timedelta(hours=3, minutes=30))
    first = datetime(2024, 11, 20, 9, 30, 0, 123456, tzinfo=UTC)
    times = [first, first, first.astimezone(tehran), first + timedelta(seconds=1), first]
    expected = [
        "2024-11-20T09:30:00.123456Z",
        "2024-11-20T09:30:00.123456Z",
        "2024-11-20T09:30:00.123456Z",
        "2024-11-20T09:30:01.123456Z",
        "2024-11-20T09:30:00.123456Z",
    ]
    assert [format_timestamp(t) for t in times] == expected
    with Store.open(tmp_path / "t.db") as store:  # the store's shared datetimes, in a file
        run = make_run(store.probe_id())
        store.start_run(run)
        store.save_measurements([make_measurement(run.id, started_at=t) for t in times])
        written, reference = _both(store, list(store.runs()))
    assert written == reference
    assert written.count(",2024-11-20T09:30:00.000000Z,") == 4  # stored to the second
