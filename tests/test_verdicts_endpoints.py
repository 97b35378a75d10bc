"""Endpoints judged by what they speak: a TLS endpoint reached over TLS is not protocol-filtered,
a raw endpoint's silence is filtering only where something proves the path dropped it (the
helper's probe answered, or the same address and port answered HTTP or TLS in the run), and
without a helper a failure no control measured is an anomaly only when the endpoint's group
fails together. Hand-made measurements (tests.builders), no network."""

from __future__ import annotations

from analysis.verdicts import verdicts_for_run
from probe.catalog import builtin_targets
from probe.model import Connectivity, Measurement
from probe.records import Confidence, Status, Verdict
from tests.builders import (
    dns,
    doh,
    h_dns,
    h_probe,
    h_target,
    h_tcp,
    h_tls,
    helper,
    http,
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
CHAT_ADDR = "157.240.9.11"


def _tls_endpoint(probe_failure: str | None) -> list[Measurement]:
    return [
        dns("facebook", B_API, B_API, [B_API_ADDR]),
        tcp("facebook", B_API, B_API_ADDR, 443),
        tls("facebook", B_API, B_API_ADDR, 443, B_API),
        protocol_probe("facebook", B_API, B_API_ADDR, 443, probe_failure, speaks="tls"),
    ]


def _raw_chat(host: str, probe_failure: str | None) -> list[Measurement]:
    address = f"157.240.9.{int(host[1:].split('.')[0]) + 10}"
    return [
        dns("whatsapp", host, host, [address]),
        tcp("whatsapp", host, address, 443),
        tcp("whatsapp", host, address, 5222),
        protocol_probe("whatsapp", host, address, 443, probe_failure, speaks="raw"),
    ]


def _raw_endpoint(probe_failure: str | None) -> list[Measurement]:
    return _raw_chat(CHAT, probe_failure)


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


# -- without a helper: what proves a silence, and groups judged together -------------------------

DCS = [t for t in builtin_targets() if t.platform == "telegram" and t.group == "dc"]
CHATS = [t for t in builtin_targets() if t.platform == "whatsapp" and t.group == "chat"]


def _dc_run(dc: str, *, probe: str | None, connect: str | None = None) -> list[Measurement]:
    """A DC as the runner measures it: connects, POSTs on 80 and 443, protocol probes."""
    found = [tcp("telegram", dc, dc, port, connect, source="literal") for port in (80, 443)]
    if connect is None:
        for port in (80, 443):
            url = f"http://{dc}:{port}/" if port != 80 else f"http://{dc}/"
            found.append(http("telegram", dc, url, dc, 404, title=None, source="literal"))
            found.append(
                protocol_probe("telegram", dc, dc, port, probe, source="literal", speaks="raw")
            )
    return found


def _statuses(verdicts: list[Verdict], hosts: list[str]) -> set[tuple[Status, str | None]]:
    return {(v.status, v.technique) for v in verdicts if v.target in hosts}


def test_without_a_helper_dcs_silent_where_they_answer_http_are_protocol_filtered() -> None:
    # The allowlist lets the POST through and drops other first bytes, at every DC: the POST's
    # answer on the same address and port is the other half of the protocol A/B test.
    measurements = [m for dc in DCS for m in _dc_run(dc.host, probe=SILENT)]
    verdicts = verdicts_for_run(make_run(), measurements)
    assert len(verdicts) == 6
    assert {(v.status, v.technique, v.rule_id) for v in verdicts} == {
        (Status.BLOCKED, "protocol_filter", "protocol_filter.group")
    }
    # Its evidence names the probes and the answers that prove them.
    evidence = set(verdicts[0].evidence)
    dc_http = {
        m.id for m in measurements if m.target == verdicts[0].target and m.layer.value == "http"
    }
    assert dc_http <= evidence


def test_without_a_helper_one_silent_dc_while_the_others_answer_stays_inconclusive() -> None:
    lone, *others = DCS
    measurements = [
        *_dc_run(lone.host, probe=SILENT),
        *(m for dc in others for m in _dc_run(dc.host, probe="eof_error")),
    ]
    verdicts = verdicts_for_run(make_run(), measurements)
    assert only(verdicts, lone.host).status is Status.INCONCLUSIVE
    assert only(verdicts, lone.host).rule_id == "protocol.unproven"
    assert _statuses(verdicts, [dc.host for dc in others]) == {(Status.OK, None)}


def test_without_a_helper_chat_silence_nothing_proves_is_inconclusive_never_ok() -> None:
    measurements = [m for t in CHATS for m in _raw_chat(t.host, SILENT)]
    verdicts = verdicts_for_run(make_run(), measurements)
    assert {v.rule_id for v in verdicts} == {"protocol.unproven"}
    assert {v.status for v in verdicts} == {Status.INCONCLUSIVE}


def test_a_silence_the_helpers_own_probe_met_too_is_the_servers_and_stays_ok() -> None:
    controls = helper(
        h_target("whatsapp", CHAT, h_tcp(CHAT_ADDR, 443), h_probe(CHAT_ADDR, 443, SILENT))
    )
    verdicts = verdicts_for_run(make_run(), _raw_endpoint(SILENT), controls=controls)
    assert (only(verdicts, CHAT).status, only(verdicts, CHAT).rule_id) == (Status.OK, "ok")


def test_without_a_helper_every_dc_timing_out_is_blocked_one_alone_is_inconclusive() -> None:
    blackholed = [m for dc in DCS for m in _dc_run(dc.host, probe=None, connect=SILENT)]
    verdicts = verdicts_for_run(make_run(), blackholed)
    assert {(v.status, v.technique, v.rule_id) for v in verdicts} == {
        (Status.BLOCKED, "tcp.timeout", "tcp.timeout.group")
    }
    lone, *others = DCS
    one_down = [
        *_dc_run(lone.host, probe=None, connect="connection_refused"),
        *(m for dc in others for m in _dc_run(dc.host, probe="eof_error")),
    ]
    verdicts = verdicts_for_run(make_run(), one_down)
    assert (only(verdicts, lone.host).status, only(verdicts, lone.host).rule_id) == (
        Status.INCONCLUSIVE,
        "endpoint.lone_failure",
    )
    # A run whose control sites were not measured proves no working network: never blocked.
    verdicts = verdicts_for_run(make_run(Connectivity.UNKNOWN), blackholed)
    assert not any(v.status is Status.BLOCKED for v in verdicts)


def test_without_a_helper_a_site_that_is_down_is_never_blocked() -> None:
    # Signal's endpoints are in no group: each refused connect is a lone failure.
    url, host, address = "https://chat.signal.org/", "chat.signal.org", "13.248.212.10"
    measurements = [
        dns("signal", url, host, [address]),
        doh("signal", url, host, [address]),
        tcp("signal", url, address, 443, "connection_refused"),
    ]
    verdict = only(verdicts_for_run(make_run(), measurements), url)
    assert (verdict.status, verdict.rule_id) == (Status.INCONCLUSIVE, "endpoint.lone_failure")
