"""Endpoints judged by what they speak: a TLS endpoint reached over TLS is not protocol-filtered,
a raw endpoint's silence is filtering only where something proves the path dropped it (the
helper's probe answered, or the same address and port answered HTTP or TLS in the run), and
without a helper a failure no control measured is an anomaly only when the endpoint's group
fails together. Hand-made measurements (tests.builders), no network."""

from __future__ import annotations

from analysis.verdicts import verdicts_for_run
from probe.model import Measurement
from probe.records import Confidence, Status
from tests.builders import (
    dns,
    h_dns,
    h_probe,
    h_target,
    h_tcp,
    h_tls,
    helper,
    make_run,
    only,
    outcome,
    protocol_probe,
    tcp,
    tls,
)

SILENT = "generic_timeout_error"
B_API = "b-api.facebook.com"
B_API_ADDR = "157.240.1.10"
CHAT = "e1.whatsapp.net"
CHAT_ADDR = "157.240.9.10"


def _tls_endpoint(probe_failure: str | None) -> list[Measurement]:
    return [
        dns("facebook", B_API, B_API, [B_API_ADDR]),
        tcp("facebook", B_API, B_API_ADDR, 443),
        tls("facebook", B_API, B_API_ADDR, 443, B_API),
        protocol_probe("facebook", B_API, B_API_ADDR, 443, probe_failure, speaks="tls"),
    ]


def _raw_endpoint(probe_failure: str | None) -> list[Measurement]:
    return [
        dns("whatsapp", CHAT, CHAT, [CHAT_ADDR]),
        tcp("whatsapp", CHAT, CHAT_ADDR, 443),
        tcp("whatsapp", CHAT, CHAT_ADDR, 5222),
        protocol_probe("whatsapp", CHAT, CHAT_ADDR, 443, probe_failure, speaks="raw"),
    ]


def test_a_tls_endpoint_reached_over_tls_is_ok_under_an_allowlist_that_passes_tls() -> None:
    controls = helper(
        h_target(
            "facebook",
            B_API,
            h_dns(B_API, [B_API_ADDR]),
            h_tcp(B_API_ADDR, 443),
            h_tls(B_API_ADDR, 443, B_API),
            h_probe(B_API_ADDR, 443, "eof_error"),
        )
    )
    verdicts = verdicts_for_run(make_run(), _tls_endpoint(SILENT), controls=controls)
    verdict = only(verdicts, B_API)
    assert (verdict.status, verdict.rule_id) == (Status.OK, "ok.protocol_filter_seen")


def test_a_raw_endpoint_whose_first_bytes_meet_silence_is_protocol_filtered() -> None:
    controls = helper(
        h_target(
            "whatsapp",
            CHAT,
            h_dns(CHAT, [CHAT_ADDR]),
            h_tcp(CHAT_ADDR, 443),
            h_tcp(CHAT_ADDR, 5222),
            h_probe(CHAT_ADDR, 443, "eof_error"),
        )
    )
    verdicts = verdicts_for_run(make_run(), _raw_endpoint(SILENT), controls=controls)
    assert outcome(only(verdicts, CHAT)) == (
        Status.BLOCKED,
        "protocol_filter",
        Confidence.ANOMALY,
    )
