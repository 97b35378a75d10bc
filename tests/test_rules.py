"""The rule table: every rule is reached by a scenario of hand-made measurements (no database, no
network), ids are unique and stable in form, and RULES_VERSION is set."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest

from analysis.controls import ControlEvidence
from analysis.rules import (
    NETWORK_RESOLVER_BROKEN,
    RULES,
    RULES_VERSION,
    Evidence,
    Facts,
    Rule,
    evaluate,
)
from analysis.verdicts import facts_for_target, verdicts_for_run
from probe.model import (
    Connectivity,
    Details,
    DifferentialKind,
    Measurement,
    Observation,
    Redirect,
    Run,
    Speaks,
    Target,
    TargetKind,
)
from probe.records import Confidence, Status
from tests.builders import (
    DOH,
    MITM_CA,
    control_site,
    control_transfer,
    dns,
    doh,
    h_dns,
    h_http,
    h_probe,
    h_target,
    h_tcp,
    h_tls,
    helper,
    http,
    https_site,
    make_run,
    protocol_probe,
    stalled,
    tcp,
    tls,
)

URL = "https://www.example-news.com/"
HOST = "www.example-news.com"
ADDR = "93.184.216.34"
PLAIN = "http://www.example-news.com/"
DC = "149.154.175.50"
DC2 = "149.154.167.51"
CHAT = "e1.whatsapp.net"
CHAT_ADDR = "157.240.9.10"
GOOGLE = "udp://8.8.8.8:53"
RAW = Speaks.RAW


@dataclass(frozen=True)
class Scenario:
    """A run whose target `target` (platform `platform`) should be decided by one rule."""

    measurements: Sequence[Measurement]
    controls: ControlEvidence | None = None
    run: Run = field(default_factory=make_run)
    platform: str = "news"
    target: str = URL
    targets: Sequence[Target] = ()


def _site_helper(*measurements: Observation[Details], target: str = URL) -> ControlEvidence:
    return helper(h_target("news", target, *measurements))


def _reached_tls(target: str = URL) -> list[Observation[Details]]:
    return [h_dns(HOST, [ADDR]), h_tcp(ADDR, 443), h_tls(ADDR, 443, HOST), h_http(target)]


def _dns_fails(failure: str) -> Scenario:
    # The resolver fails; the DoH control answers and the runner measures its address instead.
    return Scenario(
        [
            dns("news", URL, HOST, [], failure, rcode=None),
            doh("news", URL, HOST, [ADDR]),
            tcp("news", URL, ADDR, 443, source=DOH),
            tls("news", URL, ADDR, 443, HOST, source=DOH),
            http("news", URL, URL, ADDR, source=DOH),
        ]
    )


def _control_site_unresolved() -> list[Measurement]:
    """The run's control site, which the network's resolver failed to resolve (reached through
    the DoH control's answer)."""
    url, host, address = "https://www.google.com/", "www.google.com", "142.250.1.1"
    return [
        dns("control", url, host, [], "generic_timeout_error", rcode=None, primary=True),
        doh("control", url, host, [address], primary=False),
        tcp("control", url, address, 443, source=DOH),
        tls("control", url, address, 443, host, source=DOH),
        http("control", url, url, address, source=DOH),
    ]


def _tcp_fails(failure: str, control_failure: str | None = None) -> Scenario:
    return Scenario(
        [dns("news", URL, HOST, [ADDR]), tcp("news", URL, ADDR, 443, failure), *control_site()],
        _site_helper(h_dns(HOST, [ADDR]), h_tcp(ADDR, 443, control_failure)),
    )


def _tls_fails(
    failure: str, control: Observation[Details] | None = None, *, issuer: str = MITM_CA
) -> Scenario:
    return Scenario(
        [
            dns("news", URL, HOST, [ADDR]),
            tcp("news", URL, ADDR, 443),
            tls("news", URL, ADDR, 443, HOST, failure, issuer=issuer),
        ],
        _site_helper(h_dns(HOST, [ADDR]), h_tcp(ADDR, 443), control or h_tls(ADDR, 443, HOST)),
    )


OTHER_URL = "https://www.example-other.org/"
OTHER_HOST = "www.example-other.org"
OTHER_ADDR = "104.16.7.7"


def _untrusted(url: str, host: str, address: str, platform: str = "news") -> list[Measurement]:
    """A site whose handshake is rejected: its certificate comes from an unknown authority."""
    return [
        dns(platform, url, host, [address]),
        tcp(platform, url, address, 443),
        tls(platform, url, address, 443, host, "ssl_unknown_authority", issuer=MITM_CA),
    ]


def _intercepted_without_a_helper(*extra: Measurement) -> Scenario:
    """Two sites at two addresses rejected for certificates from one unknown CA, the run's
    control site validating, no helper."""
    return Scenario(
        [
            *_untrusted(URL, HOST, ADDR),
            *_untrusted(OTHER_URL, OTHER_HOST, OTHER_ADDR),
            *control_site(),
            *extra,
        ]
    )


def _http_fails(failure: str, control: Observation[Details] | None = None) -> Scenario:
    return Scenario(
        [*https_site("news", URL, HOST, ADDR, status=None, failure=failure)],
        _site_helper(*_reached_tls()[:3], control or h_http(URL)),
    )


def _plain_http(*extra: Measurement, **http_kwargs: object) -> list[Measurement]:
    return [
        dns("news", PLAIN, HOST, [ADDR]),
        tcp("news", PLAIN, ADDR, 80),
        http("news", PLAIN, PLAIN, ADDR, **http_kwargs),  # type: ignore[arg-type]
        *extra,
    ]


def _dc(*extra: Measurement, port80: str | None = None, dc: str = DC) -> list[Measurement]:
    """A Telegram data centre: literal address, plain-HTTP POST on 80 and 443."""
    found = [
        tcp("telegram", dc, dc, 80, port80, source="literal"),
        tcp("telegram", dc, dc, 443, source="literal"),
        http("telegram", dc, f"http://{dc}:443/", dc, 404, title=None, source="literal"),
    ]
    if port80 is None:
        found.append(http("telegram", dc, f"http://{dc}/", dc, 404, title=None, source="literal"))
    return [*found, *extra]


def _dc_group() -> list[Target]:
    """Two of Telegram's data centres, one catalog group (judged together)."""
    return [
        Target(
            "telegram", dc, TargetKind.HTTP, dc, (80, 443), method="POST", group="dc", speaks=RAW
        )
        for dc in (DC, DC2)
    ]


def _dcs_connect(failure: str, failure2: str | None) -> Scenario:
    """Both DCs' connects end with `failure` / `failure2` (None: connected); no helper."""
    measurements = [
        tcp("telegram", dc, dc, port, fail, source="literal")
        for dc, fail in ((DC, failure), (DC2, failure2))
        for port in (80, 443)
    ]
    return Scenario(measurements, platform="telegram", target=DC, targets=_dc_group())


def _silent_probe(dc: str) -> Measurement:
    return protocol_probe(
        "telegram", dc, dc, 443, "generic_timeout_error", source="literal", speaks="raw"
    )


SCENARIOS: dict[str, Callable[[], Scenario]] = {
    "run.no_connectivity": lambda: Scenario(
        [dns("news", URL, HOST, ["10.10.34.35"])], run=make_run(Connectivity.NONE)
    ),
    "run.vpn": lambda: Scenario(
        _tcp_fails("connection_reset").measurements, run=make_run(vpn=True)
    ),
    "target.not_measured": lambda: Scenario(
        [], targets=[Target("news", URL, TargetKind.HTTPS, HOST, (443,))]
    ),
    "dns.injection.fingerprint": lambda: Scenario(
        [
            dns(
                "news",
                URL,
                HOST,
                ["10.10.34.34"],
                resolver="udp://9.9.9.9:53",
                responses=[["10.10.34.34"], [ADDR]],
            ),
        ]
    ),
    "dns.blockpage_ip": lambda: Scenario([dns("news", URL, HOST, ["d0::11"])]),
    "http.blockpage": lambda: Scenario(
        _plain_http(
            status=302,
            body="",
            title=None,
            redirects=[Redirect(PLAIN, 302, "http://10.10.34.36/")],
        ),
        target=PLAIN,
    ),
    "tls.sni_reset.differential": lambda: Scenario(
        [
            *_tls_fails("eof_error").measurements,
            tls(
                "news",
                URL,
                ADDR,
                443,
                "example.com",
                "ssl_invalid_hostname",
                differential_kind=DifferentialKind.SNI,
                target_sni=HOST,
            ),
        ]
    ),
    "tls.sni_timeout.differential": lambda: Scenario(
        [
            *_tls_fails("generic_timeout_error").measurements,
            tls("news", URL, ADDR, 443, "example.com", differential_kind=DifferentialKind.SNI),
        ]
    ),
    "probe.stalled": lambda: Scenario(
        [
            dns("news", URL, HOST, [ADDR]),
            tcp("news", URL, ADDR, 443),
            stalled(tls("news", URL, ADDR, 443, HOST, "generic_timeout_error")),
            tls("news", URL, ADDR, 443, "example.com", differential_kind=DifferentialKind.SNI),
        ]
    ),
    "http.reset.differential": lambda: Scenario(
        _plain_http(
            http(
                "news",
                PLAIN,
                PLAIN,
                ADDR,
                200,
                host_header="example.com",
                differential_kind=DifferentialKind.HOST,
            ),
            status=None,
            failure="connection_reset",
        ),
        target=PLAIN,
    ),
    "http.timeout.differential": lambda: Scenario(
        _plain_http(
            http(
                "news",
                PLAIN,
                PLAIN,
                ADDR,
                404,
                host_header="example.com",
                differential_kind=DifferentialKind.HOST,
            ),
            status=None,
            failure="generic_timeout_error",
        ),
        target=PLAIN,
    ),
    "dns.injection": lambda: Scenario(
        [
            dns(
                "news",
                URL,
                HOST,
                ["45.33.1.1"],
                resolver="udp://9.9.9.9:53",
                responses=[["45.33.1.1"], [ADDR]],
            ),
            doh("news", URL, HOST, [ADDR]),
        ]
    ),
    "ipv6.broken": lambda: Scenario(
        [
            dns("news", URL, HOST, ["2606:2800:220:1::1"]),
            tcp("news", URL, "2606:2800:220:1::1", 443, "network_unreachable"),
        ],
        _site_helper(h_tcp("2606:2800:220:1::1", 443)),
    ),
    "http.captcha": lambda: Scenario(
        https_site("news", URL, HOST, ADDR, status=503, title="Just a moment...", body="..."),
        _site_helper(*_reached_tls()),
    ),
    "dns.down": lambda: Scenario(
        [dns("news", URL, HOST, [], "dns_nxdomain_error")],
        _site_helper(h_dns(HOST, [], "dns_nxdomain_error")),
    ),
    "dns.bogon": lambda: Scenario(
        [
            dns("news", URL, HOST, ["127.0.0.2"]),
            doh("news", URL, HOST, [ADDR]),
            tcp("news", URL, "127.0.0.2", 443, "connection_refused"),
        ]
    ),
    "dns.nxdomain": lambda: _dns_fails("dns_nxdomain_error"),
    "dns.timeout": lambda: _dns_fails("generic_timeout_error"),
    "dns.servfail": lambda: _dns_fails("dns_servfail_error"),
    "dns.refused": lambda: _dns_fails("dns_refused_error"),
    "dns.no_answer": lambda: _dns_fails("dns_no_answer"),
    "dns.failure": lambda: _dns_fails("dns_server_misbehaving"),
    "dns.other_site": lambda: Scenario(
        [
            dns("news", URL, HOST, ["45.33.1.1"], primary=True),
            dns("news", URL, HOST, [ADDR], resolver=GOOGLE, primary=False),
            tcp("news", URL, "45.33.1.1", 443),
            tls("news", URL, "45.33.1.1", 443, HOST, "ssl_invalid_hostname"),
            tcp("news", URL, ADDR, 443, source=GOOGLE),
            tls("news", URL, ADDR, 443, HOST, source=GOOGLE),
        ]
    ),
    "dns.inconsistent": lambda: Scenario(
        [
            dns("news", URL, HOST, ["45.33.1.1"]),
            tcp("news", URL, "45.33.1.1", 443),
            tls("news", URL, "45.33.1.1", 443, HOST, "ssl_invalid_hostname"),
        ],
        _site_helper(*_reached_tls()),
    ),
    "tcp.down": lambda: _tcp_fails("generic_timeout_error", "connection_refused"),
    "tcp.reset": lambda: _tcp_fails("connection_reset"),
    "tcp.timeout": lambda: _tcp_fails("generic_timeout_error"),
    "tcp.failure": lambda: _tcp_fails("host_unreachable"),
    "tcp.timeout.group": lambda: _dcs_connect("generic_timeout_error", "generic_timeout_error"),
    "tcp.reset.group": lambda: _dcs_connect("connection_refused", "connection_reset"),
    "tcp.intermittent": lambda: Scenario(
        [
            *https_site("news", URL, HOST, ADDR),
            tcp("news", URL, ADDR, 443, attempt=2, duration_ms=1012.0),
            tcp("news", URL, ADDR, 443, "generic_timeout_error", attempt=2),
            *control_site(),
        ]
    ),
    "tls.down": lambda: _tls_fails(
        "ssl_invalid_certificate", h_tls(ADDR, 443, HOST, "ssl_invalid_certificate")
    ),
    "tls.interception": lambda: _tls_fails("ssl_unknown_authority"),
    "tls.interception.shared_issuer": _intercepted_without_a_helper,
    "tls.sni_reset": lambda: _tls_fails("connection_reset"),
    "tls.sni_timeout": lambda: _tls_fails("generic_timeout_error"),
    "tls.failure": lambda: _tls_fails("ssl_failed_handshake"),
    "http.down": lambda: _http_fails(
        "generic_timeout_error", h_http(URL, None, "generic_timeout_error")
    ),
    "throttling": lambda: Scenario(
        [
            *https_site("news", URL, HOST, ADDR, body_length=2_000_000, throughput=140.0),
            *control_site(kbps=12_000.0),
        ]
    ),
    "throttling.first_byte": lambda: Scenario(
        [
            *https_site(
                "news",
                URL,
                HOST,
                ADDR,
                body_length=600_000,
                throughput=4_000.0,
                transfer=True,
                ttfb_ms=4_500.0,
            ),
            *control_transfer(ttfb_ms=60.0),
        ]
    ),
    "http.reset": lambda: _http_fails("connection_reset"),
    "http.timeout": lambda: _http_fails("generic_timeout_error"),
    "http.failure": lambda: _http_fails("unknown_failure: malformed response"),
    "http.diff": lambda: Scenario(
        _plain_http(status=200, body="<p>notice</p>", title="Notice", headers=[("Server", "x")]),
        _site_helper(
            h_http(PLAIN, body_length=80_000, title="Example News Front Page"), target=PLAIN
        ),
        target=PLAIN,
    ),
    "protocol_filter": lambda: Scenario(
        _dc(protocol_probe("telegram", DC, DC, 443, "generic_timeout_error", source="literal")),
        helper(
            h_target("telegram", DC, h_tcp(DC, 80), h_tcp(DC, 443), h_probe(DC, 443, "eof_error"))
        ),
        platform="telegram",
        target=DC,
    ),
    "protocol_filter.group": lambda: Scenario(
        [*_dc(_silent_probe(DC)), *_dc(_silent_probe(DC2), dc=DC2)],
        platform="telegram",
        target=DC,
        targets=_dc_group(),
    ),
    "protocol.unproven": lambda: Scenario(
        [
            dns("whatsapp", CHAT, CHAT, [CHAT_ADDR]),
            tcp("whatsapp", CHAT, CHAT_ADDR, 443),
            protocol_probe("whatsapp", CHAT, CHAT_ADDR, 443, "generic_timeout_error", speaks="raw"),
        ],
        platform="whatsapp",
        target=CHAT,
    ),
    "ok.protocol_filter_seen": lambda: Scenario(
        [
            *https_site("news", URL, HOST, ADDR),
            protocol_probe("news", URL, ADDR, 443, "generic_timeout_error"),
        ],
        _site_helper(*_reached_tls(), h_probe(ADDR, 443, "eof_error")),
    ),
    "dns.network_resolver_broken": lambda: Scenario(
        [
            dns("news", URL, HOST, [], "generic_timeout_error", rcode=None, primary=True),
            doh("news", URL, HOST, [ADDR], primary=False),
            tcp("news", URL, ADDR, 443, source=DOH),
            tls("news", URL, ADDR, 443, HOST, source=DOH),
            http("news", URL, URL, ADDR, source=DOH),
            *_control_site_unresolved(),
        ]
    ),
    "ok": lambda: Scenario(https_site("news", URL, HOST, ADDR)),
    "endpoint.lone_failure": lambda: _dcs_connect("generic_timeout_error", None),
    "control.missing": lambda: Scenario(
        [
            dns("news", URL, HOST, [ADDR]),
            tcp("news", URL, ADDR, 443),
            tls("news", URL, ADDR, 443, HOST, "connection_reset"),
        ]
    ),
    "unexplained": lambda: Scenario(
        _tls_fails("connection_reset").measurements,
        _site_helper(h_dns(HOST, [ADDR]), h_tcp(ADDR, 443)),
    ),
}


def _verdict_rule(scenario: Scenario) -> tuple[str, Status, str | None, Confidence | None, str]:
    verdicts = verdicts_for_run(
        scenario.run,
        scenario.measurements,
        controls=scenario.controls,
        targets=scenario.targets,
    )
    (verdict,) = [v for v in verdicts if v.target == scenario.target]
    return (
        verdict.rule_id,
        verdict.status,
        verdict.technique,
        verdict.confidence,
        verdict.detail,
    )


@pytest.mark.parametrize("rule", RULES, ids=[r.rule_id for r in RULES])
def test_each_rule_decides_its_scenario(rule: Rule) -> None:
    scenario = SCENARIOS[rule.rule_id]()
    rule_id, status, technique, confidence, detail = _verdict_rule(scenario)
    assert rule_id == rule.rule_id
    assert (status, technique, confidence) == (
        rule.outcome.status,
        rule.outcome.technique,
        rule.outcome.confidence,
    )
    assert detail and "{f." not in detail


def test_every_rule_has_a_scenario_and_every_scenario_a_rule() -> None:
    assert set(SCENARIOS) == {r.rule_id for r in RULES}


def test_rule_ids_are_unique_and_well_formed() -> None:
    ids = [r.rule_id for r in RULES]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z0-9_]+(\.[a-z0-9_]+)*", i) for i in ids)
    assert all(r.comment.strip() for r in RULES)


