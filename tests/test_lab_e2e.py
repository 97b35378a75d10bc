"""The real probe behind the lab's censor, end to end: for every scenario of the lab's registry,
`python3 -m probe run` runs in the client namespace (the lab CA as its trust store, the ISP
resolver as its system resolver, the built-in catalog), asks the control test helper served from
the ctrl namespace, and stores its measurements and verdicts in SQLite; the tests read that file
and check what a user would see: the failure string and operation at the layer the censor acts
on, success everywhere it does not, and the verdict per target.

The probe's config (tests/lab/e2e.py writes it) has short timeouts, the ISP resolver once more
over UDP (the system resolver records no raw responses, and a forged answer racing the real one
is only visible on a UDP socket), DoH to the lab's 1.1.1.1 as the control resolver, and one
extra target: plain HTTP to www.instagram.com (the catalog has only its HTTPS page, so the
http_reset scenario would hit nothing). Throttling is measured with the catalog's own transfer
targets (a large asset per platform, and the control sites' transfers of the same size), which
the lab serves at their paths.

One lab and one helper serve the whole file; each test is one probe run of a few seconds.
Needs root (the lab fixtures skip, saying why, otherwise).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

from probe.addresses import is_ip
from probe.model import Layer, Measurement, Speaks, Target, TargetKind, TcpConnect
from tests.builders import stored, stored_observation
from tests.lab import plan as lab_plan
from tests.lab import scenarios
from tests.lab.blockpage import BLOCKPAGE_MARKER
from tests.lab.e2e import (
    INSTAGRAM_PLAIN,
    LAB_CLIENT_NETWORK,
    LAB_DOH_RESOLVER,
    ControlHelper,
    ProbeRun,
    ProbeWorkspace,
    default_config,
    e2e_config,
    planned_targets,
    run_probe,
)
from tests.lab.expectations import (
    Setup,
    assert_expected,
    expected,
    hits,
    hosts_at,
    key,
    on_hosts,
)
from tests.lab.lab import Lab
from tests.lab.pki import INTERCEPTION_CA_ORGANIZATION
from tests.lab.scenarios import CONTROL_NAMES, SCENARIOS, get_scenario

pytest_plugins = ("tests.lab.fixtures",)  # the lab and lab_session fixtures

# A shaped transfer's goodput is at most this (kbit/s): the shaper's 64 kbit/s and its burst.
SHAPED_KBPS = 200.0

# Scenario name -> the test that runs it; a scenario added to the lab without one fails below.
COVERED: dict[str, str] = {}


def covers(scenario: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    def mark(test: Callable[..., None]) -> Callable[..., None]:
        COVERED[scenario] = test.__name__
        return test

    return mark


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProbeWorkspace]:
    root = tmp_path_factory.mktemp("lab-e2e")
    yield ProbeWorkspace.create(root)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def control_helper(lab_session: Lab, workspace: ProbeWorkspace) -> Iterator[ControlHelper]:
    with ControlHelper.start(lab_session, workspace) as helper:
        yield helper


@pytest.fixture(scope="session")
def probe_config(
    lab_session: Lab, workspace: ProbeWorkspace, control_helper: ControlHelper
) -> Path:
    return e2e_config(lab_session, workspace, control_helper)


@pytest.fixture(scope="session")
def alone_config(lab_session: Lab, workspace: ProbeWorkspace) -> Path:
    """The same probe with no test helper: the run's DoH answers, its control sites and what
    the run itself proves are all the control there is."""
    return e2e_config(lab_session, workspace, None, name="probe-alone.toml")


@pytest.fixture(scope="session")
def shipped_config(workspace: ProbeWorkspace) -> Path:
    """The default config: the built-in resolvers (the system's, two DoH providers, plain UDP to
    8.8.8.8), no helper."""
    return default_config(workspace)


@pytest.fixture(scope="session")
def targets(probe_config: Path) -> tuple[Target, ...]:
    return planned_targets(probe_config)


@pytest.fixture
def probe(lab: Lab, workspace: ProbeWorkspace, probe_config: Path) -> Callable[[str], ProbeRun]:
    """Apply the named scenario and run the probe once under it."""

    def run(scenario: str) -> ProbeRun:
        lab.apply(get_scenario(scenario))
        return run_probe(lab, workspace, probe_config, scenario)

    return run


@pytest.fixture
def probe_alone(
    lab: Lab, workspace: ProbeWorkspace, alone_config: Path
) -> Callable[[str], ProbeRun]:
    """Apply the named scenario and run the probe once under it without a helper."""

    def run(scenario: str) -> ProbeRun:
        lab.apply(get_scenario(scenario))
        return run_probe(lab, workspace, alone_config, f"{scenario}-alone")

    return run


@pytest.fixture
def probe_default(
    lab: Lab, workspace: ProbeWorkspace, shipped_config: Path
) -> Callable[[str], ProbeRun]:
    """Apply the named scenario and run the probe once under it with the default config."""

    def run(scenario: str) -> ProbeRun:
        lab.apply(get_scenario(scenario))
        return run_probe(lab, workspace, shipped_config, f"{scenario}-default")

    return run


def runs(
    probe: Callable[[str], ProbeRun], probe_default: Callable[[str], ProbeRun], scenario: str
) -> list[tuple[Setup, ProbeRun]]:
    """The scenario's run with a helper, then with the default config."""
    return [(Setup.HELPER, probe(scenario)), (Setup.DEFAULT, probe_default(scenario))]


