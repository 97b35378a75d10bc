"""What every lab scenario should give: each target's verdict in each setup (with the control
helper, without one, with the default config), and what the target truly is (censored, clean,
down). One definition, read by the end-to-end tests (assert_expected) and by the scenario x
config matrix (benchmarks/lab_matrix.py: score).

    expectations = expected("sni_reset", Setup.HELPER, lab.plan, targets)
    assert_expected(run.verdicts, expectations, run.explain)
    counts = score(run.verdicts, expectations)  # correct / false_blocked / missed / ...

An expectation accepts one outcome (status, technique, confidence), or several where the lab
cannot make the outcome deterministic (a page sharing a shaper with a bulk transfer). Where the
accepted outcome is not the truth (a censored or down target that can only be inconclusive in
this setup), `limitation` says why: those are the documented limits of the probe, not misses.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from probe.addresses import is_ip
from probe.model import Speaks, Target, TargetKind
from probe.records import Verdict
from tests.lab.plan import AddressPlan
from tests.lab.scenarios import get_scenario

Key = tuple[str, str]  # (platform, target name), as verdicts are keyed
Outcome = tuple[str, str | None, str | None]  # status, technique, confidence

OK: Outcome = ("ok", None, None)
DOWN: Outcome = ("down", None, None)
INCONCLUSIVE: Outcome = ("inconclusive", None, None)


def blocked(technique: str, confidence: str = "anomaly") -> Outcome:
    return ("blocked", technique, confidence)


class Setup(StrEnum):
    """How the probe is configured (tests/lab/e2e.py writes each config)."""

    HELPER = "helper"  # e2e_config with the control helper
    ALONE = "alone"  # e2e_config, no helper
    DEFAULT = "default"  # default_config: the shipped resolvers, no helper

    @property
    def has_helper(self) -> bool:
        return self is Setup.HELPER


class Truth(StrEnum):
    """What the lab did to a target."""

    CENSORED = "censored"
    CLEAN = "clean"
    DOWN = "down"  # down everywhere, or the client's network is (not censorship)


class Score(StrEnum):
    CORRECT = "correct"
    FALSE_BLOCKED = "false_blocked"  # clean or down, called blocked
    MISSED = "missed"  # censored, called ok
    INCONCLUSIVE = "inconclusive"  # inconclusive where a decided verdict was expected
    WRONG = "wrong"  # any other outcome than the accepted ones (another technique, down, ...)
    NO_VERDICT = "no_verdict"  # the run gave the target no verdict


@dataclass(frozen=True, slots=True)
class Expectation:
    """What one target's verdict should be, and what the target truly is."""

    truth: Truth
    accepted: frozenset[Outcome]
    rule_id: str | None = None  # when set, the verdict's rule as well
    limitation: str | None = None  # why an accepted inconclusive verdict is not the truth

    def limited(self, verdict: Verdict) -> bool:
        """The verdict is accepted only as a documented limitation (inconclusive, with a
        reason)."""
        return (
            self.limitation is not None
            and verdict.status.value == "inconclusive"
            and self.accepts(verdict)
        )

    def accepts(self, verdict: Verdict) -> bool:
        if self.rule_id is not None and verdict.rule_id != self.rule_id:
            return False
        return outcome(verdict) in self.accepted


def expect(
    truth: Truth, *accepted: Outcome, rule_id: str | None = None, limitation: str | None = None
) -> Expectation:
    return Expectation(truth, frozenset(accepted), rule_id, limitation)


CLEAN = expect(Truth.CLEAN, OK)

# What a page on a throttled address may come to while a bulk download fills its shaper: the
# page shares the 64 kbit/s queue with the transfer, whose queue holds seconds of data, so it may
# time out at the handshake or the request (or get through). Never a name-based claim: the
# harmless SNI stalls on that address as well.
SHAPER_COLLATERAL = (
    OK,
    blocked("tls.failure"),
    blocked("http.timeout"),
    blocked("throttling"),
)

