"""Platform summaries: Telegram's data centres blocked only when all fail and partial otherwise,
WhatsApp's chat endpoints blocked only when both ports fail, Facebook answers outside AS32934."""

from __future__ import annotations

from dataclasses import replace

import pytest

from analysis.summaries import summarise
from analysis.verdicts import verdicts_for_run
from probe.catalog import builtin_targets, parse_platform
from probe.helper.protocol import ControlTarget
from probe.model import Measurement, Target, TargetKind
from probe.records import GroupSummary, PlatformStatus, PlatformSummary, Status, Verdict
from tests.builders import (
    control_site,
    dns,
    h_dns,
    h_target,
    h_tcp,
    helper,
    http,
    https_site,
    make_run,
    tcp,
)

# The built-in catalog's Telegram data centres (group "dc").
DCS = [t.host for t in builtin_targets() if t.platform == "telegram" and t.group == "dc"]


def dc_measurements(dc: str, *, timed_out: bool) -> list[Measurement]:
    """What the runner records for one DC: connects on 80 and 443, a POST on each open port."""
    failure = "generic_timeout_error" if timed_out else None
    found = [tcp("telegram", dc, dc, port, failure, source="literal") for port in (80, 443)]
    if not timed_out:
        found += [
            http("telegram", dc, f"http://{dc}{suffix}", dc, 501, title=None, source="literal")
            for suffix in ("/", ":443/")
        ]
    return found


def dc_helper() -> list[ControlTarget]:
    return [h_target("telegram", dc, h_tcp(dc, 80), h_tcp(dc, 443)) for dc in DCS]


def telegram_run(timed_out: set[str]) -> tuple[list[Verdict], list[Measurement]]:
    measurements = [m for dc in DCS for m in dc_measurements(dc, timed_out=dc in timed_out)]
    measurements += [
        *https_site("telegram", "https://telegram.org/", "telegram.org", "149.154.167.99"),
        *control_site(),
    ]
    verdicts = verdicts_for_run(make_run(), measurements, controls=helper(*dc_helper()))
    return verdicts, measurements


def by_platform(summaries: list[PlatformSummary], platform: str) -> PlatformSummary:
    (summary,) = [s for s in summaries if s.platform == platform]
    return summary


def group(summary: PlatformSummary, name: str) -> GroupSummary:
    (found,) = [g for g in summary.groups if g.name == name]
    return found


def test_all_telegram_dcs_timing_out_blocks_telegram() -> None:
    verdicts, measurements = telegram_run(set(DCS))
    dc_verdicts = [v for v in verdicts if v.target in DCS]
    assert len(dc_verdicts) == 6
    assert {(v.status, v.technique) for v in dc_verdicts} == {(Status.BLOCKED, "tcp.timeout")}
    telegram = by_platform(summarise(verdicts, measurements), "telegram")
    # The web page loads, but the app's own connections are all null-routed: blocked.
    assert telegram.status is PlatformStatus.BLOCKED
    assert telegram.techniques == ("tcp.timeout",)
    assert (telegram.blocked, telegram.total) == (6, 7)
    dc = group(telegram, "dc")
    assert (dc.status, dc.blocked, dc.total) == (PlatformStatus.BLOCKED, 6, 6)
    assert "dc: 6 of 6 blocked (blocked)" in telegram.detail


def test_two_of_six_dcs_timing_out_is_partial() -> None:
    verdicts, measurements = telegram_run(set(DCS[:2]))
    telegram = by_platform(summarise(verdicts, measurements), "telegram")
    assert telegram.status is PlatformStatus.PARTIAL
    dc = group(telegram, "dc")
    assert (dc.status, dc.blocked, dc.total) == (PlatformStatus.PARTIAL, 2, 6)
    assert telegram.techniques == ("tcp.timeout",)
    assert "dc: 2 of 6 blocked (partial)" in telegram.detail


def test_no_dc_failing_is_ok() -> None:
    verdicts, measurements = telegram_run(set())
    telegram = by_platform(summarise(verdicts, measurements), "telegram")
    assert telegram.status is PlatformStatus.OK and telegram.blocked == 0
    assert telegram.techniques == ()


def chat(endpoint: str, failing_ports: set[int], address: str) -> list[Measurement]:
    return [
        dns("whatsapp", endpoint, endpoint, [address]),
        *(
            tcp(
                "whatsapp",
                endpoint,
                address,
                port,
                "connection_reset" if port in failing_ports else None,
            )
            for port in (443, 5222)
        ),
    ]