# -- reading a run -------------------------------------------------------------------------------


@pytest.fixture
def assert_meets(lab: Lab, targets: tuple[Target, ...]) -> Callable[[ProbeRun, str, Setup], None]:
    """Every target's verdict in the run is what the scenario expects in this setup (the shared
    definition, tests/lab/expectations.py, which the scenario x config matrix scores too)."""

    def check(run: ProbeRun, scenario: str, setup: Setup) -> None:
        expectations = expected(scenario, setup, lab.plan, targets)
        assert_expected(run.verdicts, expectations, run.explain)

    return check


def own(run: ProbeRun, target: Target, layer: Layer) -> list[Measurement]:
    """The target's own measurements at one layer (no A/B halves), without the runner's repeat
    connects (TcpConnect.attempt 2, read by the intermittent rule: see repeats)."""
    found = run.of(target.name, layer)
    return [m for m in found if m.platform == target.platform and not _repeat(m)]


def repeats(run: ProbeRun, target: Target) -> list[Measurement]:
    """The runner's second connect to each of the target's endpoints."""
    found = run.of(target.name, Layer.TCP)
    return [m for m in found if m.platform == target.platform and _repeat(m)]


def _repeat(measurement: Measurement) -> bool:
    details = measurement.observation.details
    return isinstance(details, TcpConnect) and details.attempt > 1


def differential(run: ProbeRun, target: Target, layer: Layer, kind: str) -> list[Measurement]:
    return [
        m for m in run.of(target.name, layer, differential=kind) if m.platform == target.platform
    ]


def system_dns(run: ProbeRun, target: Target) -> Measurement:
    (found,) = [m for m in own(run, target, Layer.DNS) if m.observation.endpoint == "system"]
    return found


def udp_dns(run: ProbeRun, target: Target, lab: Lab) -> Measurement:
    spec = f"udp://{lab.isp_resolver}:53"
    (found,) = [m for m in own(run, target, Layer.DNS) if m.observation.endpoint == spec]
    return found


def doh_dns(run: ProbeRun, target: Target) -> Measurement:
    (found,) = [
        m for m in own(run, target, Layer.DNS) if m.observation.endpoint == LAB_DOH_RESOLVER
    ]
    return found


def failures(measurements: Iterable[Measurement]) -> list[tuple[str | None, str | None]]:
    return [
        (
            m.observation.failure,
            m.observation.failed_operation and str(m.observation.failed_operation),
        )
        for m in measurements
    ]


def assert_untouched(run: ProbeRun, targets: Iterable[Target]) -> None:
    """Every measurement of these targets (their A/B halves and protocol probes aside) worked."""
    broken = [
        (m.target, m.observation.layer.value, m.observation.endpoint, m.observation.failure)
        for t in targets
        for m in run.of(t.name)
        if m.platform == t.platform and m.observation.failure is not None
    ]
    assert not broken, f"untouched targets failed: {broken[:10]}"


def assert_ran(run: ProbeRun, exit_code: int = 0) -> None:
    assert run.exit_code == exit_code, run.explain()
    assert run.document is not None and run.run is not None and run.measurements, run.stderr
    assert run.run.finished_at is not None


# -- the registry --------------------------------------------------------------------------------


def test_every_lab_scenario_has_an_end_to_end_test() -> None:
    assert set(COVERED) == set(SCENARIOS)
    assert all(name in globals() for name in COVERED.values())


# -- not censorship --------------------------------------------------------------------------------


@covers("clean")
def test_clean_network_gives_every_target_ok(
    assert_meets: Callable[[ProbeRun, str, Setup], None],
    probe: Callable[[str], ProbeRun],
    targets: tuple[Target, ...],
) -> None:
    run = probe("clean")
    assert_ran(run)
    assert run.document is not None and run.document["connectivity"] == "ok"
    assert run.document["control"] == "Control: the test helper measured the same targets."
    assert_meets(run, "clean", Setup.HELPER)
    assert_untouched(run, targets)
    assert len(run.verdicts) == len(targets)


@covers("site_down")
def test_site_down_everywhere_is_down_not_blocked(
    assert_meets: Callable[[ProbeRun, str, Setup], None],
    probe: Callable[[str], ProbeRun],
    lab: Lab,
    targets: tuple[Target, ...],
) -> None:
    run = probe("site_down")
    assert_ran(run)
    down = on_hosts(targets, hosts_at(lab.plan, targets, hits(lab.plan, "site_down")))
    assert {t.platform for t in down} == {"signal"} and len(down) == 5  # with its transfer
    assert_meets(run, "site_down", Setup.HELPER)
    for target in down:
        assert failures(own(run, target, Layer.TCP)) == [("connection_refused", "connect")]
    assert not run.blocked()
    assert_untouched(run, [t for t in targets if t not in down])


@covers("cdn")
def test_cdn_answer_with_a_valid_certificate_is_ok_not_blocked(
    assert_meets: Callable[[ProbeRun, str, Setup], None],
    probe: Callable[[str], ProbeRun],
    lab: Lab,
    targets: tuple[Target, ...],
) -> None:
    run = probe("cdn")
    assert_ran(run)
    assert_meets(run, "cdn", Setup.HELPER)
    assert not run.blocked()
    moved = on_hosts(targets, hits(lab.plan, "cdn"))
    assert moved
    for target in moved:
        cdn_address = lab.cdn_address_of(target.host)
        assert stored(system_dns(run, target))["addresses"] == [cdn_address]
        assert stored(doh_dns(run, target))["addresses"] == [lab.address_of(target.host)]
        for handshake in own(run, target, Layer.TLS):
            assert handshake.observation.failure is None
            # The network's answer, and the control's other address, measured beside it.
            expected = cdn_address if stored(handshake)["address_source"] == "system" else None
            assert stored(handshake)["address"] in {expected, lab.address_of(target.host)}
    assert_untouched(run, targets)