def test_the_broken_resolver_rule_id_the_run_summary_reads_is_in_the_table() -> None:
    assert NETWORK_RESOLVER_BROKEN in {rule.rule_id for rule in RULES}


def test_rules_version_is_set() -> None:
    assert isinstance(RULES_VERSION, str) and RULES_VERSION.strip()


def test_blocked_outcomes_name_a_technique_and_a_confidence() -> None:
    for rule in RULES:
        blocked = rule.outcome.status is Status.BLOCKED
        assert (rule.outcome.technique is not None) is blocked, rule.rule_id
        assert (rule.outcome.confidence is not None) is blocked, rule.rule_id


def test_only_fingerprints_and_differentials_are_confirmed() -> None:
    confirmed = {r.rule_id for r in RULES if r.outcome.confidence is Confidence.CONFIRMED}
    assert confirmed == {
        "dns.injection.fingerprint",
        "dns.blockpage_ip",
        "http.blockpage",
        "tls.sni_reset.differential",
        "tls.sni_timeout.differential",
        "http.reset.differential",
        "http.timeout.differential",
    }


def test_the_table_ends_with_a_catch_all() -> None:
    assert RULES[-1].condition(Facts("p", "t"))
    assert evaluate(Facts("p", "t", measured=False)).rule_id == "target.not_measured"