def test_whatsapp_endpoint_is_blocked_only_when_both_ports_fail() -> None:
    endpoints = {"e1.whatsapp.net": "157.240.1.53", "e2.whatsapp.net": "157.240.1.54"}
    measurements = [
        *chat("e1.whatsapp.net", {443}, endpoints["e1.whatsapp.net"]),
        *chat("e2.whatsapp.net", {443, 5222}, endpoints["e2.whatsapp.net"]),
        *control_site(),
    ]
    controls = helper(
        *(
            h_target("whatsapp", host, h_dns(host, [a]), h_tcp(a, 443), h_tcp(a, 5222))
            for host, a in endpoints.items()
        )
    )
    verdicts = verdicts_for_run(make_run(), measurements, controls=controls)
    statuses = {v.target: (v.status, v.technique) for v in verdicts}
    assert statuses == {
        "e1.whatsapp.net": (Status.OK, None),
        "e2.whatsapp.net": (Status.BLOCKED, "tcp.reset"),
    }
    whatsapp = by_platform(summarise(verdicts, measurements), "whatsapp")
    assert group(whatsapp, "chat").status is PlatformStatus.PARTIAL
    assert whatsapp.status is PlatformStatus.PARTIAL


def test_every_chat_endpoint_blocked_blocks_whatsapp() -> None:
    measurements = [*chat("e1.whatsapp.net", {443, 5222}, "157.240.1.53"), *control_site()]
    controls = helper(h_target("whatsapp", "e1.whatsapp.net", h_tcp("157.240.1.53", 443)))
    verdicts = verdicts_for_run(make_run(), measurements, controls=controls)
    whatsapp = by_platform(summarise(verdicts, measurements), "whatsapp")
    assert whatsapp.status is PlatformStatus.BLOCKED


FB = "https://www.facebook.com/"
ASNS = {"157.240.1.35": 32934, "185.88.1.1": 197207}


def test_facebook_answer_outside_as32934_is_suspicious() -> None:
    measurements = [
        *https_site("facebook", FB, "www.facebook.com", "185.88.1.1"),
        dns("facebook", "b-api.facebook.com", "b-api.facebook.com", ["157.240.1.35"]),
    ]
    verdicts = verdicts_for_run(make_run(), measurements)
    facebook = by_platform(summarise(verdicts, measurements, asn_of=ASNS.get), "facebook")
    assert facebook.suspicious == ("www.facebook.com -> 185.88.1.1 (AS197207)",)
    # Without a lookup nothing is claimed.
    assert by_platform(summarise(verdicts, measurements), "facebook").suspicious == ()


def test_unknown_asn_is_not_suspicious() -> None:
    measurements = [dns("facebook", FB, "www.facebook.com", ["31.13.1.1"])]
    verdicts = verdicts_for_run(make_run(), measurements)
    assert (
        by_platform(summarise(verdicts, measurements, asn_of=ASNS.get), "facebook").suspicious == ()
    )


def _verdict(target: str, status: Status, technique: str | None = None) -> Verdict:
    (base,) = verdicts_for_run(make_run(), [dns("signal", target, target, ["10.10.34.34"])])
    return replace(base, status=status, technique=technique)


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([Status.INCONCLUSIVE, Status.INCONCLUSIVE], PlatformStatus.INCONCLUSIVE),
        ([Status.DOWN, Status.DOWN], PlatformStatus.DOWN),
        ([Status.OK, Status.DOWN], PlatformStatus.OK),
        ([Status.BLOCKED, Status.INCONCLUSIVE], PlatformStatus.BLOCKED),
        ([Status.BLOCKED, Status.DOWN], PlatformStatus.BLOCKED),
        ([Status.BLOCKED, Status.OK], PlatformStatus.PARTIAL),
        # ok only when the ok targets are a strict majority of those not down
        (
            [Status.OK, Status.INCONCLUSIVE, Status.INCONCLUSIVE, Status.INCONCLUSIVE],
            PlatformStatus.INCONCLUSIVE,
        ),
        ([Status.OK, Status.INCONCLUSIVE], PlatformStatus.INCONCLUSIVE),
        ([Status.OK, Status.OK, Status.INCONCLUSIVE], PlatformStatus.OK),
        ([Status.OK, Status.DOWN, Status.DOWN, Status.INCONCLUSIVE], PlatformStatus.INCONCLUSIVE),
        ([Status.OK, Status.DOWN, Status.DOWN], PlatformStatus.OK),
        ([Status.DOWN, Status.INCONCLUSIVE], PlatformStatus.INCONCLUSIVE),
        ([Status.DOWN, Status.DOWN, Status.INCONCLUSIVE], PlatformStatus.DOWN),
    ],
)
def test_platform_status_from_ungrouped_targets(
    statuses: list[Status], expected: PlatformStatus
) -> None:
    verdicts = [
        _verdict(f"t{i}.signal.org", s, "tcp.reset" if s is Status.BLOCKED else None)
        for i, s in enumerate(statuses)
    ]
    (summary,) = summarise(verdicts, [])
    assert summary.status is expected
    assert summary.total == len(statuses)


