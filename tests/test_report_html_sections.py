"""The HTML report's sections as a researcher reads them, from the page's markup (no browser):
the overview links every network's state of every platform to its section, an hour without a
run is drawn as no data (never as ok), a single blocked verdict in an hour is visible however
many ok ones share it, and a verdict opens onto the measurements it rests on."""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta
from pathlib import Path

import pytest

from probe.model import Run
from probe.records import Confidence, Status, Verdict
from probe.store import Store
from tests.cli import invoke
from tests.store_rows import make_run
from tests.stored_verdicts import (
    START,
    day,
    small_spec,
    store_dns_blocked_verdict,
    store_verdicts,
    web_telegram_verdict,
)
from tests.synthetic import Outage, generate


def _page(db: Path, folder: Path) -> str:
    html = folder / "report.html"
    code, _, err = invoke("report", "--db", str(db), "--html", str(html))
    assert code == 0, err
    return html.read_text(encoding="utf-8")


def _section(page: str, section_id: str) -> str:
    found = re.search(rf'<section id="{section_id}">(.*?)</section>', page, re.S)
    assert found, f"no section {section_id}"
    return found.group(1)


@pytest.fixture(scope="module")
def two_networks(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Irancell (2 probes, Telegram and Twitter blocked) and DTAG (1 probe, nothing blocked),
    three days; DTAG's probe is offline for six hours on the second day."""
    gap = Outage(3320, day(1), day(1) + timedelta(hours=6))
    spec = dataclasses.replace(small_spec(), outages=(gap,))
    folder = tmp_path_factory.mktemp("sections")
    with Store.open(folder / "p.db") as store:
        store_verdicts(store, generate(spec, seed=3).verdicts)
    return _page(folder / "p.db", folder)


def test_overview_has_a_cell_per_network_and_platform_linking_to_its_section(
    two_networks: str,
) -> None:
    overview = _section(two_networks, "overview")
    rows = re.findall(r"<tr>(.*?)</tr>", overview, re.S)
    header, body = rows[0], rows[1:]
    assert re.findall(r"<th>(?:<a [^>]*>)?([a-z]+)", header)[1:] == ["telegram", "twitter"]
    labels = [re.search(r"<th>([^<]*)", row).group(1) for row in body]  # type: ignore[union-attr]
    assert [label.split()[0] for label in labels] == ["AS3320", "AS44244"]
    dtag, irancell = body
    assert "blocked" in irancell or "partial" in irancell  # Twitter is blocked to the end
    assert "blocked" not in dtag and "partial" not in dtag
    links = re.findall(r'href="#([^"]+)"', overview)
    assert len(links) >= 4
    for anchor in links:
        assert f'id="{anchor}"' in two_networks, anchor


def test_an_hour_without_runs_is_drawn_as_no_data_on_its_network_only(two_networks: str) -> None:
    coverage = _section(two_networks, "coverage")
    scopes = dict(re.findall(r'data-scope="([^"]+)" data-kind="runs"[^>]*>(.*?)</svg>', coverage))
    (dtag,) = [rows for scope, rows in scopes.items() if "DTAG" in scope]
    (irancell,) = [rows for scope, rows in scopes.items() if "Irancell" in scope]
    assert re.findall(r'class="nodata" data-start="(\d+)" data-hours="(\d+)"', dtag) == [
        ("24", "6")
    ]
    assert "nodata" not in irancell
    assert "6 of 72 hour(s) without any run" in coverage


def test_one_blocked_verdict_among_many_ok_in_an_hour_is_visible(tmp_path: Path) -> None:
    # Three probes an hour on one network; in the second hour one of the three calls the
    # target blocked. The hour must not read ok (a threshold on the share once hid it).
    db = tmp_path / "p.db"
    with Store.open(db) as store:
        for hour in range(3):
            for probe in range(3):
                run = make_run(
                    f"probe-{probe}-0000000000",
                    START + timedelta(hours=hour, minutes=probe),
                    asn=58224,
                    as_name="TCI",
                    country="IR",
                    source="helper",
                )
                store.start_run(run)
                blocked = hour == 1 and probe == 0
                store.save_verdicts(run.id, [_verdict(run, blocked)])
    page = _page(db, tmp_path)
    telegram = _section(page, "platform-telegram")
    cells = re.findall(r'<rect class="cell (\w+)"([^>]*)>', telegram)
    assert [status for status, _ in cells] == ["ok", "blocked", "ok"]
    (blocked_attrs,) = [attrs for status, attrs in cells if status == "blocked"]
    # 1 of 3 verdicts blocked: 33%, the legend's second shade (25-50%).
    assert 'data-technique="tcp.timeout"' in blocked_attrs and 'data-level="2"' in blocked_attrs


def _verdict(run: Run, blocked: bool) -> Verdict:
    if not blocked:
        return web_telegram_verdict(run, Status.OK, rule_id="ok", detail="reached")
    return web_telegram_verdict(
        run,
        Status.BLOCKED,
        technique="tcp.timeout",
        confidence=Confidence.ANOMALY,
        rule_id="tcp.timeout",
        detail="every connect timed out",
    )


def test_a_verdict_opens_onto_the_measurements_it_rests_on(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    store_dns_blocked_verdict(db, unrelated_failure="eof_error")
    page = _page(db, tmp_path)
    found = re.search(r'<details class="verdict v-blocked"[^>]*>(.*?)</details>', page, re.S)
    assert found, "no drill-down for the blocked verdict"
    drill = found.group(1)
    assert "web.telegram.org" in drill and "dns.nxdomain" in drill
    assert "the resolver denies the name" in drill
    (evidence,) = re.findall(r'<ol class="evidence" data-total="(\d+)">(.*?)</ol>', drill, re.S)
    assert evidence[0] == "1"
    assert "dns_nxdomain_error" in evidence[1] and "resolve" in evidence[1]
    assert "eof_error" not in drill  # not part of the verdict's evidence