@covers("dead_uplink")
def test_dead_uplink_exits_3_and_blames_nobody(probe: Callable[[str], ProbeRun]) -> None:
    run = probe("dead_uplink")
    assert_ran(run, exit_code=3)
    assert "No network connectivity" in run.stderr
    assert run.document is not None and run.document["connectivity"] == "none"
    assert run.run is not None and run.run.connectivity.value == "none"
    assert run.verdicts and {v.status.value for v in run.verdicts} == {"inconclusive"}
    assert {v.rule_id for v in run.verdicts} == {"run.no_connectivity"}
    assert not run.blocked()


# -- DNS -----------------------------------------------------------------------------------------


@covers("dns_lie")
def test_dns_lie_is_a_confirmed_blockpage_answer(
    assert_meets: Callable[[ProbeRun, str, Setup], None],
    probe: Callable[[str], ProbeRun],
    probe_default: Callable[[str], ProbeRun],
    lab: Lab,
    targets: tuple[Target, ...],
) -> None:
    run = probe("dns_lie")
    assert_ran(run)
    lied = on_hosts(targets, hits(lab.plan, "dns_lie"))
    shipped = probe_default("dns_lie")
    assert_ran(shipped)
    assert_meets(shipped, "dns_lie", Setup.DEFAULT)
    assert {t.platform for t in lied} == {"facebook", "instagram"}
    assert_meets(run, "dns_lie", Setup.HELPER)
    for target in lied:
        answer = system_dns(run, target).observation
        assert answer.failure is None
        assert stored_observation(answer)["addresses"][0] == lab_plan.LIE_ADDRESS
        assert stored(doh_dns(run, target))["addresses"] == [lab.address_of(target.host)]
    assert_untouched(run, [t for t in targets if t not in lied])


@covers("dns_nxdomain")
def test_dns_nxdomain_is_blocked_while_doh_resolves_the_name(
    assert_meets: Callable[[ProbeRun, str, Setup], None],
    probe: Callable[[str], ProbeRun],
    probe_default: Callable[[str], ProbeRun],
    lab: Lab,
    targets: tuple[Target, ...],
) -> None:
    run = probe("dns_nxdomain")
    assert_ran(run)
    gone = on_hosts(targets, hits(lab.plan, "dns_nxdomain"))
    shipped = probe_default("dns_nxdomain")
    assert_ran(shipped)
    assert_meets(shipped, "dns_nxdomain", Setup.DEFAULT)
    assert {t.host for t in gone} == {"youtube.com", "www.youtube.com", "i.ytimg.com"}
    assert_meets(run, "dns_nxdomain", Setup.HELPER)
    for target in gone:
        assert failures([system_dns(run, target)]) == [("dns_nxdomain_error", "resolve")]
        assert failures([udp_dns(run, target, lab)]) == [("dns_nxdomain_error", "dns_round_trip")]
        assert stored(doh_dns(run, target))["addresses"] == [lab.address_of(target.host)]
        # The runner connects to the control resolver's answer: the address itself is reachable.
        connects = own(run, target, Layer.TCP)
        assert connects and failures(connects) == [(None, None)] * len(connects)
        assert {stored(m)["address_source"] for m in connects} == {LAB_DOH_RESOLVER}
    assert_untouched(run, [t for t in targets if t not in gone])


@covers("resolver_lie")
def test_a_lying_network_resolver_is_blocked_while_an_honest_foreign_resolver_answers(
    assert_meets: Callable[[ProbeRun, str, Setup], None],
    probe: Callable[[str], ProbeRun],
    probe_default: Callable[[str], ProbeRun],
    lab: Lab,
    targets: tuple[Target, ...],
) -> None:
    # Only the network's resolver censors: 8.8.8.8 (in the default config) and DoH answer truly.
    # Its NXDOMAIN and its lie are DNS blocking, and the true address, measured beside it, is
    # reported reachable (what a user who changed resolver gets).
    gone = on_hosts(targets, hits(lab.plan, "resolver_lie", "dns_nxdomain"))
    lied = on_hosts(targets, hits(lab.plan, "resolver_lie", "dns_lie"))
    assert {t.platform for t in gone} == {"signal"} and len(gone) == 5
    assert {t.platform for t in lied} == {"telegram"} and lied
    for setup, run in runs(probe, probe_default, "resolver_lie"):
        assert_ran(run)
        assert_meets(run, "resolver_lie", setup)
        for target in gone + lied:
            assert "the control's address is reachable" in run.verdict(*key(target)).detail
        for target in lied:
            answer = system_dns(run, target).observation
            assert stored_observation(answer)["addresses"] == [scenarios.NOWHERE_ADDRESS]
            sources = {stored(m)["address_source"] for m in own(run, target, Layer.TLS)}
            assert sources and "system" not in sources  # only the true address handshakes
        assert_untouched(run, [t for t in targets if t not in gone + lied])


