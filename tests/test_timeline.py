"""The timeline: verdicts streamed into hourly series per (network, platform, target)."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest

from analysis.timeline import AggregateKey, SeriesKey, build_timeline, hour_of, hour_start
from probe.records import Confidence, Status, Verdict

START = datetime(2024, 6, 1, tzinfo=UTC)


def verdict(
    hour: int,
    status: Status,
    *,
    probe: str = "probe-a",
    asn: int | None = 44244,
    platform: str = "telegram",
    target: str = "149.154.175.50",
    technique: str | None = None,
    minute: int = 7,
) -> Verdict:
    blocked = status is Status.BLOCKED
    return Verdict(
        run_id=f"{probe}-{hour}",
        probe_id=probe,
        measured_at=START + timedelta(hours=hour, minutes=minute),
        asn=asn,
        country="IR",
        platform=platform,
        target=target,
        status=status,
        technique=(technique or "tcp.timeout") if blocked else None,
        confidence=Confidence.ANOMALY if blocked else None,
        rule_id="test",
        rules_version="test-1",
        evidence=(f"m-{probe}-{hour}",),
    )


def test_bucket_score_is_the_blocked_share_of_ok_and_blocked_verdicts() -> None:
    timeline = build_timeline(
        [
            verdict(0, Status.BLOCKED, probe="a"),
            verdict(0, Status.BLOCKED, probe="b"),
            verdict(0, Status.OK, probe="c"),
            verdict(0, Status.DOWN, probe="d"),
            verdict(0, Status.INCONCLUSIVE, probe="e"),
        ]
    )
    (point,) = timeline.series[SeriesKey(44244, "telegram", "149.154.175.50")].points()
    assert point.hour == START
    assert (point.ok, point.blocked, point.down, point.inconclusive) == (1, 2, 1, 1)
    assert point.score == pytest.approx(2 / 3)
    assert set(point.blocked_hosts) == {"a", "b"}
    assert point.ok_hosts == ("c",)
    assert timeline.verdicts == 5


def test_down_and_inconclusive_alone_leave_the_bucket_empty() -> None:
    timeline = build_timeline(
        [
            verdict(0, Status.OK),
            verdict(1, Status.DOWN),
            verdict(1, Status.INCONCLUSIVE, probe="b"),
            verdict(2, Status.BLOCKED),
        ]
    )
    series = timeline.series[(44244, "telegram", "149.154.175.50")]
    assert [p.hour for p in series.points()] == [START, START + timedelta(hours=2)]
    empty = list(series.points(include_empty=True))[1]
    assert (empty.score, empty.down, empty.inconclusive) == (None, 1, 1)


def test_out_of_order_verdicts_come_out_ordered_in_time() -> None:
    hours = [5, 2, 9, 0, 7]
    timeline = build_timeline(verdict(h, Status.OK) for h in hours)
    series = timeline.series[(44244, "telegram", "149.154.175.50")]
    assert [p.hour for p in series.points()] == [START + timedelta(hours=h) for h in sorted(hours)]
    assert len(series) == 10  # hours 0..9, gaps included as empty buckets


def test_series_are_split_by_network_platform_and_target() -> None:
    timeline = build_timeline(
        [
            verdict(0, Status.OK),
            verdict(0, Status.OK, asn=197207),
            verdict(0, Status.OK, target="t.me"),
            verdict(0, Status.OK, platform="whatsapp", target="web.whatsapp.com"),
            verdict(1, Status.OK),
        ]
    )
    assert set(timeline.series) == {
        (44244, "telegram", "149.154.175.50"),
        (197207, "telegram", "149.154.175.50"),
        (44244, "telegram", "t.me"),
        (44244, "whatsapp", "web.whatsapp.com"),
    }
    assert timeline.networks() == [(44244, "telegram"), (44244, "whatsapp"), (197207, "telegram")]


def test_dominant_technique_is_an_attribute_of_each_point_whatever_the_input_order() -> None:
    bucket = [
        verdict(0, Status.BLOCKED, probe="a", technique="tls.sni_reset"),
        verdict(0, Status.BLOCKED, probe="b", technique="dns.bogon"),
        verdict(0, Status.BLOCKED, probe="c", technique="tls.sni_reset"),
        verdict(1, Status.BLOCKED, probe="a", technique="tls.sni_reset"),
        verdict(1, Status.BLOCKED, probe="b", technique="dns.bogon"),
    ]
    for verdicts in (bucket, list(reversed(bucket))):
        series = build_timeline(verdicts).series[(44244, "telegram", "149.154.175.50")]
        # Hour 0: 2 against 1. Hour 1: a tie, broken by name so input order does not matter.
        assert [p.technique for p in series.points()] == ["tls.sni_reset", "dns.bogon"]


def test_aggregate_sums_every_target_of_a_platform_on_a_network() -> None:
    timeline = build_timeline(
        [
            verdict(0, Status.BLOCKED, target="149.154.175.50", technique="tcp.timeout"),
            verdict(0, Status.OK, target="t.me", probe="b"),
            verdict(3, Status.BLOCKED, target="t.me", technique="dns.bogon"),
            verdict(3, Status.BLOCKED, target="149.154.175.50", technique="dns.bogon"),
            verdict(3, Status.OK, asn=197207),  # another network: not in the aggregate
        ]
    )
    aggregates = timeline.aggregates()
    assert set(aggregates) == {AggregateKey(44244, "telegram"), AggregateKey(197207, "telegram")}
    total = aggregates[AggregateKey(44244, "telegram")]
    assert total.target is None
    points = list(total.points())
    assert [(p.ok, p.blocked, p.technique) for p in points] == [
        (1, 1, "tcp.timeout"),
        (0, 2, "dns.bogon"),
    ]
    assert set(points[0].ok_hosts + points[0].blocked_hosts) == {"probe-a", "b"}


def test_a_verdict_without_utc_time_is_refused() -> None:
    with pytest.raises(ValueError, match="UTC"):
        Verdict(
            run_id="r",
            probe_id="p",
            measured_at=datetime(2024, 6, 1, 12, tzinfo=timezone(timedelta(hours=3, minutes=30))),
            asn=44244,
            country="IR",
            platform="telegram",
            target="t.me",
            status=Status.OK,
            technique=None,
            confidence=None,
            rule_id="test",
            rules_version="test-1",
            evidence=(),
        )


def test_timeline_streams_verdicts_without_keeping_them() -> None:
    count = 30_000

    def stream() -> Iterator[Verdict]:
        for n in range(count):
            hour, probe = divmod(n, 20)
            status = Status.BLOCKED if hour % 7 == 0 else Status.OK
            yield verdict(hour, status, probe=f"probe-{probe}")

    tracemalloc.start()
    try:
        timeline = build_timeline(stream())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    series = timeline.series[(44244, "telegram", "149.154.175.50")]
    assert len(series) == count // 20
    assert sum(p.ok + p.blocked for p in series.points()) == count
    # Keeping 30,000 verdicts would take over 10 MB; the counters take a few hundred kB.
    assert peak < 2_000_000


def test_series_grown_a_day_at_a_time_end_at_their_last_verdict() -> None:
    # Hours apart by less and more than a day, one out of order, on two probes: every series
    # (and each probe's own) spans its first to its last verdict's hour, as counted by hand.
    hours = {"a": [0, 1, 5, 30, 31, 100, -3], "b": [2, 26, 27]}
    statuses = (Status.OK, Status.BLOCKED, Status.DOWN, Status.INCONCLUSIVE)
    stream = [
        verdict(hour, statuses[i % 4], probe=probe, technique="tcp.timeout")
        for probe, of_probe in hours.items()
        for i, hour in enumerate(of_probe)
    ]
    timeline = build_timeline(stream)
    series = timeline.series[SeriesKey(44244, "telegram", "149.154.175.50")]
    assert (series.first_hour - hour_of(START), len(series)) == (-3, 104)
    expected = {hour_start(hour_of(START) + h): [0, 0, 0, 0] for of in hours.values() for h in of}
    for v in stream:
        expected[hour_start(hour_of(v.measured_at))][statuses.index(v.status)] += 1
    assert {
        p.hour: [p.ok, p.blocked, p.down, p.inconclusive] for p in series.points(include_empty=True)
    } == {
        hour_start(series.first_hour + i): expected.get(hour_start(series.first_hour + i), [0] * 4)
        for i in range(104)
    }
    assert len(series.technique) == len(series.ok_hosts) == len(series.blocked_hosts) == 104
    for probe, of_probe in hours.items():
        # A probe's own series holds its ok and blocked verdicts only.
        counted = [h for i, h in enumerate(of_probe) if statuses[i % 4] in statuses[:2]]
        own = timeline.probe_series[(44244, probe, "telegram", "149.154.175.50")]
        assert own.first_hour - hour_of(START) == min(counted)
        assert len(own) == max(counted) - min(counted) + 1
