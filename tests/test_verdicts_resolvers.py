"""The network's resolver judged on its own: the first configured resolver (the runner's `primary`
mark) decides the target's DNS facts; the other resolvers are controls (DoH, or a plain resolver
whose answer TLS validates), and the true address they give is measured for IP-level
reachability, reported beside the DNS verdict. Through the product path: typed measurements ->
verdicts_for_run."""

from __future__ import annotations

from collections.abc import Sequence

from analysis.controls import ControlEvidence
from analysis.verdicts import verdicts_for_run
from probe.model import Measurement
from probe.records import Confidence, Status, Verdict
from tests.builders import (
    DOH,
    control_site,
    dns,
    doh,
    h_dns,
    h_target,
    h_tcp,
    h_tls,
    helper,
    http,
    make_run,
    only,
    outcome,
    tcp,
    tls,
)

URL = "https://www.example-news.com/"
HOST = "www.example-news.com"
TRUE = "93.184.216.34"
FOREIGN = "udp://8.8.8.8:53"
OTHER_SITE = "45.33.1.1"
CONTROL_URL, CONTROL_HOST, CONTROL_ADDR = "https://www.google.com/", "www.google.com", "142.250.1.1"


def _verdict(
    measurements: Sequence[Measurement], controls: ControlEvidence | None = None
) -> Verdict:
    return only(verdicts_for_run(make_run(), measurements, controls=controls), URL)


def _reached_through(address: str, source: str) -> list[Measurement]:
    return [
        tcp("news", URL, address, 443, source=source),
        tls("news", URL, address, 443, HOST, source=source),
    ]


def test_network_resolver_nxdomain_while_a_foreign_resolver_answers_truly_is_blocked_not_ok() -> (
    None
):
    # Issue 12: resolvers ["system", "udp://8.8.8.8"]; the ISP's resolver says NXDOMAIN, 8.8.8.8
    # answers truly, and the runner reached the site through 8.8.8.8's answer: that is what a
    # user with a changed resolver gets, not what the network does.
    v = _verdict(
        [
            dns("news", URL, HOST, [], "dns_nxdomain_error", primary=True),
            dns("news", URL, HOST, [TRUE], resolver=FOREIGN, primary=False),
            *_reached_through(TRUE, FOREIGN),
            http("news", URL, URL, TRUE, source=FOREIGN),
            *control_site(),
        ]
    )
    assert outcome(v) == (Status.BLOCKED, "dns.nxdomain", Confidence.ANOMALY)
    assert "reachable" in v.detail and "not reachable" not in v.detail


def test_network_resolver_lie_with_honest_doh_is_blocked_and_reports_the_true_address() -> None:
    # The network's answer goes nowhere; DoH and 8.8.8.8 answer the true address, which the
    # runner measured beside it and reached.
    v = _verdict(
        [
            dns("news", URL, HOST, ["185.51.200.2"], primary=True),
            dns("news", URL, HOST, [TRUE], resolver=FOREIGN, primary=False),
            doh("news", URL, HOST, [TRUE], primary=False),
            tcp("news", URL, "185.51.200.2", 443, "generic_timeout_error"),
            *_reached_through(TRUE, DOH),
            *control_site(),
        ]
    )
    assert outcome(v) == (Status.BLOCKED, "dns.inconsistent", Confidence.ANOMALY)
    assert "the control's address is reachable" in v.detail


def test_network_resolver_lie_is_blocked_even_when_the_true_address_is_blocked_too() -> None:
    v = _verdict(
        [
            dns("news", URL, HOST, ["185.51.200.2"], primary=True),
            doh("news", URL, HOST, [TRUE], primary=False),
            tcp("news", URL, "185.51.200.2", 443, "generic_timeout_error"),
            tcp("news", URL, TRUE, 443, "generic_timeout_error", source=DOH),
            *control_site(),
        ]
    )
    assert outcome(v) == (Status.BLOCKED, "dns.inconsistent", Confidence.ANOMALY)
    assert "not reachable either" in v.detail