@covers("dns_other_site")
def test_a_lie_pointing_at_another_real_site_is_dns_tampering_not_unexplained(
    assert_meets: Callable[[ProbeRun, str, Setup], None],
    probe: Callable[[str], ProbeRun],
    probe_default: Callable[[str], ProbeRun],
    lab: Lab,
    targets: tuple[Target, ...],
) -> None:
    # Instagram's names resolve to another real site: its certificate is valid for its own name
    # only, so the handshake fails ssl_invalid_hostname, while the control's address validates.
    # The plain-HTTP target has no TLS to tell: its connect to the other site's port 80 fails,
    # and its answer shares nothing with the control's.
    moved = on_hosts(targets, hits(lab.plan, "dns_other_site"))
    secure = [t for t in moved if t.kind is TargetKind.HTTPS]
    plain = [t for t in moved if t.kind is TargetKind.HTTP]
    assert secure and plain and {t.platform for t in moved} == {"instagram"}
    for setup, run in runs(probe, probe_default, "dns_other_site"):
        assert_ran(run)
        assert_meets(run, "dns_other_site", setup)
        for target in secure:
            by_source = {
                stored(m)["address_source"]: m.observation for m in own(run, target, Layer.TLS)
            }
            assert by_source.pop("system").failure == "ssl_invalid_hostname"
            assert by_source and all(o.failure is None for o in by_source.values())
        assert_untouched(run, [t for t in targets if t not in moved])


@covers("resolver_broken")
def test_a_network_resolver_broken_for_the_control_sites_too_blocks_nothing(
    assert_meets: Callable[[ProbeRun, str, Setup], None],
    probe: Callable[[str], ProbeRun],
    probe_default: Callable[[str], ProbeRun],
    targets: tuple[Target, ...],
) -> None:
    # A broken ISP resolver fails every name alike, the control sites' too: no target is
    # dns-blocked; DNS is inconclusive for the run and each verdict says why. The runner still
    # measured the control resolvers' answers (nothing else failed), and address targets (the
    # Telegram DCs) need no resolver at all.
    named = [t for t in targets if not is_ip(t.host)]
    literal = [t for t in targets if is_ip(t.host)]
    assert named and literal
    for setup, run in runs(probe, probe_default, "resolver_broken"):
        assert_ran(run)
        assert_meets(run, "resolver_broken", setup)
        assert not run.blocked()
        for target in named:
            verdict = run.verdict(*key(target))
            assert verdict.rule_id == "dns.network_resolver_broken", run.explain(target.name)
            assert "control sites too" in verdict.detail
            if target.kind is not TargetKind.DNS:
                connects = own(run, target, Layer.TCP)
                assert connects and all(m.observation.failure is None for m in connects)


@covers("dns_injection")
def test_dns_injection_records_two_answers_the_first_forged(
    assert_meets: Callable[[ProbeRun, str, Setup], None],
    probe: Callable[[str], ProbeRun],
    probe_default: Callable[[str], ProbeRun],
    lab: Lab,
    targets: tuple[Target, ...],
) -> None:
    run = probe("dns_injection")
    assert_ran(run)
    raced = on_hosts(targets, hits(lab.plan, "dns_injection"))
    # The default config's plain foreign resolver (udp://8.8.8.8) is what shows the race.
    shipped = probe_default("dns_injection")
    assert_ran(shipped)
    assert_meets(shipped, "dns_injection", Setup.DEFAULT)
    assert {t.platform for t in raced} == {"twitter"} and len(raced) == 8  # with its transfer
    assert_meets(run, "dns_injection", Setup.HELPER)
    for target in raced:
        details = stored(udp_dns(run, target, lab))
        responses = details["responses"]
        assert details["second_answer"] is True and len(responses) >= 2, details
        assert responses[0]["addresses"] == [lab_plan.LIE_ADDRESS]
        assert responses[1]["addresses"] == [lab.address_of(target.host)]
        assert responses[0]["received_ms"] < responses[1]["received_ms"]
    # As root, the packets themselves were captured: the forged answer's IP TTL gives it away.
    captures = [m for t in raced for m in differential(run, t, Layer.DNS, "raw")]
    assert captures, "no raw DNS capture although the probe runs as root"
    for capture in captures:
        packets = stored(capture)["responses"]
        assert len(packets) >= 2 and packets[0]["injected_suspected"] is True, packets
        assert packets[0]["ip_ttl"] != packets[-1]["ip_ttl"]
    assert_untouched(run, [t for t in targets if t not in raced])


@covers("dns_drop")
def test_dns_drop_times_out_whatsapp_names_and_no_other(
    assert_meets: Callable[[ProbeRun, str, Setup], None],
    probe: Callable[[str], ProbeRun],
    probe_default: Callable[[str], ProbeRun],
    lab: Lab,
    targets: tuple[Target, ...],
) -> None:
    run = probe("dns_drop")
    assert_ran(run)
    dropped = on_hosts(targets, hits(lab.plan, "dns_drop"))
    shipped = probe_default("dns_drop")
    assert_ran(shipped)
    assert_meets(shipped, "dns_drop", Setup.DEFAULT)
    assert {t.platform for t in dropped} == {"whatsapp"} and len(dropped) == 19  # with its transfer
    assert_meets(run, "dns_drop", Setup.HELPER)
    for target in dropped:
        assert failures([system_dns(run, target)]) == [("generic_timeout_error", "resolve")]
        assert failures([udp_dns(run, target, lab)]) == [
            ("generic_timeout_error", "dns_round_trip")
        ]
    # Lookups the stub resolver never gets an answer for hold a thread each: the names queued
    # behind them must still resolve (they were reported blocked before the runner's fix).
    assert_untouched(run, [t for t in targets if t not in dropped])


