"""Cross-network controls (`probe analyse`): a probe's undecided failures become blocked when other
networks reached the same target at the same time, down when they failed too; the probe's own
verdicts stay as they were."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text
from typer.testing import CliRunner

from analysis.crossnet import (
    CROSS_RULES_VERSION,
    FAILING_EVERYWHERE,
    REACHABLE_ELSEWHERE,
    analyse_across_networks,
)
from probe.cli.app import app
from probe.records import Confidence, CrossVerdict, Status
from probe.store import Store
from probe.store.crossnet import cross_verdicts, save_cross_verdicts
from tests.servers.collector import fill_probe
from tests.stored_verdicts import START, TELEGRAM, day, store_verdicts
from tests.synthetic import Censorship, Network, SyntheticSpec, generate

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
CENSORED, FREE, OTHER = 58224, 3320, 13335


def pooled(path: Path, *, elsewhere_failure: str | None, offset: timedelta = timedelta(0)) -> Store:
    """One database holding a censored probe's failures and another network's attempts."""
    store = Store.open(path)
    fill_probe(store, runs=1, measurements=3, asn=CENSORED, start=T0)
    fill_probe(
        store,
        runs=1,
        measurements=3,
        asn=FREE,
        start=T0 + offset,
        failure=elsewhere_failure,
        with_verdicts=False,
    )
    return store


def test_failure_reached_from_another_network_becomes_blocked_citing_its_measurements(
    tmp_path: Path,
) -> None:
    with pooled(tmp_path / "pool.db", elsewhere_failure=None) as store:
        before = list(store.verdicts())
        report = analyse_across_networks(store)
        stored = cross_verdicts(store)
        free_ids = {
            m.id for m in store.measurements() if m.run_id not in {v.run_id for v in before}
        }
        after = list(store.verdicts())

    assert report.examined == 3 and report.count(Status.BLOCKED) == 3
    assert after == before  # the probe's own verdicts are kept
    assert len(stored) == 3
    for item in stored:
        v = item.verdict
        assert v.status is Status.BLOCKED and v.confidence is Confidence.ANOMALY
        assert v.rule_id == REACHABLE_ELSEWHERE.rule_id and v.technique == "tls.reset"
        assert v.asn == CENSORED and f"AS{FREE}" in v.detail
        assert item.controls and set(item.controls) <= free_ids
        own = next(o for o in before if o.target == v.target)
        assert v.evidence == own.evidence and v.run_id == own.run_id


def test_failure_seen_on_every_network_becomes_down(tmp_path: Path) -> None:
    with pooled(tmp_path / "pool.db", elsewhere_failure="generic_timeout_error") as store:
        report = analyse_across_networks(store)
    assert report.count(Status.DOWN) == 3 and report.count(Status.BLOCKED) == 0
    assert {item.verdict.rule_id for item in report.derived} == {FAILING_EVERYWHERE.rule_id}
    assert all(item.verdict.technique is None for item in report.derived)


def test_measurements_outside_the_window_are_no_control(tmp_path: Path) -> None:
    with pooled(tmp_path / "pool.db", elsewhere_failure=None, offset=timedelta(hours=3)) as store:
        narrow = analyse_across_networks(store, window=timedelta(hours=1))
        wide = analyse_across_networks(store, window=timedelta(hours=4))
    assert narrow.examined == 3 and narrow.derived == ()
    assert wide.count(Status.BLOCKED) == 3


def test_same_network_and_vpn_runs_are_no_control(tmp_path: Path) -> None:
    with Store.open(tmp_path / "pool.db") as store:
        fill_probe(store, runs=1, measurements=2, asn=CENSORED, start=T0)
        fill_probe(store, runs=1, measurements=2, asn=CENSORED, start=T0, failure=None)
        (vpn_run,) = fill_probe(store, runs=1, measurements=2, asn=OTHER, start=T0, failure=None)
        with store._transaction(write=True) as conn:
            conn.execute(
                text("UPDATE runs SET vpn_suspected = 1 WHERE id = :id"), {"id": vpn_run.id}
            )
        report = analyse_across_networks(store)
    # The censored network's own verdicts (2) and the second run's (2, also inconclusive with
    # the same ASN) were examined; nothing elsewhere counts.
    assert report.examined == 6 and report.derived == ()


def test_probe_analyse_command_prints_and_stores_the_derived_verdicts(tmp_path: Path) -> None:
    path = tmp_path / "pool.db"
    pooled(path, elsewhere_failure=None).close()
    result = CliRunner().invoke(app, ["analyse", "--db", str(path), "--since", "2026-11-01"])
    assert result.exit_code == 0, result.output
    assert "3 blocked and 0 down" in result.output
    assert "cross.reachable_elsewhere" in result.stdout and f"AS{CENSORED}" in result.stdout
    with Store.open(path) as store:
        assert len(cross_verdicts(store)) == 3
    later = CliRunner().invoke(app, ["analyse", "--db", str(path), "--since", "2026-12-01"])
    assert later.exit_code == 0 and "examined 0 undecided" in later.output


def test_unknown_network_is_not_rejudged(tmp_path: Path) -> None:
    with Store.open(tmp_path / "pool.db") as store:
        fill_probe(store, runs=1, measurements=2, asn=None, start=T0)
        fill_probe(
            store, runs=1, measurements=2, asn=FREE, start=T0, failure=None, with_verdicts=False
        )
        report = analyse_across_networks(store)
    assert report.examined == 2 and report.derived == ()


def test_a_lone_endpoint_failure_is_rejudged_by_another_network(tmp_path: Path) -> None:
    # Without a helper one endpoint failing alone stays inconclusive (endpoint.lone_failure):
    # another network reaching it at the same time is the control that decides it.
    with pooled(tmp_path / "pool.db", elsewhere_failure=None) as store:
        with store._transaction(write=True) as conn:
            conn.execute(text("UPDATE verdicts SET rule_id = 'endpoint.lone_failure'"))
        report = analyse_across_networks(store)
    assert report.examined == 3 and report.count(Status.BLOCKED) == 3


# -- the report and the events read the derived verdicts -----------------------------------------


def _undecided_then_derived(path: Path, *, derive: bool) -> str:
    """A day of Telegram blocked on one network that the probe alone could not decide (its own
    verdicts inconclusive, control.missing) and, when `derive`, `probe analyse`'s derived ones
    (blocked: reached from another network at that time) saved beside them."""
    spec = SyntheticSpec(
        start=START,
        days=3,
        networks=(Network(44244, "IR", hosts=1),),
        platforms=(("telegram", TELEGRAM),),
        censorship=(Censorship((44244,), "telegram", "tcp.timeout", day(1), day(2)),),
    )
    truth = list(generate(spec, seed=9).verdicts)
    blocked = [v for v in truth if v.status is Status.BLOCKED]
    own = [
        replace(v, status=Status.INCONCLUSIVE, technique=None, confidence=None,
                rule_id="control.missing")
        if v.status is Status.BLOCKED
        else v
        for v in truth
    ]  # fmt: skip
    with Store.open(path) as store:
        store_verdicts(store, own)
        if derive:
            derived = [
                CrossVerdict(
                    replace(
                        v, rule_id=REACHABLE_ELSEWHERE.rule_id, rules_version=CROSS_RULES_VERSION
                    ),
                    ("a" * 32,),
                )
                for v in blocked
            ]
            save_cross_verdicts(store, derived)
    result = CliRunner().invoke(
        app, ["export", "--what", "events", "--jsonl", "-", "--db", str(path)]
    )
    assert result.exit_code == 0, result.stderr
    return result.stdout


def test_events_read_the_cross_network_verdicts_where_they_exist(tmp_path: Path) -> None:
    events = [
        json.loads(line)
        for line in _undecided_then_derived(tmp_path / "d.db", derive=True).splitlines()
    ]
    (event,) = [e for e in events if e["kind"] == "blocking"]
    assert event["technique"] == "tcp.timeout" and event["networks"] == [44244]
    assert event["onset"].startswith(day(1).strftime("%Y-%m-%dT%H"))
    # The report reads them too.
    report = CliRunner().invoke(app, ["report", "--db", str(tmp_path / "d.db")])
    assert report.exit_code == 0, report.stderr
    assert "1 event(s)" in report.stdout


def test_without_derived_verdicts_undecided_runs_make_no_event(tmp_path: Path) -> None:
    # The control: the same runs, nothing derived: inconclusive is no evidence either way.
    assert _undecided_then_derived(tmp_path / "u.db", derive=False).strip() == ""