def test_a_group_with_unknown_members_is_not_fully_blocked() -> None:
    targets = [
        Target("telegram", name, TargetKind.HTTP, name, (80,), group="dc") for name in ("a", "b")
    ]
    verdicts = [_verdict("a", Status.BLOCKED, "tcp.timeout"), _verdict("b", Status.INCONCLUSIVE)]
    verdicts = [replace(v, platform="telegram") for v in verdicts]
    (summary,) = summarise(verdicts, [], targets=targets)
    assert group(summary, "dc").status is PlatformStatus.PARTIAL
    assert summary.status is PlatformStatus.PARTIAL


def test_a_platform_mostly_inconclusive_is_inconclusive_not_ok() -> None:
    # 2 of 903 targets ok, 901 inconclusive: printed green before; nothing was judged ok.
    verdicts = [_verdict(f"t{i}.example", Status.OK) for i in range(2)]
    verdicts += [_verdict(f"u{i}.example", Status.INCONCLUSIVE) for i in range(901)]
    (summary,) = summarise(verdicts, [])
    assert summary.status is PlatformStatus.INCONCLUSIVE
    assert (summary.blocked, summary.total) == (0, 903)
    assert "901 inconclusive" in summary.detail


def test_a_group_with_one_member_ok_and_the_rest_inconclusive_is_inconclusive() -> None:
    names = ("a", "b", "c")
    targets = [Target("telegram", name, TargetKind.HTTP, name, (80,), group="dc") for name in names]
    verdicts = [_verdict("a", Status.OK)]
    verdicts += [_verdict(name, Status.INCONCLUSIVE) for name in names[1:]]
    verdicts = [replace(v, platform="telegram") for v in verdicts]
    (summary,) = summarise(verdicts, [], targets=targets)
    assert group(summary, "dc").status is PlatformStatus.INCONCLUSIVE
    assert summary.status is PlatformStatus.INCONCLUSIVE


def test_summaries_are_per_run() -> None:
    one = _verdict("a.signal.org", Status.OK)
    with pytest.raises(ValueError, match="one run"):
        summarise([one, replace(one, run_id="run-2")], [])


def test_a_platform_file_of_its_own_brings_its_core_group_and_owner_asns() -> None:
    # A platform the code has never heard of: everything summaries need comes from its file.
    chatapp = parse_platform(
        {
            "platform": "chatapp",
            "owner_asns": [64500],
            "groups": {"relay": {"core": True}},
            "targets": [
                {"url": "https://chatapp.example/"},
                {"kind": "tcp", "host": "r1.chatapp.example", "ports": [443], "group": "relay"},
            ],
        },
        where="chatapp.toml",
    )
    (web, relay) = chatapp.targets
    relay_address, web_address = "192.0.2.10", "198.51.100.7"
    measurements = [
        *https_site("chatapp", web.name, web.host, web_address),
        dns("chatapp", relay.name, relay.host, [relay_address]),
        tcp("chatapp", relay.name, relay_address, 443, "connection_reset"),
        *control_site(),
    ]
    controls = helper(h_target("chatapp", relay.name, h_tcp(relay_address, 443)))
    verdicts = verdicts_for_run(make_run(), measurements, controls=controls)
    asns = {relay_address: 64500, web_address: 64511}
    (summary,) = [
        s
        for s in summarise(verdicts, measurements, platforms=[chatapp], asn_of=asns.get)
        if s.platform == "chatapp"
    ]
    # The web page loads, the relay (core) is reset: blocked, and the page's answer is elsewhere.
    assert summary.status is PlatformStatus.BLOCKED
    assert group(summary, "relay").status is PlatformStatus.BLOCKED
    assert summary.suspicious == (f"{web.host} -> {web_address} (AS64511)",)
    # The same verdicts without the file's semantics: a plain partial, nothing suspicious.
    (plain,) = [
        s
        for s in summarise(verdicts, measurements, targets=chatapp.targets, platforms=[])
        if s.platform == "chatapp"
    ]
    assert plain.status is PlatformStatus.PARTIAL and plain.suspicious == ()


def test_catalog_groups_are_the_default() -> None:
    groups = {(t.platform, t.group) for t in builtin_targets() if t.group}
    assert {("telegram", "dc"), ("whatsapp", "chat")} <= groups