# -- IP and TCP ----------------------------------------------------------------------------------


@covers("ip_blackhole")
def test_ip_blackhole_times_out_every_telegram_dc_connect(
    assert_meets: Callable[[ProbeRun, str, Setup], None],
    probe: Callable[[str], ProbeRun],
    lab: Lab,
    targets: tuple[Target, ...],
) -> None:
    run = probe("ip_blackhole")
    assert_ran(run)
    dcs = on_hosts(targets, hits(lab.plan, "ip_blackhole"))
    assert len(dcs) == 6 and {t.group for t in dcs} == {"dc"}
    assert_meets(run, "ip_blackhole", Setup.HELPER)
    for target in dcs:
        connects = own(run, target, Layer.TCP)
        assert failures(connects) == [("generic_timeout_error", "connect")] * len(target.ports)
        # The runner's repeat of each connect meets the same blackhole.
        again = repeats(run, target)
        assert failures(again) == [("generic_timeout_error", "connect")] * len(target.ports)
        assert not own(run, target, Layer.HTTP)
    assert_untouched(run, [t for t in targets if t not in dcs])


@covers("tcp_reset")
def test_tcp_reset_refuses_whatsapp_connects(
    assert_meets: Callable[[ProbeRun, str, Setup], None],
    probe: Callable[[str], ProbeRun],
    lab: Lab,
    targets: tuple[Target, ...],
) -> None:
    run = probe("tcp_reset")
    assert_ran(run)
    reset = on_hosts(targets, hosts_at(lab.plan, targets, hits(lab.plan, "tcp_reset")))
    assert {t.host for t in reset} == {
        *(f"e{i}.whatsapp.net" for i in range(1, 17)),
        "v.whatsapp.net",
    }
    assert_meets(run, "tcp_reset", Setup.HELPER)
    for target in reset:
        connects = own(run, target, Layer.TCP)
        assert failures(connects) == [("connection_refused", "connect")] * len(target.ports)
    # The RSTs were captured with their IP TTL: the censor answered the SYN, no server did.
    captures = [m for t in reset for m in differential(run, t, Layer.TCP, "raw")]
    assert captures, "no raw TCP capture although the probe runs as root"
    for capture in captures:
        details = stored(capture)
        assert details["reset_ttls"] and details["syn_ack_ttl"] is None, details
    assert_untouched(run, [t for t in targets if t not in reset])


# -- TLS -----------------------------------------------------------------------------------------


@covers("sni_reset")
def test_sni_reset_is_blocked_not_down(
    assert_meets: Callable[[ProbeRun, str, Setup], None],
    probe: Callable[[str], ProbeRun],
    lab: Lab,
    targets: tuple[Target, ...],
) -> None:
    run = probe("sni_reset")
    assert_ran(run)
    reset = on_hosts(targets, hits(lab.plan, "sni_reset"), (TargetKind.HTTPS,))
    assert {t.platform for t in reset} == {"twitter"} and len(reset) == 8
    assert_meets(run, "sni_reset", Setup.HELPER)
    for target in reset:
        assert failures(own(run, target, Layer.TCP)) == [(None, None)]
        (hello,) = own(run, target, Layer.TLS)
        assert failures([hello]) == [("connection_reset", "tls_handshake")]
        assert stored(hello)["sni"] == target.host
        # The A/B half: the same address with a harmless SNI, a control site's name that
        # passed in this run, reaches the server (the lab certificate covers every lab name,
        # so the handshake completes; its certificates prove it got through).
        (harmless,) = differential(run, target, Layer.TLS, "sni")
        assert stored(harmless)["address"] == stored(hello)["address"]
        assert stored(harmless)["sni"] in CONTROL_NAMES
        assert harmless.observation.failure is None
        assert stored(harmless)["certificates"]
    assert_untouched(run, [t for t in targets if t not in reset])


@covers("sni_drop")
def test_sni_drop_stalls_the_handshake_a_harmless_sni_completes(
    assert_meets: Callable[[ProbeRun, str, Setup], None],
    probe: Callable[[str], ProbeRun],
    lab: Lab,
    targets: tuple[Target, ...],
) -> None:
    run = probe("sni_drop")
    assert_ran(run)
    stalled = on_hosts(targets, hits(lab.plan, "sni_drop"), (TargetKind.HTTPS,))
    assert [t.name for t in stalled] == ["https://www.instagram.com/"]
    assert_meets(run, "sni_drop", Setup.HELPER)
    for target in stalled:
        assert failures(own(run, target, Layer.TCP)) == [(None, None)]
        assert failures(own(run, target, Layer.TLS)) == [("generic_timeout_error", "tls_handshake")]
        (harmless,) = differential(run, target, Layer.TLS, "sni")
        assert stored(harmless)["certificates"]
    assert_untouched(run, [t for t in targets if t not in stalled])