# The limitations, each with its reason.
NO_CONTROL_LONE = (
    "no control measured it and it failed alone (no group, or its group's other endpoints got "
    "through): a server that is down looks the same, so it is never called blocked"
)
NO_CONTROL_UNPROVEN = (
    "no control measured it and nothing in the run answered HTTP or TLS on its address: the "
    "silence to its own first bytes is not proved the path's"
)
BROKEN_RESOLVER = (
    "the network's resolver fails every name, the control sites' too: a broken resolver is not "
    "a censor choosing names, and DNS cannot be judged on this network"
)
NO_NETWORK = "the client's network is down: nothing can be judged"
SHARED_SHAPER = (
    "the page shares the shaper with the bulk transfer on its address: its handshake and its "
    "harmless-SNI twin stall alike, and no control measured it (the transfer is what shows the "
    "throttling)"
)


def outcome(verdict: Verdict) -> Outcome:
    return (
        verdict.status.value,
        verdict.technique,
        verdict.confidence.value if verdict.confidence else None,
    )


# -- selecting what a scenario hits ----------------------------------------------------------------


def key(target: Target) -> Key:
    return (target.platform, target.name)


def hits(plan: AddressPlan, scenario: str, technique: str | None = None) -> set[str]:
    """What the scenario's techniques (or one of them) hit: names or addresses."""
    found: set[str] = set()
    for name, hit in get_scenario(scenario).hits(plan):
        if technique is None or name == technique:
            found.update(hit)
    return found


def on_hosts(
    targets: Iterable[Target], hosts: Iterable[str], kinds: Iterable[TargetKind] = tuple(TargetKind)
) -> list[Target]:
    """The targets whose host is one of `hosts` (names or address literals), of these kinds."""
    wanted, allowed = set(hosts), set(kinds)
    return [t for t in targets if t.host in wanted and t.kind in allowed]


def hosts_at(plan: AddressPlan, targets: Iterable[Target], addresses: set[str]) -> set[str]:
    """The hosts of `targets` whose honest address is one of `addresses`."""
    return {t.host for t in targets if plan.address_of(t.host) in addresses}


def at_addresses(
    plan: AddressPlan, targets: Sequence[Target], scenario: str, technique: str | None = None
) -> list[Target]:
    """The targets served at the addresses the scenario's (address-based) techniques hit."""
    return on_hosts(targets, hosts_at(plan, targets, hits(plan, scenario, technique)))


# -- the scenarios ---------------------------------------------------------------------------------

Expected = dict[Key, Expectation]
ScenarioRule = Callable[[AddressPlan, Sequence[Target], Setup], Expected]


def _all(found: Iterable[Target], expectation: Expectation) -> Expected:
    return {key(t): expectation for t in found}


def _censored(found: Iterable[Target], *accepted: Outcome, rule_id: str | None = None) -> Expected:
    return _all(found, expect(Truth.CENSORED, *accepted, rule_id=rule_id))


def _nothing(plan: AddressPlan, targets: Sequence[Target], setup: Setup) -> Expected:
    return {}


def _site_down(plan: AddressPlan, targets: Sequence[Target], setup: Setup) -> Expected:
    down = at_addresses(plan, targets, "site_down")
    if setup.has_helper:
        return _all(down, expect(Truth.DOWN, DOWN))
    # Signal's endpoints are in no group: each failure stands alone.
    return _all(down, expect(Truth.DOWN, INCONCLUSIVE, limitation=NO_CONTROL_LONE))


def _dead_uplink(plan: AddressPlan, targets: Sequence[Target], setup: Setup) -> Expected:
    return _all(
        targets,
        expect(Truth.DOWN, INCONCLUSIVE, rule_id="run.no_connectivity", limitation=NO_NETWORK),
    )