def test_a_dead_network_outranks_a_fingerprint() -> None:
    facts = Facts(
        "p", "t", connectivity=Connectivity.NONE, dns_fingerprints=("ir.dns.10.10.34.35",)
    )
    assert evaluate(facts).rule_id == "run.no_connectivity"


def test_rule_evidence_names_known_groups() -> None:
    assert all(set(r.evidence) <= set(Evidence) and r.evidence for r in RULES)


def test_facts_for_target_is_usable_alone() -> None:
    scenario = SCENARIOS["tcp.timeout"]()
    facts = facts_for_target(
        scenario.run, scenario.measurements, "news", URL, controls=scenario.controls
    )
    assert facts.tcp_failure == "generic_timeout_error" and facts.control_tcp_ok is True
    assert facts.control_kbps == 8000.0
    assert evaluate(facts).rule_id == "tcp.timeout"


def test_one_unknown_ca_for_two_sites_without_a_helper_is_interception() -> None:
    scenario = _intercepted_without_a_helper()
    rule_id, status, technique, _, detail = _verdict_rule(scenario)
    assert (rule_id, status, technique) == (
        "tls.interception.shared_issuer",
        Status.BLOCKED,
        "tls.interception",
    )
    assert "2 names at 2 addresses" in detail


def test_a_lone_self_signed_site_without_a_helper_is_not_called_intercepted() -> None:
    # One site, one unknown CA: a server with its own certificate looks the same.
    scenario = Scenario([*_untrusted(URL, HOST, ADDR), *control_site()])
    rule_id, status, _, _, _ = _verdict_rule(scenario)
    assert status is Status.INCONCLUSIVE and rule_id != "tls.interception.shared_issuer"