@covers("tls_interception")
def test_tls_interception_records_the_censors_certificate(
    assert_meets: Callable[[ProbeRun, str, Setup], None],
    probe: Callable[[str], ProbeRun],
    probe_default: Callable[[str], ProbeRun],
    lab: Lab,
    targets: tuple[Target, ...],
) -> None:
    redirected = hosts_at(lab.plan, targets, hits(lab.plan, "tls_interception"))
    # Everything that speaks TLS there: the web page and Facebook's TLS-speaking API hosts.
    intercepted = [t for t in on_hosts(targets, redirected) if t.protocol is Speaks.TLS]
    assert {t.name for t in intercepted} == {
        "https://www.facebook.com/",
        *(t.host for t in targets if t.platform == "facebook" and t.kind is TargetKind.TCP),
    }
    # With the default config (no helper) it is the one unknown CA signing for all seven names
    # at their several addresses, while the control sites validate, that tells interception.
    for setup, run in runs(probe, probe_default, "tls_interception"):
        assert_ran(run)
        assert_meets(run, "tls_interception", setup)
        for target in intercepted:
            (handshake,) = own(run, target, Layer.TLS)
            assert failures([handshake]) == [("ssl_unknown_authority", "tls_handshake")]
            details = stored(handshake)
            assert details["verify_failure"] == "ssl_unknown_authority"
            assert INTERCEPTION_CA_ORGANIZATION in details["certificates"][0]["issuer"]
            assert not own(run, target, Layer.HTTP)
        # Its plain HTTP is untouched.
        assert_untouched(run, [t for t in targets if t not in intercepted])


# -- HTTP ----------------------------------------------------------------------------------------


@covers("http_blockpage")
def test_http_blockpage_is_a_confirmed_iran_blockpage(
    assert_meets: Callable[[ProbeRun, str, Setup], None],
    probe: Callable[[str], ProbeRun],
    lab: Lab,
    targets: tuple[Target, ...],
) -> None:
    run = probe("http_blockpage")
    assert_ran(run)
    paged = on_hosts(targets, hits(lab.plan, "http_blockpage"), (TargetKind.HTTP,))
    assert [t.name for t in paged] == ["http://www.facebook.com/"]
    assert_meets(run, "http_blockpage", Setup.HELPER)
    for target in paged:
        (page,) = own(run, target, Layer.HTTP)
        assert page.observation.failure is None
        assert stored(page)["status"] == 403
        assert BLOCKPAGE_MARKER in stored(page)["body_prefix"]
    assert_untouched(run, [t for t in targets if t not in paged])


@covers("http_reset")
def test_http_reset_is_confirmed_by_a_harmless_host_on_the_same_server(
    assert_meets: Callable[[ProbeRun, str, Setup], None],
    probe: Callable[[str], ProbeRun],
    lab: Lab,
    targets: tuple[Target, ...],
) -> None:
    run = probe("http_reset")
    assert_ran(run)
    cut = on_hosts(targets, hits(lab.plan, "http_reset"), (TargetKind.HTTP,))
    assert [t.name for t in cut] == [INSTAGRAM_PLAIN]
    assert_meets(run, "http_reset", Setup.HELPER)
    for target in cut:
        assert failures(own(run, target, Layer.TCP)) == [(None, None)]
        assert failures(own(run, target, Layer.HTTP)) == [("connection_reset", "http_round_trip")]
        (harmless,) = differential(run, target, Layer.HTTP, "host")
        assert stored(harmless)["status"] == 200
    assert_untouched(run, [t for t in targets if t not in cut])


@covers("intermittent_syn_drop")
def test_dropped_first_syns_make_signal_intermittent_not_ok(
    assert_meets: Callable[[ProbeRun, str, Setup], None],
    probe: Callable[[str], ProbeRun],
    probe_default: Callable[[str], ProbeRun],
    lab: Lab,
    targets: tuple[Target, ...],
) -> None:
    # The first SYN of every connection to Signal's addresses is dropped: each connect, and its
    # repeat, completes after the 1 s SYN retransmission while the control sites connect in
    # milliseconds. Nothing fails outright, so a single connect would read ok; the verdict is
    # intermittent, with the rate, with a helper and with the default config alike.
    dropped = on_hosts(
        targets, hosts_at(lab.plan, targets, hits(lab.plan, "intermittent_syn_drop"))
    )
    assert {t.platform for t in dropped} == {"signal"} and len(dropped) == 5
    for setup, run in runs(probe, probe_default, "intermittent_syn_drop"):
        assert_ran(run)
        assert_meets(run, "intermittent_syn_drop", setup)
        for target in dropped:
            # The connect and the runner's repeat (own() leaves repeats out).
            connects = [*own(run, target, Layer.TCP), *repeats(run, target)]
            assert sorted(stored(m)["attempt"] for m in connects) == [1, 2], run.explain()
            assert all(m.failure is None for m in connects)
            assert all(m.observation.duration_ms >= 1000 for m in connects), run.explain(
                target.name
            )
            assert "2 of 2 connects (100%)" in run.verdict(*key(target)).detail
        assert_untouched(run, [t for t in targets if t not in dropped])


@covers("throttle")
def test_throttle_collapses_the_youtube_transfer_far_below_the_control_transfers(
    assert_meets: Callable[[ProbeRun, str, Setup], None],
    probe: Callable[[str], ProbeRun],
    lab: Lab,
    targets: tuple[Target, ...],
) -> None:
    run = probe("throttle")
    assert_ran(run)
    assert_meets(run, "throttle", Setup.HELPER)
    shaped = on_hosts(targets, hosts_at(lab.plan, targets, hits(lab.plan, "throttle")))
    assert {t.host for t in shaped} == {"i.ytimg.com", "redirector.googlevideo.com"}
    assert_throttled(run, shaped, targets)