def _hit_by(
    outcome_: Outcome, scenario: str, kinds: Iterable[TargetKind] = tuple(TargetKind)
) -> ScenarioRule:
    """A scenario whose hit targets (by name, of these kinds) give `outcome_` in every setup."""
    allowed = tuple(kinds)

    def rule(plan: AddressPlan, targets: Sequence[Target], setup: Setup) -> Expected:
        return _censored(on_hosts(targets, hits(plan, scenario), allowed), outcome_)

    return rule


def _resolver_lie(plan: AddressPlan, targets: Sequence[Target], setup: Setup) -> Expected:
    gone = on_hosts(targets, hits(plan, "resolver_lie", "dns_nxdomain"))
    lied = on_hosts(targets, hits(plan, "resolver_lie", "dns_lie"))
    return _censored(gone, blocked("dns.nxdomain")) | _censored(lied, blocked("dns.inconsistent"))


def _dns_other_site(plan: AddressPlan, targets: Sequence[Target], setup: Setup) -> Expected:
    # The plain-HTTP target has no TLS to tell: its answer only shares nothing with the control's.
    moved = on_hosts(targets, hits(plan, "dns_other_site"))
    secure = [t for t in moved if t.kind is TargetKind.HTTPS]
    plain = [t for t in moved if t.kind is TargetKind.HTTP]
    return _censored(secure, blocked("dns.other_site")) | _censored(
        plain, blocked("dns.inconsistent")
    )


def _resolver_broken(plan: AddressPlan, targets: Sequence[Target], setup: Setup) -> Expected:
    # Address targets (the Telegram DCs) need no resolver: they stay ok.
    named = [t for t in targets if not is_ip(t.host)]
    return _all(
        named,
        expect(
            Truth.CLEAN,
            INCONCLUSIVE,
            rule_id="dns.network_resolver_broken",
            limitation=BROKEN_RESOLVER,
        ),
    )


def _ip_blackhole(plan: AddressPlan, targets: Sequence[Target], setup: Setup) -> Expected:
    # Without a helper, every DC of the group timing out is the evidence (tcp.timeout.group).
    return _censored(on_hosts(targets, hits(plan, "ip_blackhole")), blocked("tcp.timeout"))


def _tcp_reset(plan: AddressPlan, targets: Sequence[Target], setup: Setup) -> Expected:
    reset = at_addresses(plan, targets, "tcp_reset")
    if setup.has_helper:
        return _censored(reset, blocked("tcp.reset"))
    # The chat servers fail as a group; the registration host is in none.
    grouped = [t for t in reset if t.group is not None]
    alone = [t for t in reset if t.group is None]
    return _censored(grouped, blocked("tcp.reset")) | _all(
        alone, expect(Truth.CENSORED, INCONCLUSIVE, limitation=NO_CONTROL_LONE)
    )


def _tls_interception(plan: AddressPlan, targets: Sequence[Target], setup: Setup) -> Expected:
    # Everything that speaks TLS at the redirected addresses: the web page and Facebook's
    # TLS-speaking API hosts; their plain HTTP is untouched.
    intercepted = [
        t for t in at_addresses(plan, targets, "tls_interception") if t.protocol is Speaks.TLS
    ]
    return _censored(intercepted, blocked("tls.interception"))


def _shaped(shaped: Iterable[Target], setup: Setup) -> Expected:
    """A shaped address: its transfer is throttling; its pages may come to SHAPER_COLLATERAL
    (with no helper, inconclusive as well)."""
    page = expect(Truth.CENSORED, *SHAPER_COLLATERAL)
    if not setup.has_helper:
        page = expect(Truth.CENSORED, *SHAPER_COLLATERAL, INCONCLUSIVE, limitation=SHARED_SHAPER)
    return {
        key(t): expect(Truth.CENSORED, blocked("throttling")) if t.transfer else page
        for t in shaped
    }


def _throttle(plan: AddressPlan, targets: Sequence[Target], setup: Setup) -> Expected:
    return _shaped(at_addresses(plan, targets, "throttle"), setup)


