"""Intermittent interference: every endpoint is connected twice a run, and a target whose connects
took a SYN retransmission (1-4 s) or failed where another attempt to the same endpoint connected
is reported intermittent, with the rate, while the run's control sites connect in milliseconds;
never when the control sites are slow too, never for one stray slow connect, never for an
address that is simply dead. Hand-made measurements (tests.builders), no network."""

from __future__ import annotations

from analysis.verdicts import verdicts_for_run
from probe.model import Measurement
from probe.records import Confidence, Status, Verdict
from tests.builders import control_site, dns, http, make_run, tcp, tls

URL = "https://www.example-news.com/"
HOST = "www.example-news.com"
ADDR = "93.184.216.34"
OTHER = "93.184.216.35"
TIMEOUT = "generic_timeout_error"


def _site(*connects: Measurement, addresses: tuple[str, ...] = (ADDR,)) -> list[Measurement]:
    """The https target resolving to `addresses`, its handshake and page through ADDR, and the
    given connects (each endpoint's first attempt and repeat)."""
    return [
        dns("news", URL, HOST, list(addresses)),
        *connects,
        tls("news", URL, ADDR, 443, HOST),
        http("news", URL, URL, ADDR),
    ]


def _control(first_ms: float = 12.5, repeat_ms: float = 14.0) -> list[Measurement]:
    url, address = "https://www.google.com/", "142.250.1.1"
    return [
        *control_site(),
        tcp("control", url, address, 443, attempt=2, duration_ms=repeat_ms),
        tcp("control", url, address, 443, duration_ms=first_ms),
    ]


def _verdict(measurements: list[Measurement]) -> Verdict:
    (verdict,) = [v for v in verdicts_for_run(make_run(), measurements) if v.target == URL]
    return verdict


def test_connects_after_syn_retransmission_are_intermittent_with_the_rate() -> None:
    verdict = _verdict(
        [
            *_site(
                tcp("news", URL, ADDR, 443, duration_ms=1013.0),
                tcp("news", URL, ADDR, 443, attempt=2, duration_ms=3021.0),
            ),
            *_control(),
        ]
    )
    assert (verdict.status, verdict.technique, verdict.confidence) == (
        Status.BLOCKED,
        "intermittent",
        Confidence.ANOMALY,
    )
    assert verdict.rule_id == "tcp.intermittent"
    assert "2 of 2 connects (100%)" in verdict.detail
    assert "within 14.0 ms" in verdict.detail


def test_a_repeat_that_fails_where_the_first_connected_is_intermittent() -> None:
    verdict = _verdict(
        [
            *_site(
                tcp("news", URL, ADDR, 443),
                tcp("news", URL, ADDR, 443, TIMEOUT, attempt=2),
                tcp("news", URL, OTHER, 443, TIMEOUT),
                tcp("news", URL, OTHER, 443, attempt=2),
                addresses=(ADDR, OTHER),
            ),
            *_control(),
        ]
    )
    assert verdict.technique == "intermittent"
    assert "2 of 4 connects (50%)" in verdict.detail


def test_slow_connects_are_not_intermittent_when_the_control_sites_are_slow_too() -> None:
    verdict = _verdict(
        [
            *_site(
                tcp("news", URL, ADDR, 443, duration_ms=1013.0),
                tcp("news", URL, ADDR, 443, attempt=2, duration_ms=1009.0),
            ),
            *_control(repeat_ms=1004.0),
        ]
    )
    assert (verdict.status, verdict.rule_id) == (Status.OK, "ok")


def test_one_slow_connect_among_many_is_ordinary_loss_not_intermittent() -> None:
    verdict = _verdict(
        [
            *_site(
                tcp("news", URL, ADDR, 443, duration_ms=1013.0),
                tcp("news", URL, ADDR, 443, attempt=2),
            ),
            *_control(),
        ]
    )
    assert (verdict.status, verdict.rule_id) == (Status.OK, "ok")


def test_a_dead_address_beside_a_working_one_is_not_intermittent() -> None:
    # Both attempts to OTHER fail: that address is down (no attempt to it connected), which is
    # not an uneven path.
    verdict = _verdict(
        [
            *_site(
                tcp("news", URL, ADDR, 443),
                tcp("news", URL, ADDR, 443, attempt=2),
                tcp("news", URL, OTHER, 443, TIMEOUT),
                tcp("news", URL, OTHER, 443, TIMEOUT, attempt=2),
                addresses=(ADDR, OTHER),
            ),
            *_control(),
        ]
    )
    assert (verdict.status, verdict.rule_id) == (Status.OK, "ok")


def test_without_control_site_connects_slow_connects_stay_ok() -> None:
    verdict = _verdict(
        _site(
            tcp("news", URL, ADDR, 443, duration_ms=1013.0),
            tcp("news", URL, ADDR, 443, attempt=2, duration_ms=1020.0),
        )
    )
    assert (verdict.status, verdict.rule_id) == (Status.OK, "ok")