@covers("throttle_small_pages")
def test_small_page_throttle_is_seen_on_the_platforms_large_asset_only(
    assert_meets: Callable[[ProbeRun, str, Setup], None],
    probe: Callable[[str], ProbeRun],
    probe_default: Callable[[str], ProbeRun],
    lab: Lab,
    targets: tuple[Target, ...],
) -> None:
    # With a helper and with the default config alike: the control sites' transfers of the same
    # size are the reference, so no helper is needed to see the trickle.
    shaped = on_hosts(targets, hosts_at(lab.plan, targets, hits(lab.plan, "throttle_small_pages")))
    assert {t.host for t in shaped} == {"pbs.twimg.com"} and len(shaped) == 2
    for setup, run in runs(probe, probe_default, "throttle_small_pages"):
        assert_ran(run)
        assert_meets(run, "throttle_small_pages", setup)
        # The root page is a few KB: too short for a rate, it says nothing of the shaper.
        for page in [t for t in shaped if not t.transfer]:
            for fetch in own(run, page, Layer.HTTP):
                assert stored(fetch)["body_length"] < 64 * 1024
                assert not stored(fetch)["transfer"]
        assert_throttled(run, shaped, targets)


def control_transfers(run: ProbeRun) -> list[Measurement]:
    return [
        m
        for m in run.measurements
        if m.platform == "control" and m.layer is Layer.HTTP and stored(m)["transfer"]
    ]


def assert_throttled(run: ProbeRun, shaped: list[Target], targets: Iterable[Target]) -> None:
    """The shaped transfers read as a sample of a trickle (their window ended, no failure) far
    below the control sites' transfers; nothing else is touched (the verdicts: assert_meets)."""
    transfers = [t for t in shaped if t.transfer]
    assert transfers
    controls = control_transfers(run)
    assert len(controls) == 2 and all(m.failure is None for m in controls), run.explain()
    fastest_slow = 0.0
    for target in transfers:
        (fetch,) = own(run, target, Layer.HTTP)
        details = stored(fetch)
        assert fetch.observation.failure is None, run.explain(target.name)
        assert details["status"] == 200 and details["transfer"] is True
        assert details["body_truncated"] is True  # the sample window ended it, not the server
        assert details["throughput_kbps"] < SHAPED_KBPS, details["throughput_kbps"]
        fastest_slow = max(fastest_slow, details["throughput_kbps"])
    for control in controls:
        assert stored(control)["throughput_kbps"] > 10 * max(fastest_slow, 1.0)
    assert_untouched(run, [t for t in targets if t not in shaped])


# -- Iran's protocol allowlist -------------------------------------------------------------------


@covers("protocol_allowlist")
def test_protocol_allowlist_drops_the_protocol_probe_at_read(
    assert_meets: Callable[[ProbeRun, str, Setup], None],
    probe: Callable[[str], ProbeRun],
    targets: tuple[Target, ...],
) -> None:
    run = probe("protocol_allowlist")
    assert_ran(run)
    filtered = [t for t in targets if {80, 443} & set(t.ports)]
    assert [t.name for t in targets if t not in filtered] == ["stun.fbsbx.com"]
    # The allowlist blocks what apps speak their own protocol to (WhatsApp's chat servers,
    # Telegram's data centres); web pages and Facebook's API hosts, reached over TLS (or HTTP),
    # pass it and stay ok.
    apps = [t for t in filtered if t.protocol is Speaks.RAW]
    assert {t.platform for t in apps} == {"whatsapp", "telegram"} and len(apps) == 22
    tls_only = [t for t in filtered if t.kind is TargetKind.TCP and t.protocol is Speaks.TLS]
    assert {t.platform for t in tls_only} == {"facebook"} and len(tls_only) == 6
    assert_meets(run, "protocol_allowlist", Setup.HELPER)
    for target in tls_only:
        (handshake,) = own(run, target, Layer.TLS)
        assert handshake.observation.failure is None and stored(handshake)["sni"] == target.host
    for target in filtered:
        probes = differential(run, target, Layer.TCP, "protocol")
        assert probes and failures(probes) == [("generic_timeout_error", "read")] * len(probes)
    # DNS, TLS and HTTP pass the allowlist: every target's own measurements still work.
    assert_untouched(run, targets)


def test_protocol_allowlist_without_a_helper_is_proved_only_where_the_endpoint_answers_http(
    assert_meets: Callable[[ProbeRun, str, Setup], None],
    probe_default: Callable[[str], ProbeRun],
    targets: tuple[Target, ...],
) -> None:
    # The default config, no helper: Telegram's DCs answer the POST on 80 and 443 and meet
    # silence to other first bytes on the same ports, all six at once: protocol filtering
    # (protocol_filter.group). WhatsApp's chat servers have nothing in the run answering HTTP or
    # TLS on their address: inconclusive (protocol.unproven), never ok. Facebook's TLS endpoints
    # pass the allowlist and stay ok.
    run = probe_default("protocol_allowlist")
    assert_ran(run)
    dcs = [t for t in targets if t.group == "dc"]
    chat = [t for t in targets if t.group == "chat"]
    assert len(dcs) == 6 and len(chat) == 16
    assert_meets(run, "protocol_allowlist", Setup.DEFAULT)
    assert_untouched(run, targets)