def test_two_names_on_one_self_signed_server_are_not_called_intercepted() -> None:
    scenario = Scenario(
        [
            *_untrusted(URL, HOST, ADDR),
            *_untrusted(OTHER_URL, OTHER_HOST, ADDR),
            *control_site(),
        ]
    )
    _, status, _, _, _ = _verdict_rule(scenario)
    assert status is Status.INCONCLUSIVE


def test_an_ab_half_with_a_harmless_name_does_not_count_as_another_site() -> None:
    # The harmless-SNI half on the same address meets the same certificate: it is the prober's
    # name, not another site the CA signed for.
    harmless = tls(
        "news",
        URL,
        ADDR,
        443,
        "www.google.com",
        "ssl_unknown_authority",
        issuer=MITM_CA,
        differential_kind=DifferentialKind.SNI,
        target_sni=HOST,
    )
    scenario = Scenario([*_untrusted(URL, HOST, ADDR), harmless, *control_site()])
    _, status, _, _, _ = _verdict_rule(scenario)
    assert status is Status.INCONCLUSIVE


def test_an_unknown_ca_at_the_control_sites_too_blames_no_site() -> None:
    # The control site is rejected with the same CA: something intercepts everything (a local
    # proxy, antivirus), or the trust store is broken; no site is singled out.
    control = _untrusted("https://www.google.com/", "www.google.com", "142.250.1.1", "control")
    scenario = Scenario(
        [*_untrusted(URL, HOST, ADDR), *_untrusted(OTHER_URL, OTHER_HOST, OTHER_ADDR), *control]
    )
    _, status, _, _, _ = _verdict_rule(scenario)
    assert status is Status.INCONCLUSIVE


