"""Throttling on typed records: a platform's transfer (a large asset read within the transfer
bounds) against the run's control transfers of the same size, by goodput and by time to first
byte; pages too short for a rate never count."""

from __future__ import annotations

from analysis.verdicts import facts_for_target, verdicts_for_run
from probe.model import Measurement
from probe.records import Confidence, Status
from tests.builders import (
    control_transfer,
    h_http,
    h_target,
    helper,
    https_site,
    make_run,
    only,
    outcome,
)

ASSET = "https://pbs.twimg.com/profile_banners/783214/1646075315/1500x500"
HOST = "pbs.twimg.com"
ADDRESS = "104.244.42.8"
THROTTLED = (Status.BLOCKED, "throttling", Confidence.ANOMALY)


def transfer(
    *, kbps: float | None, body_length: int = 20_000, ttfb_ms: float = 45.0
) -> list[Measurement]:
    """The platform's transfer, sampled: its window ended while bytes still arrived."""
    return https_site(
        "twitter",
        ASSET,
        HOST,
        ADDRESS,
        body_length=body_length,
        throughput=kbps,
        transfer=True,
        truncated=True,
        ttfb_ms=ttfb_ms,
    )


def test_a_transfer_trickling_through_its_window_is_throttling() -> None:
    # Russia's Twitter throttling ran at 130-150 kbit/s (Xue et al., IMC 2021): a 3 s window
    # gets some 50 KB, short of the 64 KiB a whole download needs, and still the measurement.
    measurements = [*transfer(kbps=140.0), *control_transfer(kbps=80_000.0)]
    verdict = only(verdicts_for_run(make_run(), measurements), ASSET)
    assert outcome(verdict) == THROTTLED
    assert verdict.rule_id == "throttling"
    assert "140.0 kbit/s" in verdict.detail and "80000.0" in verdict.detail


def test_a_transfer_that_got_nothing_in_its_window_is_throttling() -> None:
    measurements = [*transfer(kbps=0.0, body_length=0), *control_transfer(kbps=80_000.0)]
    assert outcome(only(verdicts_for_run(make_run(), measurements), ASSET)) == THROTTLED


def test_a_small_page_read_slowly_is_no_rate_and_stays_ok() -> None:
    # A root page of a few KB arrives with its headers: its "rate" is latency, not the path.
    page = "https://pbs.twimg.com/"
    measurements = [
        *https_site("twitter", page, HOST, ADDRESS, body_length=4_000, throughput=30.0),
        *control_transfer(kbps=80_000.0),
    ]
    facts = facts_for_target(make_run(), measurements, "twitter", page)
    assert facts.throughput_kbps is None and not facts.throttled
    assert only(verdicts_for_run(make_run(), measurements), page).status is Status.OK


def test_a_slow_transfer_on_a_slow_line_is_not_throttling() -> None:
    measurements = [*transfer(kbps=140.0), *control_transfer(kbps=600.0)]
    assert only(verdicts_for_run(make_run(), measurements), ASSET).status is Status.OK


def test_a_transfer_the_helper_reads_slowly_too_is_not_throttling() -> None:
    measurements = [*transfer(kbps=140.0), *control_transfer(kbps=80_000.0)]
    controls = helper(h_target("twitter", ASSET, h_http(ASSET, throughput=400.0)))
    verdicts = verdicts_for_run(make_run(), measurements, controls=controls)
    assert only(verdicts, ASSET).status is Status.OK


def test_a_first_byte_held_back_for_seconds_is_throttling() -> None:
    measurements = [
        *transfer(kbps=5_000.0, body_length=300_000, ttfb_ms=4_500.0),
        *control_transfer(kbps=80_000.0, ttfb_ms=60.0),
    ]
    run = make_run()
    facts = facts_for_target(run, measurements, "twitter", ASSET)
    assert (facts.ttfb_ms, facts.control_ttfb_ms) == (4_500.0, 60.0)
    verdict = only(verdicts_for_run(run, measurements), ASSET)
    assert outcome(verdict) == THROTTLED
    assert verdict.rule_id == "throttling.first_byte"


def test_a_first_byte_slow_at_the_helper_too_is_the_server() -> None:
    measurements = [
        *transfer(kbps=5_000.0, body_length=300_000, ttfb_ms=4_500.0),
        *control_transfer(kbps=80_000.0, ttfb_ms=60.0),
    ]
    controls = helper(h_target("twitter", ASSET, h_http(ASSET, ttfb_ms=3_900.0)))
    verdicts = verdicts_for_run(make_run(), measurements, controls=controls)
    assert only(verdicts, ASSET).status is Status.OK


def test_a_cdn_cache_miss_of_a_second_is_not_throttling() -> None:
    # Twenty times the control's, but a second: an origin fetch on a cache miss, not a censor.
    measurements = [
        *transfer(kbps=5_000.0, body_length=300_000, ttfb_ms=1_200.0),
        *control_transfer(kbps=80_000.0, ttfb_ms=60.0),
    ]
    assert only(verdicts_for_run(make_run(), measurements), ASSET).status is Status.OK


def test_the_first_byte_of_a_page_is_not_compared() -> None:
    # A page is generated for each request; only transfers (static files) are compared.
    page = "https://pbs.twimg.com/"
    measurements = [
        *https_site("twitter", page, HOST, ADDRESS, ttfb_ms=4_500.0),
        *control_transfer(kbps=80_000.0, ttfb_ms=60.0),
    ]
    assert only(verdicts_for_run(make_run(), measurements), page).status is Status.OK