@covers("sni_allowlist")
def test_sni_allowlist_without_the_old_harmless_name_is_decided_with_and_without_a_helper(
    assert_meets: Callable[[ProbeRun, str, Setup], None],
    probe: Callable[[str], ProbeRun],
    probe_default: Callable[[str], ProbeRun],
    lab: Lab,
    targets: tuple[Target, ...],
) -> None:
    # Only the control sites' names pass: example.com would be reset as well, so the A/B half
    # takes a control site's name, which demonstrably passed, and the verdicts are decided.
    cut = set(hits(lab.plan, "sni_allowlist"))
    tls_targets = [t for t in targets if t.protocol is Speaks.TLS and t.host in cut]
    assert {t.platform for t in tls_targets} >= {"facebook", "twitter", "youtube", "signal"}
    for setup, run in runs(probe, probe_default, "sni_allowlist"):
        assert_ran(run)
        assert_meets(run, "sni_allowlist", setup)
        for target in tls_targets:
            harmless = differential(run, target, Layer.TLS, "sni")
            assert harmless and {stored(m)["sni"] for m in harmless} <= set(CONTROL_NAMES)
            assert all(stored(m)["certificates"] for m in harmless)
        assert_untouched(run, [t for t in targets if t not in tls_targets])


@covers("endpoint_down")
def test_a_lone_endpoint_down_is_down_with_a_helper_and_inconclusive_without(
    assert_meets: Callable[[ProbeRun, str, Setup], None],
    probe: Callable[[str], ProbeRun],
    probe_default: Callable[[str], ProbeRun],
    lab: Lab,
    targets: tuple[Target, ...],
) -> None:
    # With the default config (no helper) each down endpoint failed alone, its group's others
    # got through: inconclusive (endpoint.lone_failure), never blocked.
    down = on_hosts(targets, hosts_at(lab.plan, targets, hits(lab.plan, "endpoint_down")))
    assert {t.host for t in down} == {"e7.whatsapp.net", "149.154.171.5", "b-graph.facebook.com"}
    with_helper = probe("endpoint_down")
    assert_ran(with_helper)
    assert_meets(with_helper, "endpoint_down", Setup.HELPER)
    shipped = probe_default("endpoint_down")
    assert_ran(shipped)
    assert_meets(shipped, "endpoint_down", Setup.DEFAULT)
    for run in (with_helper, shipped):
        for target in down:
            assert set(failures(own(run, target, Layer.TCP))) == {("connection_refused", "connect")}
        assert not run.blocked()
        assert_untouched(run, [t for t in targets if t not in down])


def test_clean_network_without_a_helper_gives_every_target_ok(
    assert_meets: Callable[[ProbeRun, str, Setup], None],
    probe_alone: Callable[[str], ProbeRun],
    targets: tuple[Target, ...],
) -> None:
    run = probe_alone("clean")
    assert_ran(run)
    assert_meets(run, "clean", Setup.ALONE)
    assert_untouched(run, targets)


# -- everything at once --------------------------------------------------------------------------


@covers("iran_mix")
def test_iran_mix_shows_each_technique_on_its_platform(
    assert_meets: Callable[[ProbeRun, str, Setup], None],
    probe: Callable[[str], ProbeRun],
    lab: Lab,
    targets: tuple[Target, ...],
) -> None:
    run = probe("iran_mix")
    assert_ran(run)
    lied = on_hosts(targets, hits(lab.plan, "iran_mix", "dns_lie"))
    dcs = on_hosts(targets, hits(lab.plan, "iran_mix", "ip_blackhole"))
    reset = on_hosts(targets, hits(lab.plan, "iran_mix", "sni_reset"), (TargetKind.HTTPS,))
    paged = on_hosts(targets, hits(lab.plan, "iran_mix", "http_blockpage"), (TargetKind.HTTP,))
    shaped = on_hosts(targets, hosts_at(lab.plan, targets, hits(lab.plan, "iran_mix", "throttle")))
    assert len(lied) == 4 and len(dcs) == 6 and len(reset) == 8 and len(paged) == 1
    # The media hosts' pages share the shaper with the transfer (expectations.SHAPER_COLLATERAL).
    assert_meets(run, "iran_mix", Setup.HELPER)
    hit = {t for group in (lied, dcs, reset, paged, shaped) for t in group}
    assert_untouched(run, [t for t in targets if t not in hit])


# -- the run's network metadata ------------------------------------------------------------------


def test_the_helper_derived_asn_lands_in_the_runs_metadata(
    probe: Callable[[str], ProbeRun],
) -> None:
    # The helper looks the probe's address up in its own IP-to-ASN file and answers with the
    # network; the probe stores that (never the address) with the run and its verdicts.
    run = probe("clean")
    assert_ran(run)
    assert run.document is not None
    assert run.document["control"] == "Control: the test helper measured the same targets."
    assert run.run is not None
    network = run.run.network
    assert (network.asn, network.as_name, network.country) == (
        LAB_CLIENT_NETWORK["autonomous_system_number"],
        LAB_CLIENT_NETWORK["autonomous_system_organization"],
        "IR",
    )
    assert "helper" in network.source
    # The lab's client has a plain veth uplink, and the helper's network is the probe's own.
    assert network.vpn_suspected is False
    assert all(v.asn == 58224 and v.country == "IR" for v in run.verdicts)