def test_a_lie_pointing_at_another_real_site_is_dns_tampering_not_unexplained() -> None:
    # The lie is another site's address: TLS to it presents a valid certificate for another
    # name (ssl_invalid_hostname) while the control's address validates for this one. With a
    # helper that saw the same certificate issuer, no TLS rule explains it either.
    site = helper(
        h_target("news", URL, h_dns(HOST, [TRUE]), h_tcp(TRUE, 443), h_tls(TRUE, 443, HOST))
    )
    measurements = [
        dns("news", URL, HOST, [OTHER_SITE], primary=True),
        dns("news", URL, HOST, [TRUE], resolver=FOREIGN, primary=False),
        tcp("news", URL, OTHER_SITE, 443),
        tls("news", URL, OTHER_SITE, 443, HOST, "ssl_invalid_hostname"),
        *_reached_through(TRUE, FOREIGN),
        *control_site(),
    ]
    for controls in (None, site):
        v = _verdict(measurements, controls=controls)
        assert outcome(v) == (Status.BLOCKED, "dns.other_site", Confidence.ANOMALY), v.rule_id
        assert "reachable" in v.detail


def test_a_bogon_answer_that_completes_a_valid_handshake_for_the_name_is_ok() -> None:
    # A private address (a corporate network's own server) that serves the name with a valid
    # certificate is legitimate, whatever the control resolver says.
    v = _verdict(
        [
            dns("news", URL, HOST, ["10.1.2.3"], primary=True),
            doh("news", URL, HOST, [TRUE], primary=False),
            *_reached_through("10.1.2.3", "system"),
            http("news", URL, URL, "10.1.2.3"),
            *control_site(),
        ]
    )
    assert (v.status, v.rule_id) == (Status.OK, "ok")


def test_a_foreign_resolvers_answer_that_tls_does_not_validate_is_no_control() -> None:
    # No DoH; 8.8.8.8's answer fails TLS too (it may be forged as well): nothing shows the name
    # resolves elsewhere, so the network resolver's NXDOMAIN is not called blocked.
    v = _verdict(
        [
            dns("news", URL, HOST, [], "dns_nxdomain_error", primary=True),
            dns("news", URL, HOST, [TRUE], resolver=FOREIGN, primary=False),
            tcp("news", URL, TRUE, 443, source=FOREIGN),
            tls("news", URL, TRUE, 443, HOST, "connection_reset", source=FOREIGN),
            *control_site(),
        ]
    )
    assert v.status is Status.INCONCLUSIVE


def _control_site_unresolved() -> list[Measurement]:
    return [
        dns("control", CONTROL_URL, CONTROL_HOST, [], "generic_timeout_error", primary=True),
        doh("control", CONTROL_URL, CONTROL_HOST, [CONTROL_ADDR], primary=False),
        tcp("control", CONTROL_URL, CONTROL_ADDR, 443, source=DOH),
        tls("control", CONTROL_URL, CONTROL_ADDR, 443, CONTROL_HOST, source=DOH),
    ]


def test_a_network_resolver_failing_for_the_control_sites_too_is_inconclusive_not_blocked() -> None:
    # A broken ISP resolver (times out for everything) is not censorship: no target is
    # dns-blocked, and the verdict says why.
    names = [f"https://site{i}.example.org/" for i in range(3)]
    measurements = [*_control_site_unresolved()]
    for i, url in enumerate(names):
        host, address = f"site{i}.example.org", f"93.184.215.{10 + i}"
        measurements += [
            dns("news", url, host, [], "generic_timeout_error", primary=True),
            doh("news", url, host, [address], primary=False),
            tcp("news", url, address, 443, source=DOH),
            tls("news", url, address, 443, host, source=DOH),
        ]
    verdicts = verdicts_for_run(make_run(), measurements)
    assert [v.status for v in verdicts] == [Status.INCONCLUSIVE] * 3
    assert {v.rule_id for v in verdicts} == {"dns.network_resolver_broken"}
    assert all("control sites too" in v.detail for v in verdicts)


def test_a_network_resolver_that_answers_the_control_sites_still_blocks_a_name() -> None:
    v = _verdict(
        [
            dns("news", URL, HOST, [], "generic_timeout_error", primary=True),
            doh("news", URL, HOST, [TRUE], primary=False),
            *_reached_through(TRUE, DOH),
            dns("control", CONTROL_URL, CONTROL_HOST, [CONTROL_ADDR], primary=True),
            doh("control", CONTROL_URL, CONTROL_HOST, [CONTROL_ADDR], primary=False),
        ]
    )
    assert outcome(v) == (Status.BLOCKED, "dns.timeout", Confidence.ANOMALY)