# -- the probe's own stalls ---------------------------------------------------------------------
# A measurement taken while the probe itself was stalled (probe.stall: its event loop did not run
# on an overloaded or paused machine) never makes a target blocked by its timing: each scenario
# that a timeout, a slow download or unsteady connects decide turns inconclusive (probe.stalled)
# when the target's measurements carry a stall; what a stall cannot forge (a blockpage, a forged
# DNS answer, a reset) and a target that was reached keep their verdicts.


def _with_the_target_stalled(scenario: Scenario) -> Scenario:
    marked = [
        stalled(m) if (m.platform, m.target) == (scenario.platform, scenario.target) else m
        for m in scenario.measurements
    ]
    return dataclasses.replace(scenario, measurements=marked)


def _stall_verdict(scenario: Scenario) -> tuple[str, Status]:
    verdicts = verdicts_for_run(
        scenario.run, scenario.measurements, controls=scenario.controls, targets=scenario.targets
    )
    (verdict,) = [v for v in verdicts if v.target == scenario.target]
    return verdict.rule_id, verdict.status


TIMED = [
    "dns.timeout",
    "tcp.timeout",
    "tls.sni_timeout.differential",
    "tls.sni_timeout",
    "http.timeout",
    "http.timeout.differential",
    "throttling",
    "throttling.first_byte",
    "tcp.intermittent",
]


