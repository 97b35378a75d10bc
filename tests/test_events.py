"""The event detector against datasets with known ground truth (tests.synthetic)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from analysis.events import detect_events
from analysis.model import Event, EventKind
from probe.config import DetectorParams
from probe.records import Confidence, Status, Verdict
from tests.synthetic import (
    DEFAULT_PLATFORMS,
    TELEGRAM_DCS,
    Censorship,
    Network,
    Outage,
    SyntheticSpec,
    generate,
    matches,
    score,
)

START = datetime(2024, 5, 1, tzinfo=UTC)
RUN = timedelta(hours=1)  # the run interval of every dataset here
TELEGRAM = DEFAULT_PLATFORMS[0]
WHATSAPP = DEFAULT_PLATFORMS[1]
DCS = TELEGRAM_DCS


def day(number: float) -> datetime:
    return START + timedelta(hours=round(number * 24))


def spec(
    *censorship: Censorship,
    networks: tuple[Network, ...] = (Network(44244, hosts=3), Network(197207, hosts=3)),
    days: int = 14,
    noise_rate: float = 0.02,
    outages: tuple[Outage, ...] = (),
    platforms: tuple[tuple[str, tuple[str, ...]], ...] = (TELEGRAM,),
) -> SyntheticSpec:
    return SyntheticSpec(
        start=START,
        days=days,
        networks=networks,
        censorship=censorship,
        outages=outages,
        platforms=platforms,
        noise_rate=noise_rate,
        not_evidence_rate=0.02,
    )


def only(events: list[Event], kind: EventKind) -> Event:
    found = [e for e in events if e.kind is kind]
    assert len(found) == 1, found
    return found[0]


def test_known_events_are_found_with_onset_and_end_within_one_run() -> None:
    dataset = generate(
        spec(
            Censorship((44244,), "telegram", "tcp.timeout", day(2.5), day(9.25)),
            Censorship((197207,), "whatsapp", "dns.bogon", day(4), day(11.75)),
            platforms=(TELEGRAM, WHATSAPP),
        ),
        seed=1,
    )
    events = detect_events(dataset.verdicts)
    result = score(dataset.truth, events, tolerance=RUN)
    assert result.missed == ()
    assert result.spurious == ()
    assert len(result.matched) == 2


@pytest.mark.parametrize("hosts", [1, 3])
def test_clean_data_with_two_percent_noise_has_no_event(hosts: int) -> None:
    networks = tuple(Network(asn, hosts=hosts) for asn in (3320, 7922, 3215, 2856))
    dataset = generate(spec(networks=networks, days=21, platforms=(TELEGRAM, WHATSAPP)), seed=3)
    assert detect_events(dataset.verdicts) == []


def _one_host_series(statuses: str) -> Iterator[Verdict]:
    """One probe, one target, one run an hour: 'o' ok, 'B' blocked, '.' no run."""
    for hour, mark in enumerate(statuses):
        if mark == ".":
            continue
        blocked = mark == "B"
        yield Verdict(
            run_id=f"run-{hour}",
            probe_id="probe-1",
            measured_at=START + hour * RUN,
            asn=58224,
            country="IR",
            platform="signal",
            target="chat.signal.org",
            status=Status.BLOCKED if blocked else Status.OK,
            technique="tls.sni_reset" if blocked else None,
            confidence=Confidence.ANOMALY if blocked else None,
            rule_id="test",
            rules_version="test-1",
            evidence=(f"m-{hour}",),
        )


def test_a_single_noisy_run_does_not_create_an_event() -> None:
    assert detect_events(_one_host_series("o" * 40 + "B" + "o" * 40)) == []


def test_blocking_shorter_than_the_cusum_threshold_is_not_an_event_but_six_hours_is() -> None:
    # Each blocked run adds 1 - 0.35 = 0.65 to the accumulator; h = 3.5 needs six.
    assert detect_events(_one_host_series("o" * 30 + "B" * 5 + "o" * 30)) == []
    (event,) = detect_events(_one_host_series("o" * 30 + "B" * 6 + "o" * 30))
    assert event.kind is EventKind.BLOCKING
    assert (event.onset, event.end) == (START + 30 * RUN, START + 36 * RUN)
    assert event.technique == "tls.sni_reset"


TWITTER_SEVEN = (
    "twitter",
    (
        "twitter.com",
        "x.com",
        "api.twitter.com",
        "abs.twimg.com",
        "pbs.twimg.com",
        "video.twimg.com",
        "t.co",
    ),
)


def _ends_with_ok_runs(technique: str, ok_runs: int) -> tuple[list[Event], SyntheticSpec]:
    """One probe, seven targets, blocked by `technique` from hour 24 until `ok_runs` hourly ok
    runs before the data ends."""
    days = 3
    end = START + timedelta(days=days) - ok_runs * RUN
    dataset_spec = SyntheticSpec(
        start=START,
        days=days,
        networks=(Network(58224, hosts=1),),
        censorship=(Censorship((58224,), "twitter", technique, START + 24 * RUN, end),),
        platforms=(TWITTER_SEVEN,),
    )
    return detect_events(generate(dataset_spec, seed=29).verdicts), dataset_spec


@pytest.mark.parametrize(
    "technique", ["tls.sni_reset", "dns.bogon", "tcp.timeout", "http.blockpage"]
)
def test_blocking_has_ended_after_six_hourly_ok_runs_whatever_the_technique(technique: str) -> None:
    events, dataset_spec = _ends_with_ok_runs(technique, ok_runs=6)
    (event,) = events
    assert event.kind is EventKind.BLOCKING
    assert event.technique == technique
    assert event.end == dataset_spec.end - 6 * RUN, "ended at the first ok run, not ongoing"
    assert "ongoing" not in event.detail


def test_an_end_takes_as_many_ok_runs_as_an_onset_takes_blocked_ones() -> None:
    # Five blocked runs are no onset (test above); five ok runs are no end either.
    (event,) = _ends_with_ok_runs("tls.sni_reset", ok_runs=5)[0]
    assert event.end is None
    assert event.detail.endswith("; ongoing")


def test_evening_blocking_is_one_intermittent_event_with_its_rate() -> None:
    dataset = generate(
        spec(
            Censorship(
                (44244,), "telegram", "tls.sni_reset", day(3), day(11), daily_hours=(18, 23)
            ),
            days=16,
        ),
        seed=5,
    )
    events = detect_events(dataset.verdicts)
    (truth,) = dataset.truth
    event = only(events, EventKind.INTERMITTENT)
    assert len(events) == 1, "one intermittent event, not one event per evening"
    assert matches(truth, event, tolerance=RUN)
    assert truth.rate is not None and event.rate is not None
    assert event.rate == pytest.approx(truth.rate, abs=0.03)
    assert event.rate == pytest.approx(5 / 24, abs=0.04)


def test_evening_blocking_that_goes_on_is_an_ongoing_intermittent_event() -> None:
    dataset = generate(
        spec(Censorship((44244,), "telegram", "tcp.timeout", day(3), None, daily_hours=(17, 23))),
        seed=6,
    )
    (event,) = detect_events(dataset.verdicts)
    assert event.kind is EventKind.INTERMITTENT
    assert event.end is None
    assert matches(dataset.truth[0], event, tolerance=RUN)


def test_intermittent_then_sustained_blocking_are_two_events() -> None:
    dataset = generate(
        spec(
            Censorship((44244,), "telegram", "tcp.timeout", day(2), day(8), daily_hours=(18, 23)),
            Censorship((44244,), "telegram", "tcp.timeout", day(9), day(13)),
            days=16,
        ),
        seed=7,
    )
    events = detect_events(dataset.verdicts)
    assert [e.kind for e in events] == [EventKind.INTERMITTENT, EventKind.BLOCKING]
    assert score(dataset.truth, events, tolerance=RUN).missed == ()


def test_partial_blocking_lists_the_blocked_targets() -> None:
    blocked_dcs = (DCS[0], DCS[3])
    dataset = generate(
        spec(
            Censorship((197207,), "telegram", "tcp.timeout", day(3.5), day(10), targets=blocked_dcs)
        ),
        seed=11,
    )
    event = only(detect_events(dataset.verdicts), EventKind.PARTIAL)
    assert set(event.targets) == set(blocked_dcs)
    assert event.networks == (197207,)
    assert matches(dataset.truth[0], event, tolerance=RUN)
    assert "2 of 9 targets" in event.detail


def test_technique_change_is_found_at_the_switch() -> None:
    switch = day(7.5)
    dataset = generate(
        spec(
            Censorship(
                (44244,),
                "telegram",
                "dns.bogon",
                day(2),
                day(12),
                switch=(switch, "tls.sni_reset"),
            )
        ),
        seed=13,
    )
    events = detect_events(dataset.verdicts)
    change = only(events, EventKind.TECHNIQUE_CHANGE)
    assert change.technique == "dns.bogon -> tls.sni_reset"
    assert abs(change.onset - switch) <= RUN
    blocking = only(events, EventKind.BLOCKING)
    assert blocking.technique == "dns.bogon", "the blocking event keeps the technique it began with"
    assert score(dataset.truth, events, tolerance=RUN).missed == ()


def test_a_three_day_gap_neither_ends_nor_invents_an_event() -> None:
    dataset = generate(
        spec(
            Censorship((44244,), "telegram", "dns.bogon", day(2), day(12)),
            outages=(
                Outage(44244, day(5), day(8)),  # every host of the blocked network offline
                Outage(197207, day(5), day(8)),  # and of the clean one
            ),
            days=16,
        ),
        seed=17,
    )
    events = detect_events(dataset.verdicts)
    (event,) = events
    assert event.kind is EventKind.BLOCKING
    assert matches(dataset.truth[0], event, tolerance=RUN)


def test_hosts_that_agree_are_counted_and_networks_that_agree_are_one_event() -> None:
    dataset = generate(
        spec(
            Censorship((44244, 197207), "telegram", "tcp.timeout", day(3), None),
            networks=(Network(44244, hosts=4), Network(197207, hosts=2), Network(58224, hosts=3)),
        ),
        seed=19,
    )
    (event,) = detect_events(dataset.verdicts)
    assert event.kind is EventKind.BLOCKING
    assert event.networks == (44244, 197207)
    assert event.asn is None, "several networks: asn None, networks lists them"
    assert event.hosts == 6
    assert event.end is None, "still blocked when the data ends: ongoing"
    assert set(event.targets) == set(TELEGRAM[1])
    assert matches(dataset.truth[0], event, tolerance=RUN)


def test_blocking_seen_from_the_first_run_says_its_onset_is_the_start_of_the_data() -> None:
    dataset = generate(spec(Censorship((44244,), "telegram", "tcp.timeout", START, day(4))), 23)
    (event,) = detect_events(dataset.verdicts)
    assert event.onset == START
    assert "first observation" in event.detail


def test_detector_params_come_from_the_config_table() -> None:
    params = DetectorParams.from_mapping({"edd": 20, "mu1": 0.8, "merge_window_hours": 2})
    assert params.threshold == pytest.approx(20 * 0.8 / 2)
    assert params.merge_window_hours == 2
    assert DetectorParams().threshold == pytest.approx(3.5)
    assert DetectorParams().reference == pytest.approx(0.35)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"edd": 10, "window": 3}, "unknown setting.*window"),
        ({"edd": "ten"}, "edd must be a number"),
        ({"merge_window_hours": 2.5}, "merge_window_hours must be a whole number"),
        ({"mu0": 0.8, "mu1": 0.7}, "mu0 < mu1"),
        ({"intermittent_min_rate": 0.5, "intermittent_max_rate": 0.4}, "intermittent_min_rate"),
        ({"edd": True}, "edd must be a number"),
    ],
)
def test_bad_detector_settings_are_refused_with_a_clear_message(
    table: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        DetectorParams.from_mapping(table)


def test_a_more_patient_detector_ignores_a_short_block() -> None:
    series = "o" * 30 + "B" * 8 + "o" * 30
    assert len(detect_events(_one_host_series(series))) == 1
    assert detect_events(_one_host_series(series), DetectorParams(edd=20)) == []


SINGLE_PROBE_NETWORKS = tuple(Network(asn, hosts=1) for asn in (100, 101, 102))
SINGLE_PROBE_BLOCKING = (Censorship((100,), "telegram", "dns.bogon", day(3.3), day(15.7)),)
SINGLE_PROBE_MIXED = (
    Censorship((100,), "telegram", "tcp.timeout", day(3), day(15), targets=DCS[:2]),
    Censorship((101,), "telegram", "dns.bogon", day(2), day(19)),
    Censorship((102,), "telegram", "http.blockpage", day(2.5), day(18)),
)


# Seeds whose noise falls right at an onset or end: dated by Page's estimate alone (the
# excursion's start) these come out hours off, or split into several events.
@pytest.mark.parametrize(
    ("censorship", "seed"),
    [(SINGLE_PROBE_BLOCKING, 18), (SINGLE_PROBE_MIXED, 7), (SINGLE_PROBE_MIXED, 22)],
)
def test_single_probe_networks_with_noise_still_date_events_within_one_run(
    censorship: tuple[Censorship, ...], seed: int
) -> None:
    dataset = generate(spec(*censorship, networks=SINGLE_PROBE_NETWORKS, days=21), seed=seed)
    result = score(dataset.truth, detect_events(dataset.verdicts), tolerance=RUN)
    assert (result.missed, result.spurious) == ((), ())


# --- probes, networks and runs ------------------------------------------------------------------


def _two_probes(
    *censorship: Censorship, asn: int | None, days: int = 10, seed: int = 41
) -> list[Verdict]:
    """Two single-host networks' verdicts (AS44244 and AS197207, noise as usual), then both put
    on network `asn` (None: unknown): two probes sharing one network, blocked as `censorship`
    says per original network."""
    dataset = generate(
        spec(
            *censorship,
            networks=(Network(44244, hosts=1), Network(197207, hosts=1)),
            days=days,
        ),
        seed=seed,
    )
    return [replace(verdict, asn=asn) for verdict in dataset.verdicts]


def test_a_clean_second_probe_on_the_same_network_does_not_hide_the_first_probes_blocking() -> None:
    # Pooled, the clean probe halves the blocked share to 0.5, 0.15 a run above k = 0.35: the
    # CUSUM needs 24 such runs to reach h = 3.5 instead of 6 fully blocked ones.
    verdicts = _two_probes(
        Censorship((44244,), "telegram", "tls.sni_reset", day(2), day(6)), asn=44244
    )
    (event,) = detect_events(verdicts)
    assert event.kind is EventKind.BLOCKING
    assert event.networks == (44244,)
    assert event.hosts == 1, "only the blocked probe agrees"
    assert abs(event.onset - day(2)) <= RUN
    assert event.end is not None and abs(event.end - day(6)) <= RUN
    assert set(event.targets) == set(TELEGRAM[1])


def test_probes_of_unknown_networks_are_each_their_own_series() -> None:
    verdicts = _two_probes(
        Censorship((44244,), "telegram", "tcp.timeout", day(2), day(5)),
        Censorship((197207,), "telegram", "dns.bogon", day(6), None),
        asn=None,
    )
    events = detect_events(verdicts)
    assert [(e.technique, e.hosts, e.networks) for e in events] == [
        ("tcp.timeout", 1, (None,)),
        ("dns.bogon", 1, (None,)),
    ], "two unknown networks: two events, not one pooled 'unknown network'"
    first, second = events
    assert abs(first.onset - day(2)) <= RUN
    assert first.end is not None and abs(first.end - day(5)) <= RUN
    assert abs(second.onset - day(6)) <= RUN and second.end is None
    assert "unknown network (probe probe-as44244-00)" in first.detail
    assert "unknown network (probe probe-as197207-00)" in second.detail


def test_a_clean_probe_of_an_unknown_network_does_not_dilute_another_unknown_probe() -> None:
    verdicts = _two_probes(
        Censorship((197207,), "telegram", "tls.sni_reset", day(3), day(7)), asn=None
    )
    (event,) = detect_events(verdicts)
    assert event.hosts == 1 and event.networks == (None,)
    assert "probe-as197207-00" in event.detail
    assert abs(event.onset - day(3)) <= RUN
    assert event.end is not None and abs(event.end - day(7)) <= RUN


def test_runs_counts_runs_not_target_runs() -> None:
    dataset_spec = SyntheticSpec(
        start=START,
        days=5,
        networks=(Network(44244, hosts=2),),
        censorship=(Censorship((44244,), "telegram", "tcp.timeout", day(1), day(3)),),
        platforms=(TELEGRAM,),
    )
    (event,) = detect_events(generate(dataset_spec, seed=3).verdicts)
    assert (event.onset, event.end) == (day(1), day(3))
    assert len(event.targets) == len(TELEGRAM[1]) == 9
    assert event.runs == 2 * 48, "two probes' hourly runs over two days, each run once"
    assert event.detail.endswith("2 host(s) agree over 96 runs")
