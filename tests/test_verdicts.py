"""The verdict engine on hand-made measurements: the field's false-positive traps, Iran's
signatures, evidence and identity of verdicts, and the test helper's control document.

The measurements come from tests.builders (the runner's typed records); the helper's answers go
through the product path (probe.helper.protocol parses and validates them). No database, no
network.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest

from analysis.controls import ControlHttp
from analysis.http_compare import compare_http
from analysis.rules import RULES_VERSION
from analysis.verdicts import facts_for_target, verdicts_for_run
from probe.helper.protocol import ProtocolError, parse_response
from probe.model import (
    Connectivity,
    Details,
    DifferentialKind,
    Observation,
    Run,
    Target,
    TargetKind,
)
from probe.records import Confidence, Status
from tests.builders import (
    DOH,
    MITM_CA,
    REAL_CA,
    RUN_ID,
    T0,
    control_site,
    dns,
    doh,
    h_dns,
    h_http,
    h_probe,
    h_target,
    h_tcp,
    h_tls,
    helper,
    helper_document,
    http,
    https_site,
    make_run,
    only,
    outcome,
    tcp,
    tls,
)

# -- the false-positive traps -----------------------------------------------------------------

FB = "https://www.facebook.com/"


def test_cdn_answer_with_a_valid_tls_handshake_is_ok() -> None:
    # The ISP's resolver gives a nearby CDN node the control never sees; the node completes a
    # valid handshake for the name, so the answer is legitimate.
    measurements = [
        *https_site("facebook", FB, "www.facebook.com", "185.60.216.35"),
        doh("facebook", FB, "www.facebook.com", ["157.240.1.35"]),
        *control_site(),
    ]
    controls = helper(h_target("facebook", FB, h_dns("www.facebook.com", ["157.240.1.35"])))
    verdict = only(verdicts_for_run(make_run(), measurements, controls=controls), FB)
    assert verdict.status is Status.OK and verdict.rule_id == "ok"
    facts = facts_for_target(make_run(), measurements, "facebook", FB, controls=controls)
    assert facts.dns_consistent is True and facts.validated_addresses == ("185.60.216.35",)


def test_cdn_answer_that_fails_is_dns_inconsistent() -> None:
    # The same different answer, but nothing answers there: now the answer is suspect.
    measurements = [
        dns("facebook", FB, "www.facebook.com", ["45.33.1.1"]),
        doh("facebook", FB, "www.facebook.com", ["157.240.1.35"]),
        tcp("facebook", FB, "45.33.1.1", 443, "generic_timeout_error"),
    ]
    verdict = only(verdicts_for_run(make_run(), measurements), FB)
    assert outcome(verdict) == (Status.BLOCKED, "dns.inconsistent", Confidence.ANOMALY)


def test_site_down_everywhere_is_down_not_blocked() -> None:
    url = "https://gone.example.org/"
    measurements = [
        dns("news", url, "gone.example.org", ["93.184.216.34"]),
        tcp("news", url, "93.184.216.34", 443, "generic_timeout_error"),
        *control_site(),
    ]
    controls = helper(
        h_target(
            "news",
            url,
            h_dns("gone.example.org", ["93.184.216.34"]),
            h_tcp("93.184.216.34", 443, "generic_timeout_error"),
        )
    )
    verdict = only(verdicts_for_run(make_run(), measurements, controls=controls), url)
    assert verdict.status is Status.DOWN and verdict.rule_id == "tcp.down"
    assert verdict.technique is None and verdict.confidence is None


def test_dead_uplink_makes_every_target_inconclusive() -> None:
    # Every failure of a dead network looks like blocking; none of it may be called blocked,
    # not even a failure the helper says should have worked.
    dcs = ["149.154.175.50", "149.154.167.51"]
    measurements = [
        m
        for dc in dcs
        for m in (
            tcp("telegram", dc, dc, 80, "network_unreachable", source="literal"),
            tcp("telegram", dc, dc, 443, "network_unreachable", source="literal"),
        )
    ] + [dns("facebook", FB, "www.facebook.com", [], "dns_temporary_failure")]
    controls = helper(*(h_target("telegram", dc, h_tcp(dc, 80), h_tcp(dc, 443)) for dc in dcs))
    targets = [Target("twitter", "https://x.com/", TargetKind.HTTPS, "x.com", (443,))]
    verdicts = verdicts_for_run(
        make_run(Connectivity.NONE), measurements, controls=controls, targets=targets
    )
    assert len(verdicts) == 4
    assert {v.status for v in verdicts} == {Status.INCONCLUSIVE}
    assert {v.rule_id for v in verdicts} == {"run.no_connectivity"}


def test_broken_ipv6_is_not_blocking() -> None:
    # The probe's LAN has no IPv6: every IPv6 connect in the run fails unreachable.
    url = "https://www.instagram.com/"
    v4, v6 = "157.240.1.174", "2a03:2880:f12f:83:face:b00c::25de"
    v6_only = "https://v6only.example.net/"
    measurements = [
        dns("instagram", url, "www.instagram.com", [v4, v6]),
        tcp("instagram", url, v4, 443),
        tcp("instagram", url, v6, 443, "network_unreachable"),
        tls("instagram", url, v4, 443, "www.instagram.com"),
        http("instagram", url, url, v4),
        dns("news", v6_only, "v6only.example.net", ["2001:4860:1::1"]),
        tcp("news", v6_only, "2001:4860:1::1", 443, "host_unreachable"),
        *control_site(),
    ]
    controls = helper(
        h_target("instagram", url, h_tcp(v6, 443)),
        h_target("news", v6_only, h_tcp("2001:4860:1::1", 443)),
    )
    verdicts = verdicts_for_run(make_run(), measurements, controls=controls)
    assert only(verdicts, url).status is Status.OK
    v6_verdict = only(verdicts, v6_only)
    assert v6_verdict.status is Status.INCONCLUSIVE and v6_verdict.rule_id == "ipv6.broken"
    assert not any(v.status is Status.BLOCKED for v in verdicts)


def test_unreachable_ipv6_counts_when_ipv6_works_elsewhere_in_the_run() -> None:
    # The mask is for a LAN without IPv6, not for one address being unreachable.
    target = "https://v6only.example.net/"
    measurements = [
        dns("news", target, "v6only.example.net", ["2001:4860:1::1"]),
        tcp("news", target, "2001:4860:1::1", 443, "host_unreachable"),
        tcp("control", "https://www.google.com/", "2a00:1450:4001::64", 443),
    ]
    controls = helper(h_target("news", target, h_tcp("2001:4860:1::1", 443)))
    verdict = only(verdicts_for_run(make_run(), measurements, controls=controls), target)
    assert outcome(verdict) == (Status.BLOCKED, "tcp.failure", Confidence.ANOMALY)


def test_captcha_page_is_not_blocking() -> None:
    url = "http://forum.example.com/"
    measurements = [
        dns("forum", url, "forum.example.com", ["104.16.1.1"]),
        tcp("forum", url, "104.16.1.1", 80),
        http(
            "forum",
            url,
            url,
            "104.16.1.1",
            403,
            body="<html><title>Attention Required! | Cloudflare</title>...",
            title="Attention Required! | Cloudflare",
            headers=[("Server", "cloudflare"), ("CF-RAY", "1")],
        ),
    ]
    controls = helper(h_target("forum", url, h_http(url, 200, body_length=40_000)))
    verdict = only(verdicts_for_run(make_run(), measurements, controls=controls), url)
    assert verdict.status is Status.OK and verdict.rule_id == "http.captcha"


def test_ebaystatic_403_is_not_a_blockpage() -> None:
    url = "https://ir.ebaystatic.com/"
    measurements = https_site(
        "ebay",
        url,
        "ir.ebaystatic.com",
        "23.55.1.1",
        status=403,
        body='<title>Access Denied</title><iframe src="http://ir.ebaystatic.com/x">',
        title="Access Denied",
    )
    controls = helper(h_target("ebay", url, h_http(url, 200, body_length=90_000)))
    verdict = only(verdicts_for_run(make_run(), measurements, controls=controls), url)
    assert verdict.status is Status.OK
    assert verdict.technique != "http.blockpage"


def test_a_different_page_over_verified_https_is_the_servers_own() -> None:
    url = "https://news.example.com/"
    measurements = https_site(
        "news", url, "news.example.com", "93.184.216.34", status=451, body="x", title="Nope"
    )
    controls = helper(h_target("news", url, h_http(url, 200, body_length=90_000)))
    assert only(verdicts_for_run(make_run(), measurements, controls=controls), url).status is (
        Status.OK
    )


def test_no_control_means_inconclusive_never_blocked() -> None:
    url = "https://chat.signal.org/"
    measurements = [
        dns("signal", url, "chat.signal.org", ["13.248.212.111"]),
        tcp("signal", url, "13.248.212.111", 443),
        tls("signal", url, "13.248.212.111", 443, "chat.signal.org", "connection_reset"),
        *control_site(),
    ]
    verdict = only(verdicts_for_run(make_run(), measurements), url)
    assert verdict.status is Status.INCONCLUSIVE and verdict.rule_id == "control.missing"


def test_blocked_doh_is_no_control() -> None:
    # The censor blocks the DoH server: its timeout must not read as "the name is dead".
    url = "https://t.me/"
    measurements = [
        dns("telegram", url, "t.me", [], "dns_nxdomain_error"),
        doh("telegram", url, "t.me", [], "generic_timeout_error", rcode=None),
    ]
    verdict = only(verdicts_for_run(make_run(), measurements), url)
    assert verdict.status is Status.INCONCLUSIVE and verdict.rule_id == "control.missing"


def test_doh_nxdomain_means_the_name_is_down() -> None:
    url = "https://expired.example.org/"
    measurements = [
        dns("news", url, "expired.example.org", [], "dns_nxdomain_error"),
        doh("news", url, "expired.example.org", [], "dns_nxdomain_error"),
    ]
    verdict = only(verdicts_for_run(make_run(), measurements), url)
    assert verdict.status is Status.DOWN and verdict.rule_id == "dns.down"


def test_a_repeated_identical_answer_is_not_injection() -> None:
    url = "https://www.facebook.com/"
    real = "157.240.1.35"
    measurements = [
        dns(
            "facebook",
            url,
            "www.facebook.com",
            [real],
            resolver="udp://9.9.9.9:53",
            responses=[[real], [real]],
        ),
        tcp("facebook", url, real, 443),
        tls("facebook", url, real, 443, "www.facebook.com"),
        http("facebook", url, url, real),
    ]
    verdict = only(verdicts_for_run(make_run(), measurements), url)
    assert verdict.status is Status.OK


def test_same_asn_answers_agree_with_the_control() -> None:
    # Different IPs from the same network (Meta's AS32934) are consistent: the failure is TCP.
    ours, theirs = "157.240.9.35", "157.240.1.35"
    measurements = [
        dns("facebook", FB, "www.facebook.com", [ours]),
        tcp("facebook", FB, ours, 443, "generic_timeout_error"),
    ]
    controls = helper(
        h_target("facebook", FB, h_dns("www.facebook.com", [theirs]), h_tcp(theirs, 443))
    )
    asns = {ours: 32934, theirs: 32934}
    verdicts = verdicts_for_run(make_run(), measurements, controls=controls, asn_of=asns.get)
    assert outcome(only(verdicts, FB)) == (Status.BLOCKED, "tcp.timeout", Confidence.ANOMALY)
    without_asn = only(verdicts_for_run(make_run(), measurements, controls=controls), FB)
    assert without_asn.technique == "dns.inconsistent"


def test_slow_download_with_a_slow_control_is_not_throttling() -> None:
    url = "https://video.twimg.com/"
    measurements = [
        *https_site(
            "twitter", url, "video.twimg.com", "151.101.1.1", body_length=500_000, throughput=140.0
        ),
        *control_site(kbps=600.0),
    ]
    assert only(verdicts_for_run(make_run(), measurements), url).status is Status.OK


def test_slow_download_that_the_helper_sees_slow_too_is_not_throttling() -> None:
    url = "https://video.twimg.com/"
    measurements = [
        *https_site(
            "twitter", url, "video.twimg.com", "151.101.1.1", body_length=500_000, throughput=140.0
        ),
        *control_site(kbps=9000.0),
    ]
    controls = helper(h_target("twitter", url, h_http(url, throughput=300.0)))
    verdict = only(verdicts_for_run(make_run(), measurements, controls=controls), url)
    assert verdict.status is Status.OK


def test_a_fast_download_is_not_throttling_whatever_the_ratio() -> None:
    # Found in the censorship lab: an unthrottled 1 MiB download read at 170 Mbit/s on a loaded
    # host while the control sites read at 2.4 Gbit/s; the 14x ratio measured the CPU.
    url = "http://i.ytimg.com/big"
    address = "142.250.0.126"
    measurements = [
        dns("youtube", url, "i.ytimg.com", [address]),
        tcp("youtube", url, address, 80),
        http("youtube", url, url, address, body_length=1 << 20, throughput=170_000.0),
        *control_site(kbps=2_400_000.0),
    ]
    verdict = only(verdicts_for_run(make_run(), measurements), url)
    assert verdict.status is Status.OK


def test_throttling_is_judged_against_the_helpers_download_not_short_control_pages() -> None:
    # Found in the censorship lab: the control sites' home pages are a few KB, which arrive
    # with their headers and "read" at gigabits; only long downloads give a rate. The helper's
    # download of the same resource from the uncensored vantage is then the reference.
    url = "http://redirector.googlevideo.com/big"
    address = "173.194.0.20"
    control_url, control_address = "https://www.google.com/", "142.250.1.1"
    measurements = [
        dns("youtube", url, "redirector.googlevideo.com", [address]),
        tcp("youtube", url, address, 80),
        http(
            "youtube",
            url,
            url,
            address,
            200,
            "generic_timeout_error",
            operation="read",
            body_length=18_000,
            throughput=55.0,
        ),
        dns("control", control_url, "www.google.com", [control_address]),
        tcp("control", control_url, control_address, 443),
        tls("control", control_url, control_address, 443, "www.google.com"),
        http(
            "control",
            control_url,
            control_url,
            control_address,
            body_length=2_000,
            throughput=2_000_000.0,
        ),
    ]
    controls = helper(
        h_target("youtube", url, h_http(url, body_length=1 << 20, throughput=900_000.0))
    )
    run = make_run()
    facts = facts_for_target(run, measurements, "youtube", url, controls=controls)
    assert facts.control_kbps == 900_000.0
    verdict = only(verdicts_for_run(run, measurements, controls=controls), url)
    assert outcome(verdict) == (Status.BLOCKED, "throttling", Confidence.ANOMALY)


def test_vpn_results_are_not_the_local_networks() -> None:
    measurements = [dns("facebook", FB, "www.facebook.com", ["10.10.34.35"])]
    verdict = only(verdicts_for_run(make_run(vpn=True), measurements), FB)
    assert verdict.status is Status.INCONCLUSIVE and verdict.rule_id == "run.vpn"


def test_a_captcha_does_not_hide_dns_blocking() -> None:
    # The resolver lies (NXDOMAIN); through the DoH answer the site shows a Cloudflare check.
    url = "https://forum.example.com/"
    measurements = [
        dns("forum", url, "forum.example.com", [], "dns_nxdomain_error"),
        doh("forum", url, "forum.example.com", ["104.16.1.1"]),
        *https_site(
            "forum",
            url,
            "forum.example.com",
            "104.16.1.1",
            source=DOH,
            status=403,
            title="Just a moment...",
        )[1:],
    ]
    verdict = only(verdicts_for_run(make_run(), measurements), url)
    assert outcome(verdict) == (Status.BLOCKED, "dns.nxdomain", Confidence.ANOMALY)


def test_broken_ipv6_does_not_hide_dns_blocking() -> None:
    url = "https://v6.example.net/"
    measurements = [
        dns("news", url, "v6.example.net", [], "dns_nxdomain_error"),
        doh("news", url, "v6.example.net", ["2001:4860:1::1"]),
        tcp("news", url, "2001:4860:1::1", 443, "network_unreachable", source=DOH),
    ]
    verdict = only(verdicts_for_run(make_run(), measurements), url)
    assert verdict.technique == "dns.nxdomain"


def test_dns_only_target_is_judged_on_its_answer() -> None:
    stun = "stun.fbsbx.com"
    controls = helper(h_target("facebook", stun, h_dns(stun, ["157.240.1.1"])))
    agreeing = [dns("facebook", stun, stun, ["157.240.1.1"])]
    differing = [dns("facebook", stun, stun, ["45.33.1.1"])]
    assert only(verdicts_for_run(make_run(), agreeing, controls=controls), stun).status is (
        Status.OK
    )
    verdict = only(verdicts_for_run(make_run(), differing, controls=controls), stun)
    assert outcome(verdict) == (Status.BLOCKED, "dns.inconsistent", Confidence.ANOMALY)


def test_a_certificate_from_the_controls_own_issuer_is_not_interception() -> None:
    # An expired-looking certificate from the real CA: the probe's clock or trust store, not
    # the path. Neither interception nor any other blocking.
    url = "https://www.example.org/"
    measurements = [
        dns("news", url, "www.example.org", ["93.184.216.34"]),
        tcp("news", url, "93.184.216.34", 443),
        tls("news", url, "93.184.216.34", 443, "www.example.org", "ssl_invalid_certificate"),
    ]
    controls = helper(h_target("news", url, h_tls("93.184.216.34", 443, "www.example.org")))
    verdict = only(verdicts_for_run(make_run(), measurements, controls=controls), url)
    assert verdict.status is Status.INCONCLUSIVE


def test_a_foreign_issuer_is_interception() -> None:
    url = "https://www.example.org/"
    measurements = [
        dns("news", url, "www.example.org", ["93.184.216.34"]),
        tcp("news", url, "93.184.216.34", 443),
        tls(
            "news",
            url,
            "93.184.216.34",
            443,
            "www.example.org",
            "ssl_unknown_authority",
            issuer=MITM_CA,
        ),
    ]
    controls = helper(h_target("news", url, h_tls("93.184.216.34", 443, "www.example.org")))
    verdict = only(verdicts_for_run(make_run(), measurements, controls=controls), url)
    assert outcome(verdict) == (Status.BLOCKED, "tls.interception", Confidence.ANOMALY)
    assert MITM_CA in verdict.detail


# -- Iran's signatures ---------------------------------------------------------------------------


def test_iran_dns_blockpage_address_is_confirmed_blocking() -> None:
    answer = dns("facebook", FB, "www.facebook.com", ["10.10.34.35"])
    measurements = [
        answer,
        tcp("facebook", FB, "10.10.34.35", 443, "generic_timeout_error"),
        *control_site(),
    ]
    verdict = only(verdicts_for_run(make_run(), measurements), FB)
    assert outcome(verdict) == (Status.BLOCKED, "dns.blockpage_ip", Confidence.CONFIRMED)
    assert verdict.evidence == (answer.id,)
    assert "10.10.34.35" in verdict.detail


def test_iran_iframe_blockpage_is_confirmed_blocking() -> None:
    url = "http://www.bbc.com/persian"
    page = http(
        "news",
        url,
        url,
        "151.101.0.81",
        403,
        body='<html><body><iframe src="http://10.10.34.34?type=Invalid Site&policy=MainPolicy"'
        ' style="width: 100%; height: 100%"></iframe></body></html>',
        title=None,
        headers=[("Content-Type", "text/html")],
    )
    measurements = [
        dns("news", url, "www.bbc.com", ["151.101.0.81"]),
        tcp("news", url, "151.101.0.81", 80),
        page,
    ]
    # No helper needed: the fingerprint is its own evidence.
    verdict = only(verdicts_for_run(make_run(), measurements), url)
    assert outcome(verdict) == (Status.BLOCKED, "http.blockpage", Confidence.CONFIRMED)
    assert verdict.evidence == (page.id,)
    assert "ir.http.iframe" in verdict.detail


def test_sni_reset_with_a_harmless_sni_handshake_on_the_same_address_is_confirmed() -> None:
    url = "https://twitter.com/"
    address = "104.244.42.1"
    reset = tls("twitter", url, address, 443, "twitter.com", "connection_reset")
    harmless = tls(
        "twitter",
        url,
        address,
        443,
        "example.com",
        "ssl_invalid_hostname",
        differential_kind=DifferentialKind.SNI,
        target_sni="twitter.com",
    )
    measurements = [
        dns("twitter", url, "twitter.com", [address]),
        tcp("twitter", url, address, 443),
        reset,
        harmless,
    ]
    verdict = only(verdicts_for_run(make_run(), measurements), url)
    assert outcome(verdict) == (Status.BLOCKED, "tls.sni_reset", Confidence.CONFIRMED)
    assert verdict.rule_id == "tls.sni_reset.differential"
    assert set(verdict.evidence) == {reset.id, harmless.id}


def test_harmless_sni_that_is_also_reset_proves_nothing() -> None:
    url = "https://twitter.com/"
    address = "104.244.42.1"
    measurements = [
        dns("twitter", url, "twitter.com", [address]),
        tcp("twitter", url, address, 443),
        tls("twitter", url, address, 443, "twitter.com", "connection_reset"),
        tls(
            "twitter",
            url,
            address,
            443,
            "example.com",
            "connection_reset",
            differential_kind=DifferentialKind.SNI,
            target_sni="twitter.com",
        ),
    ]
    verdict = only(verdicts_for_run(make_run(), measurements), url)
    assert verdict.status is Status.INCONCLUSIVE


def test_handshake_stalled_for_any_sni_on_a_throttled_address_is_not_called_sni_filtering() -> None:
    # Found in the censorship lab (throttle, iran_mix): the video host's address is shaped to
    # 64 kbit/s and a bulk download fills the shaper, so the target's handshake times out and the
    # harmless-SNI half of the A/B test times out as well, while the control completes. The name
    # is not what the path reacts to: no SNI technique may be claimed.
    url = "https://redirector.googlevideo.com/"
    host, address = "redirector.googlevideo.com", "173.194.0.20"
    measurements = [
        dns("youtube", url, host, [address]),
        tcp("youtube", url, address, 443),
        tls("youtube", url, address, 443, host, "generic_timeout_error"),
        tls(
            "youtube",
            url,
            address,
            443,
            "example.com",
            "generic_timeout_error",
            differential_kind=DifferentialKind.SNI,
            target_sni=host,
        ),
        *control_site(),
    ]
    controls = helper(
        h_target(
            "youtube", url, h_dns(host, [address]), h_tcp(address, 443), h_tls(address, 443, host)
        )
    )
    verdict = only(verdicts_for_run(make_run(), measurements, controls=controls), url)
    assert outcome(verdict) == (Status.BLOCKED, "tls.failure", Confidence.ANOMALY)
    assert "generic_timeout_error" in verdict.detail


def test_a_harmless_handshake_recorded_under_another_target_pairs_by_address() -> None:
    # abs.twimg.com completes on the very address where twitter.com's ClientHello is reset.
    address = "104.244.42.1"
    url = "https://twitter.com/"
    measurements = [
        dns("twitter", url, "twitter.com", [address]),
        tcp("twitter", url, address, 443),
        tls("twitter", url, address, 443, "twitter.com", "generic_timeout_error"),
        *https_site("twitter", "https://abs.twimg.com/", "abs.twimg.com", address),
    ]
    verdict = only(verdicts_for_run(make_run(), measurements), url)
    assert outcome(verdict) == (Status.BLOCKED, "tls.sni_timeout", Confidence.CONFIRMED)


# -- identity and evidence ---------------------------------------------------------------------


def test_verdict_carries_the_run_and_the_rules_version() -> None:
    measurements = [dns("facebook", FB, "www.facebook.com", ["10.10.34.36"])]
    (verdict,) = verdicts_for_run(make_run(), measurements)
    assert (verdict.run_id, verdict.probe_id, verdict.asn, verdict.country) == (
        RUN_ID,
        "probe-1",
        58224,
        "IR",
    )
    assert verdict.measured_at == T0 and verdict.measured_at.tzinfo is not None
    assert verdict.rules_version == RULES_VERSION


def test_control_sites_get_no_verdict_and_targets_are_sorted() -> None:
    measurements = [
        *https_site("twitter", "https://x.com/", "x.com", "104.244.42.65"),
        *https_site("facebook", FB, "www.facebook.com", "157.240.1.35"),
        *control_site(),
    ]
    verdicts = verdicts_for_run(make_run(), measurements)
    assert [(v.platform, v.target) for v in verdicts] == [
        ("facebook", FB),
        ("twitter", "https://x.com/"),
    ]


def test_unmeasured_planned_target_is_inconclusive() -> None:
    target = Target("signal", "https://cdsi.signal.org/", TargetKind.HTTPS, "cdsi.signal.org")
    (verdict,) = verdicts_for_run(make_run(), [], targets=[target])
    assert verdict.status is Status.INCONCLUSIVE and verdict.rule_id == "target.not_measured"
    assert verdict.evidence == ()


def test_measurements_of_another_run_are_refused() -> None:
    stray = dns("x", "y", "y", ["192.0.2.1"], run_id="other-run")
    with pytest.raises(ValueError, match="other-run"):
        verdicts_for_run(make_run(), [stray])


def test_naive_run_start_is_refused() -> None:
    run = Run("r", "p", datetime(2025, 1, 1), "v", "d")
    with pytest.raises(ValueError, match="timezone-aware"):
        verdicts_for_run(run, [dns("x", "y", "y", ["192.0.2.1"], run_id="r")])


# -- HTTP comparison -------------------------------------------------------------------------------


def _control(**kwargs: Any) -> ControlHttp:
    base: dict[str, Any] = {
        "url": "http://a/",
        "status": 200,
        "body_length": 1000,
        "title": "Welcome to Example News",
        "headers": (("X-News-Id", "1"),),
        "failure": None,
    }
    return ControlHttp(**{**base, **kwargs})


def test_body_length_proportion_above_point_seven_matches() -> None:
    assert compare_http(200, 710, [], None, _control()).matches
    assert not compare_http(200, 700, [], None, _control()).body_match


def test_title_words_of_five_letters_match() -> None:
    comparison = compare_http(200, 10, [], "Example homepage", _control())
    assert comparison.title_match is True and comparison.matches
    # "to" and "News" are too short to count.
    assert compare_http(200, 10, [], "News to you", _control()).title_match is False


def test_uncommon_header_names_match_and_common_ones_do_not() -> None:
    assert compare_http(200, 10, [("x-news-id", "9")], None, _control()).headers_match is True
    result = compare_http(200, 10, [("Server", "x"), ("Date", "y")], None, _control())
    assert result.headers_match is False and not result.matches


def test_a_different_status_never_matches() -> None:
    assert not compare_http(403, 1000, [("X-News-Id", "1")], "Welcome", _control()).matches
    # A control that failed on its own (5xx) gives no status signal.
    assert compare_http(200, 1000, [], None, _control(status=503)).status_match is None


# -- the test helper's document --------------------------------------------------------------------


def test_helper_response_is_parsed_into_control_evidence() -> None:
    url = "https://www.facebook.com/"
    evidence = helper(
        h_target(
            "facebook",
            url,
            h_dns("www.facebook.com", ["157.240.1.35"]),
            h_tcp("157.240.1.35", 443),
            h_tls("157.240.1.35", 443, "www.facebook.com"),
            h_http(url, 200, body_length=5000, title="Facebook"),
            h_probe("157.240.1.35", 443, "eof_error"),
        )
    )
    assert evidence.addresses_for("WWW.facebook.com.") == {"157.240.1.35"}
    assert [c.failure for c in evidence.tcp_for_host("www.facebook.com", 443)] == [None, None]
    (handshake,) = evidence.tls_for("www.facebook.com")
    assert handshake.verified and handshake.leaf_issuer == REAL_CA
    (page,) = evidence.http_for("https://www.facebook.com")
    assert (page.status, page.body_length, page.title) == (200, 5000, "Facebook")
    assert [p.failure for p in evidence.probes_for("157.240.1.35", 443)] == ["eof_error"]
    assert evidence.covers("facebook", url)


def _doc(measurement: Observation[Details]) -> dict[str, Any]:
    """A helper answer with one measurement, as the JSON document the helper sends."""
    document: dict[str, Any] = json.loads(
        json.dumps(helper_document(h_target("p", "t", measurement)))
    )
    return document


def _entry(document: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = document["targets"][0]["measurements"][0]
    return entry


def _with(measurement: Observation[Details], **changes: Any) -> dict[str, Any]:
    """The answer with keys of its one measurement entry replaced."""
    document = _doc(measurement)
    _entry(document).update(changes)
    return document


def _with_details(measurement: Observation[Details], **changes: Any) -> dict[str, Any]:
    """The answer with keys of its one measurement's details replaced (None: removed)."""
    document = _doc(measurement)
    details = _entry(document)["details"]
    for key, value in changes.items():
        if value is None:
            details.pop(key, None)
        else:
            details[key] = value
    return document


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([1, 2], "expected an object"),
        ({**_doc(h_tcp("1.2.3.4", 443)), "version": 2}, "version"),
        ({**_doc(h_tcp("1.2.3.4", 443)), "targets": {}}, "targets: expected a list"),
        (_with(h_tcp("1.2.3.4", 443), layer="quic"), "layer"),
        (_doc(h_tcp("1.2.3.999", 443)), "is not an IP address"),
        (_doc(h_tcp("1.2.3.4", 70000)), "port"),
        (_with_details(h_tcp("1.2.3.4", 443), port=True), "port"),
        (_with_details(h_tcp("1.2.3.4", 443), address=None), "address: missing"),
        (_with(h_tcp("1.2.3.4", 443), failed_operation="explode"), "failed_operation"),
        (_with(h_tcp("1.2.3.4", 443), details="x"), "details: expected an object"),
        (_doc(h_dns("a.example", [])), "must carry addresses"),
        (_doc(h_dns("a.example", ["<script>"])), "is not an IP address"),
        (_doc(h_http("ftp://a.example/")), "not an http(s) URL"),
        (_doc(h_http("http://a.example/", 42)), "status"),
        (_doc(h_http("http://a.example/", None)), "must carry a status"),
        (_with_details(h_http("http://a.example/"), headers=[["only-a-name"]]), "headers[0]"),
        (_with_details(h_http("http://a.example/"), throughput_kbps="fast"), "throughput_kbps"),
        (_with_details(h_tls("1.2.3.4", 443, "a.example"), verified="yes"), "verified"),
    ],
)
def test_helper_garbage_is_refused_with_a_clear_error(document: Any, message: str) -> None:
    with pytest.raises(ProtocolError) as raised:
        parse_response(document)
    assert message in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_the_helpers_own_ab_halves_are_not_control_evidence() -> None:
    url = "http://a.example/"
    harmless = h_http(url, 200, body_length=5, differential_kind=DifferentialKind.HOST)
    evidence = helper(h_target("p", url, h_http(url, 403, body_length=900), harmless))
    assert [h.status for h in evidence.http_for(url)] == [403]