def _throttle_small_pages(plan: AddressPlan, targets: Sequence[Target], setup: Setup) -> Expected:
    return _shaped(at_addresses(plan, targets, "throttle_small_pages"), setup)


def _intermittent(plan: AddressPlan, targets: Sequence[Target], setup: Setup) -> Expected:
    return _censored(at_addresses(plan, targets, "intermittent_syn_drop"), blocked("intermittent"))


def _protocol_allowlist(plan: AddressPlan, targets: Sequence[Target], setup: Setup) -> Expected:
    # What apps speak their own protocol to is blocked; web pages and Facebook's API hosts,
    # reached over TLS (or HTTP), pass the allowlist and stay ok.
    apps = [t for t in targets if t.protocol is Speaks.RAW and {80, 443} & set(t.ports)]
    if setup.has_helper:
        return _censored(apps, blocked("protocol_filter"))
    # No helper: Telegram's DCs answer HTTP on the same ports, all six at once (proof in the
    # run); nothing in the run answers HTTP or TLS at WhatsApp's chat servers.
    dcs = [t for t in apps if t.group == "dc"]
    unproven = [t for t in apps if t.group != "dc"]
    return _censored(dcs, blocked("protocol_filter"), rule_id="protocol_filter.group") | _all(
        unproven,
        expect(
            Truth.CENSORED,
            INCONCLUSIVE,
            rule_id="protocol.unproven",
            limitation=NO_CONTROL_UNPROVEN,
        ),
    )


def _sni_allowlist(plan: AddressPlan, targets: Sequence[Target], setup: Setup) -> Expected:
    cut = hits(plan, "sni_allowlist")
    tls = [t for t in targets if t.protocol is Speaks.TLS and t.host in cut]
    return _censored(tls, blocked("tls.sni_reset", "confirmed"))


def _endpoint_down(plan: AddressPlan, targets: Sequence[Target], setup: Setup) -> Expected:
    down = at_addresses(plan, targets, "endpoint_down")
    if setup.has_helper:
        return _all(down, expect(Truth.DOWN, DOWN))
    return _all(
        down,
        expect(
            Truth.DOWN, INCONCLUSIVE, rule_id="endpoint.lone_failure", limitation=NO_CONTROL_LONE
        ),
    )


def _iran_mix(plan: AddressPlan, targets: Sequence[Target], setup: Setup) -> Expected:
    def hit(technique: str, kinds: Iterable[TargetKind] = tuple(TargetKind)) -> list[Target]:
        return on_hosts(targets, hits(plan, "iran_mix", technique), kinds)

    return {
        **_censored(hit("dns_lie"), blocked("dns.blockpage_ip", "confirmed")),
        **_censored(hit("ip_blackhole"), blocked("tcp.timeout")),
        **_censored(hit("sni_reset", (TargetKind.HTTPS,)), blocked("tls.sni_reset", "confirmed")),
        **_censored(
            hit("http_blockpage", (TargetKind.HTTP,)), blocked("http.blockpage", "confirmed")
        ),
        **_shaped(at_addresses(plan, targets, "iran_mix", "throttle"), setup),
    }


