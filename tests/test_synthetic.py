"""The synthetic dataset generator: deterministic, lazy, and honest about its ground truth."""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from analysis.model import EventKind
from analysis.timeline import hour_of
from probe.records import Status
from tests.synthetic import (
    DEFAULT_PLATFORMS,
    Censorship,
    Network,
    Outage,
    SyntheticSpec,
    generate,
    month_spec,
)

START = datetime(2024, 5, 1, tzinfo=UTC)
TELEGRAM = DEFAULT_PLATFORMS[0]


def day(number: float) -> datetime:
    return START + timedelta(hours=round(number * 24))


def small_spec(**changes: Any) -> SyntheticSpec:
    base = SyntheticSpec(
        start=START,
        days=6,
        networks=(Network(44244, hosts=2), Network(3320, "DE", hosts=2)),
        censorship=(Censorship((44244,), "telegram", "dns.bogon", day(1), day(3)),),
        platforms=(TELEGRAM,),
        noise_rate=0.05,
        not_evidence_rate=0.05,
    )
    return dataclasses.replace(base, **changes)


def test_the_same_seed_gives_the_same_verdicts_and_another_seed_does_not() -> None:
    spec = small_spec()
    first = list(generate(spec, 42).verdicts)
    dataset = generate(spec, 42)
    assert list(dataset.verdicts) == first
    assert list(dataset.verdicts) == first, "iterating twice gives the same verdicts"
    assert list(generate(spec, 43).verdicts) != first


def test_verdicts_come_hourly_from_every_host_for_every_target_in_time_order() -> None:
    spec = small_spec()
    verdicts = list(generate(spec, 1).verdicts)
    assert len(verdicts) == len(generate(spec, 1).verdicts) == 6 * 24 * 4 * 9
    hours = [hour_of(v.measured_at) for v in verdicts]
    assert hours == sorted(hours)
    per_run = Counter((v.probe_id, hour_of(v.measured_at)) for v in verdicts)
    assert set(per_run.values()) == {9}
    assert len({v.probe_id for v in verdicts}) == 4


def test_blocking_follows_the_plan_and_noise_flips_about_its_rate() -> None:
    spec = small_spec(noise_rate=0.05, not_evidence_rate=0.0)
    verdicts = list(generate(spec, 2).verdicts)
    in_plan = [v.asn == 44244 and day(1) <= v.measured_at < day(3) for v in verdicts]
    planned = [v for v, inside in zip(verdicts, in_plan, strict=True) if inside]
    rest = [v for v, inside in zip(verdicts, in_plan, strict=True) if not inside]
    blocked_share = sum(v.status is Status.BLOCKED for v in planned) / len(planned)
    flipped_share = sum(v.status is Status.BLOCKED for v in rest) / len(rest)
    assert blocked_share == pytest.approx(0.95, abs=0.03)
    assert flipped_share == pytest.approx(0.05, abs=0.02)
    assert {v.technique for v in planned if v.status is Status.BLOCKED} >= {"dns.bogon"}
    assert all(v.technique is None for v in verdicts if v.status is not Status.BLOCKED)


def test_an_outage_leaves_a_gap_for_its_hosts_only() -> None:
    spec = small_spec(outages=(Outage(3320, day(2), day(3), hosts=(1,)),))
    verdicts = list(generate(spec, 3).verdicts)
    in_gap = [v for v in verdicts if v.asn == 3320 and day(2) <= v.measured_at < day(3)]
    assert {v.probe_id for v in in_gap} == {"probe-as3320-00"}
    assert len(verdicts) == len(generate(spec, 3).verdicts) == (6 * 24 * 4 - 24) * 9


def test_truth_names_each_kind_of_event() -> None:
    spec = small_spec(
        days=14,
        censorship=(
            Censorship((44244,), "telegram", "tcp.timeout", day(1), day(4)),
            Censorship(
                (44244,), "telegram", "tcp.timeout", day(5), day(9), targets=TELEGRAM[1][:2]
            ),
            Censorship((3320,), "telegram", "tls.sni_reset", day(2), day(6), daily_hours=(18, 23)),
            Censorship(
                (3320,), "telegram", "dns.bogon", day(7), None, switch=(day(10), "tls.sni_reset")
            ),
        ),
    )
    truth = generate(spec, 4).truth
    kinds = [t.kind for t in truth]
    assert sorted(kinds) == sorted(
        [
            EventKind.BLOCKING,
            EventKind.PARTIAL,
            EventKind.INTERMITTENT,
            EventKind.BLOCKING,
            EventKind.TECHNIQUE_CHANGE,
        ]
    )
    intermittent = next(t for t in truth if t.kind is EventKind.INTERMITTENT)
    # 18:00 on day 2 to 23:00 on day 5: 4 evenings of 5 hours over 77 hours.
    assert (intermittent.onset, intermittent.end) == (
        day(2) + timedelta(hours=18),
        day(5) + timedelta(hours=23),
    )
    assert intermittent.rate == pytest.approx(20 / 77)
    partial = next(t for t in truth if t.kind is EventKind.PARTIAL)
    assert partial.targets == TELEGRAM[1][:2]
    change = next(t for t in truth if t.kind is EventKind.TECHNIQUE_CHANGE)
    assert (change.onset, change.technique) == (day(10), "dns.bogon -> tls.sni_reset")
    ongoing = next(t for t in truth if t.technique == "dns.bogon")
    assert ongoing.end is None
    assert ongoing.hosts == 2


def test_a_spec_with_times_off_the_hour_is_refused() -> None:
    with pytest.raises(ValueError, match="on the hour"):
        generate(
            small_spec(
                censorship=(
                    Censorship((44244,), "telegram", "dns.bogon", day(1) + timedelta(minutes=30)),
                )
            ),
            1,
        )
    with pytest.raises(ValueError, match="unknown networks"):
        generate(small_spec(censorship=(Censorship((9999,), "telegram", "dns.bogon", day(1)),)), 1)


def test_a_month_from_fifty_hosts_is_a_million_verdicts_generated_lazily() -> None:
    dataset = generate(month_spec(), 7)
    assert sum(n.hosts for n in month_spec().networks) == 50
    assert len(dataset.verdicts) >= 1_000_000
    started = time.perf_counter()
    first = list(itertools.islice(dataset.verdicts, 1000))
    assert time.perf_counter() - started < 1.0, "the first verdicts come without building all"
    assert len(first) == 1000
    assert {t.kind for t in dataset.truth} == set(EventKind)