@pytest.mark.parametrize("rule_id", TIMED)
def test_a_verdict_decided_by_timing_across_a_stall_of_the_probe_is_inconclusive(
    rule_id: str,
) -> None:
    scenario = SCENARIOS[rule_id]()
    assert _stall_verdict(scenario)[0] == rule_id  # unstalled, the scenario's own rule decides
    assert _stall_verdict(_with_the_target_stalled(scenario)) == (
        "probe.stalled",
        Status.INCONCLUSIVE,
    )


NOT_TIMED = [
    "dns.blockpage_ip",
    "dns.injection.fingerprint",
    "http.blockpage",
    "tls.sni_reset.differential",
    "tcp.reset",
    "dns.nxdomain",
    "tls.interception",
    "ok",
]


@pytest.mark.parametrize("rule_id", NOT_TIMED)
def test_a_stall_does_not_undo_what_timing_cannot_forge(rule_id: str) -> None:
    scenario = SCENARIOS[rule_id]()
    assert _stall_verdict(_with_the_target_stalled(scenario)) == _stall_verdict(scenario)
    assert _stall_verdict(scenario)[0] == rule_id


def test_a_stall_of_another_target_leaves_this_one_blocked() -> None:
    scenario = SCENARIOS["tcp.timeout"]()
    others = [stalled(m) if m.target != URL else m for m in scenario.measurements]
    assert _stall_verdict(dataclasses.replace(scenario, measurements=others))[0] == "tcp.timeout"


def test_the_verdict_detail_names_the_stalled_layer_and_the_stall() -> None:
    scenario = _with_the_target_stalled(SCENARIOS["tcp.timeout"]())
    verdicts = verdicts_for_run(scenario.run, scenario.measurements, controls=scenario.controls)
    (verdict,) = [v for v in verdicts if v.target == URL]
    assert "TCP" in verdict.detail and "1800.0 ms stall" in verdict.detail