SCENARIO_RULES: dict[str, ScenarioRule] = {
    "clean": _nothing,
    "cdn": _nothing,
    "site_down": _site_down,
    "dead_uplink": _dead_uplink,
    "dns_lie": _hit_by(blocked("dns.blockpage_ip", "confirmed"), "dns_lie"),
    "dns_nxdomain": _hit_by(blocked("dns.nxdomain"), "dns_nxdomain"),
    "resolver_lie": _resolver_lie,
    "dns_other_site": _dns_other_site,
    "resolver_broken": _resolver_broken,
    "dns_injection": _hit_by(blocked("dns.injection", "confirmed"), "dns_injection"),
    "dns_drop": _hit_by(blocked("dns.timeout"), "dns_drop"),
    "ip_blackhole": _ip_blackhole,
    "tcp_reset": _tcp_reset,
    "sni_reset": _hit_by(blocked("tls.sni_reset", "confirmed"), "sni_reset", (TargetKind.HTTPS,)),
    "sni_drop": _hit_by(blocked("tls.sni_timeout", "confirmed"), "sni_drop", (TargetKind.HTTPS,)),
    "tls_interception": _tls_interception,
    "http_blockpage": _hit_by(
        blocked("http.blockpage", "confirmed"), "http_blockpage", (TargetKind.HTTP,)
    ),
    "http_reset": _hit_by(blocked("http.reset", "confirmed"), "http_reset", (TargetKind.HTTP,)),
    "intermittent_syn_drop": _intermittent,
    "throttle": _throttle,
    "throttle_small_pages": _throttle_small_pages,
    "protocol_allowlist": _protocol_allowlist,
    "sni_allowlist": _sni_allowlist,
    "endpoint_down": _endpoint_down,
    "iran_mix": _iran_mix,
}


def expected(scenario: str, setup: Setup, plan: AddressPlan, targets: Sequence[Target]) -> Expected:
    """Every target's expectation under the scenario in this setup: the scenario's rule for the
    targets it hits, ok (clean) for every other one."""
    try:
        rule = SCENARIO_RULES[scenario]
    except KeyError:
        raise KeyError(f"no expectations for scenario {scenario!r}") from None
    found = {key(t): CLEAN for t in targets}
    found.update(rule(plan, targets, setup))
    return found


# -- judging a run ---------------------------------------------------------------------------------


def judge(verdict: Verdict | None, expectation: Expectation) -> Score:
    """How one verdict scores against its target's expectation."""
    if verdict is None:
        return Score.NO_VERDICT
    if expectation.accepts(verdict):
        return Score.CORRECT
    status = verdict.status.value
    if status == "blocked" and expectation.truth is not Truth.CENSORED:
        return Score.FALSE_BLOCKED
    if status == "ok" and expectation.truth is Truth.CENSORED:
        return Score.MISSED
    if status == "inconclusive":
        return Score.INCONCLUSIVE
    return Score.WRONG


@dataclass(frozen=True, slots=True)
class Judged:
    key: Key
    score: Score
    verdict: Verdict | None
    expectation: Expectation


def judge_run(verdicts: Iterable[Verdict], expectations: Mapping[Key, Expectation]) -> list[Judged]:
    """Every expected target judged; a verdict for a target nobody expected is WRONG."""
    by_key = {(v.platform, v.target): v for v in verdicts}
    judged = [Judged(k, judge(by_key.get(k), e), by_key.get(k), e) for k, e in expectations.items()]
    unexpected = expect(Truth.CLEAN)  # accepts nothing
    judged += [
        Judged(k, Score.WRONG, v, unexpected) for k, v in by_key.items() if k not in expectations
    ]
    return judged


def score(verdicts: Iterable[Verdict], expectations: Mapping[Key, Expectation]) -> Counter[Score]:
    """How many verdicts of the run score each way."""
    return Counter(j.score for j in judge_run(verdicts, expectations))


def describe(judged: Judged) -> str:
    v = judged.verdict
    got = "no verdict" if v is None else f"{outcome(v)} ({v.rule_id}: {v.detail})"
    want = sorted(judged.expectation.accepted, key=str)
    rule = f" rule {judged.expectation.rule_id}" if judged.expectation.rule_id else ""
    return f"{judged.key[0]} {judged.key[1]}: {judged.score.value}: got {got}; want {want}{rule}"


def assert_expected(
    verdicts: Iterable[Verdict],
    expectations: Mapping[Key, Expectation],
    explain: Callable[[str | None], str] = lambda target: "",
) -> None:
    """Every target's verdict is one its expectation accepts, and no verdict is unexpected."""
    wrong = [j for j in judge_run(verdicts, expectations) if j.score is not Score.CORRECT]
    assert not wrong, "\n".join(describe(j) for j in wrong) + "\n" + explain(wrong[0].key[1])