def test_a_helper_target_takes_its_host_from_the_answer() -> None:
    evidence = helper(h_target("telegram", "dc2", h_tcp("149.154.175.50", 443), host="dc2.example"))
    (connect,) = evidence.tcp_for("149.154.175.50", 443)
    assert connect.host == "dc2.example"


def test_an_https_answer_on_the_same_port_is_no_host_ab_proof_for_plain_http() -> None:
    """A plain-HTTP POST to a port that speaks TLS fails; an HTTPS site on that address:port
    answering is no proof that the plain request's Host was targeted."""
    address, port = "149.154.175.50", 443
    post = f"http://{address}:{port}/"
    measurements = [
        tcp("telegram", address, address, port, source="literal"),
        http("telegram", address, post, address, failure="eof_error", source="literal"),
        http(
            "telegram",
            address,
            post,
            address,
            failure="eof_error",
            host_header="example.com",
            source="literal",
            differential_kind=DifferentialKind.HOST,
        ),
        *https_site("other", f"https://cdn.example:{port}/", "cdn.example", address),
    ]
    verdict = only(verdicts_for_run(make_run(), measurements), address)
    assert verdict.status is not Status.BLOCKED, verdict


def test_an_injector_that_loses_the_race_is_still_injection() -> None:
    """The real answer arrived first and the forged 10.10.34.35 second: still injection."""
    url = "https://twitter.com/"
    real = "104.244.42.1"
    measurements = [
        dns("twitter", url, "twitter.com", ["10.10.34.35"]),
        dns(
            "twitter",
            url,
            "twitter.com",
            [real],
            resolver="udp://100.64.53.53:53",
            responses=[[real], ["10.10.34.35"]],
        ),
        tcp("twitter", url, "10.10.34.35", 443, "connection_refused"),
    ]
    verdict = only(verdicts_for_run(make_run(), measurements), url)
    assert outcome(verdict) == (Status.BLOCKED, "dns.injection", Confidence.CONFIRMED)
