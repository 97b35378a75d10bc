"""A report groups the verdicts in the database (probe.store.Store.verdict_times, then
analysis.timeline.timeline_of_groups) instead of reading them one by one: the timeline must be
the one build_timeline makes of the stream (every series, bucket, probe bit, technique, country
and newest verdict, made in the same order), the report the same byte for byte, and a store
holding a row the groups cannot vouch for must be read row by row, as before, with the same
error naming the row."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from analysis.export import select_verdict_rows
from analysis.report.build import build_report
from analysis.report.page import render_html
from analysis.timeline import Series, Timeline, build_timeline, timeline_of_groups
from probe.model import NetworkInfo, Run
from probe.records import Confidence, Status, Verdict
from probe.store import Store, StoreError

START = datetime(2025, 1, 6, tzinfo=UTC)
NOW = START + timedelta(days=3)
TARGETS = {"telegram": ("dc1", "dc2", "web"), "whatsapp": ("e1", "=cmd"), "signal": ("chat",)}
TECHNIQUES = ("tcp.timeout", "tls.sni_reset", "dns.bogon", None)


def _fill(store: Store, seed: int) -> None:
    """Hourly runs over two days from probes on four networks (one unknown), with runs that
    start at the same time, several techniques in one hour, a country known only later, two
    rules versions, and every status."""
    rng = random.Random(seed)
    probes = [(asn, f"probe-{asn}-{i}") for asn in (44244, 58224, 3320, None) for i in range(2)]
    for hour in range(48):
        for asn, probe in probes:
            if rng.random() < 0.15:
                continue  # offline this hour
            minute = 0 if rng.random() < 0.3 else rng.randrange(60)  # equal starts happen
            moment = START + timedelta(hours=hour, minutes=minute)
            country = None if (asn is None or hour < 5) else ("DE" if asn == 3320 else "IR")
            run = Run(
                id=f"{probe}-{hour:02d}",
                probe_id=probe,
                started_at=moment,
                software_version="0.1.0",
                config_digest="sha256:abc",
                network=NetworkInfo(asn=asn, country=country),
            )
            store.start_run(run)
            verdicts = []
            for platform, targets in TARGETS.items():
                for target in rng.sample(targets, k=rng.randrange(1, len(targets) + 1)):
                    status = rng.choice(list(Status))
                    blocked = status is Status.BLOCKED
                    verdicts.append(
                        Verdict(
                            run_id=run.id,
                            probe_id=probe,
                            measured_at=moment,
                            asn=asn,
                            country=country,
                            platform=platform,
                            target=target,
                            status=status,
                            technique=rng.choice(TECHNIQUES) if blocked else None,
                            confidence=Confidence.ANOMALY if blocked else None,
                            rule_id=f"rule.{status}",
                            rules_version="2025.10" if hour < 30 else "2025.11",
                            evidence=(f"{run.id}-{target}",),
                        )
                    )
            store.save_verdicts(run.id, verdicts)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    with Store.open(tmp_path_factory.mktemp("grouped") / "probe.db") as opened:
        _fill(opened, seed=16)
        yield opened


def _assert_same(grouped: Timeline, streamed: Timeline) -> None:
    assert list(grouped.series) == list(streamed.series)  # made in the same order
    assert list(grouped.probe_series) == list(streamed.probe_series)
    assert grouped.techniques == streamed.techniques
    assert grouped._probes == streamed._probes  # probes, and their bits
    assert grouped.verdicts == streamed.verdicts > 0
    assert grouped.rules_versions == streamed.rules_versions
    for mine, theirs in (
        *zip(grouped.series.values(), streamed.series.values(), strict=True),
        *zip(grouped.probe_series.values(), streamed.probe_series.values(), strict=True),
    ):
        for name in Series.__slots__:
            assert getattr(mine, name) == getattr(theirs, name), (mine, name)


FILTERS: list[tuple[Sequence[str] | None, datetime | None, datetime | None, list[int] | None]] = [
    (None, None, None, None),
    (["whatsapp", "telegram"], None, None, None),  # per platform, in the order asked
    (None, START + timedelta(hours=7, minutes=30), START + timedelta(hours=40), None),
    (["signal"], None, START + timedelta(hours=20), [58224, 3320]),
    (["telegram"], START + timedelta(days=9), None, None),  # nothing
]


@pytest.mark.parametrize(("platforms", "since", "until", "asns"), FILTERS)
def test_a_timeline_of_grouped_verdicts_is_the_timeline_of_their_stream(
    store: Store,
    platforms: Sequence[str] | None,
    since: datetime | None,
    until: datetime | None,
    asns: list[int] | None,
) -> None:
    found = store.verdict_times(platforms=platforms, since=since, until=until, asns=asns)
    assert found is not None
    streamed = build_timeline(
        select_verdict_rows(store, since=since, until=until, platforms=platforms, asns=asns)
    )
    if streamed.verdicts == 0:
        assert found == ([], [])
        return
    _assert_same(timeline_of_groups(*found), streamed)


def test_a_report_from_grouped_verdicts_is_the_report_from_their_stream(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    grouped = build_report(store, now=NOW)
    page = render_html(grouped)
    with monkeypatch.context() as one_by_one:
        one_by_one.setattr(Store, "verdict_times", lambda self, **_: None)
        streamed = build_report(store, now=NOW)
    assert grouped == streamed
    assert page == render_html(streamed)
    assert grouped.verdicts > 1000 and grouped.platforms


def _spoil(path: Path, sql: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(sql)


def _outcome(store: Store) -> object:
    """The report, or the error (its type and message) building it raised."""
    try:
        return build_report(store, now=NOW)
    except Exception as exc:
        return (type(exc), str(exc))


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE verdicts SET status = 'maybe' WHERE rowid = 7",
        "UPDATE verdicts SET confidence = 'sure' WHERE rowid = 7",
        "UPDATE verdicts SET measured_at = 'yesterday' WHERE rowid = 7",
        "UPDATE verdicts SET measured_at = '2025-01-06T05:00:00.000000+03:30' WHERE rowid = 7",
        "UPDATE verdicts SET evidence = 'not json' WHERE rowid = 7",
        "UPDATE verdicts SET asn = 'AS1' WHERE rowid = 7",
    ],
)
def test_a_row_the_groups_cannot_vouch_for_is_read_one_by_one_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sql: str
) -> None:
    path = tmp_path / "probe.db"
    with Store.open(path) as store:
        _fill(store, seed=3)
    _spoil(path, sql)
    with Store.open(path) as store:
        assert store.verdict_times() is None
        outcome = _outcome(store)
        with monkeypatch.context() as one_by_one:
            one_by_one.setattr(Store, "verdict_times", lambda self, **_: None)
            assert outcome == _outcome(store)
    if "status" in sql or "yesterday" in sql or "not json" in sql:
        assert outcome[0] is StoreError and "verdicts row" in outcome[1]  # type: ignore[index]
