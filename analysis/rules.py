"""The verdict rules, as data: an ordered table of frozen Rules over the Facts of one target in one
run. The first rule whose condition holds decides the verdict (ooni/data's shape).

Rule ids are never renamed or reused: verdicts store the id and RULES_VERSION, so a verdict can
always be traced to the rule text that produced it. Change a rule's meaning -> bump RULES_VERSION;
retire a rule -> delete it, never give its id to another.

The order encodes the field's rules (OONI Web Connectivity, https://github.com/ooni/spec/blob/master/nettests/ts-017-web-connectivity.md):
  1. a dead network, a VPN, or no measurement -> inconclusive, before anything else;
  2. evidence that is its own control -> blocked, confirmed: a blockpage fingerprint (DNS answer,
     page), A/B differentials (the same address completes with a harmless SNI or Host but fails
     with the target's), DNS injection matching a fingerprint;
  3. layer by layer, DNS, TCP, TLS, HTTP: failing at the control too -> down; failing here but
     not at the control -> blocked, anomaly; the known false positives are placed where their
     layer is judged, so they never hide another layer's evidence (IPv6 broken everywhere in
     the run before TCP; captcha pages before HTTP); then throttling and the protocol allowlist;
  4. reached -> ok; anything else -> inconclusive (no control, or nothing rule-shaped).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from probe.model import Connectivity, Failure, Operation
from probe.records import Confidence, Status

# 2026.12: probe.stalled (a decisive timeout measured across a stall of the probe itself is
# inconclusive). 2025.11: the table of 2025.10; the facts read OONI's legacy failure strings as
# today's (probe.model.current_failure), so an imported legacy document's verdicts may differ.
RULES_VERSION = "2026.12"

# Failure families (OONI df-007 strings).
TIMEOUT = str(Failure.GENERIC_TIMEOUT_ERROR)
# A TLS handshake or HTTP exchange cut by the path: an RST, or a close before any answer. Both are
# what SNI / Host filtering looks like (the TLS check's docstring; OONI, https://ooni.org/post/2020-iran-sni-blocking/).
INTERRUPTED = frozenset(
    {str(Failure.CONNECTION_RESET), str(Failure.CONNECTION_ABORTED), str(Failure.EOF_ERROR)}
)
# A connect answered by a RST: refused is a RST to the SYN, which a censor can forge as well.
TCP_RESET = frozenset(
    {
        str(Failure.CONNECTION_RESET),
        str(Failure.CONNECTION_REFUSED),
        str(Failure.CONNECTION_ABORTED),
    }
)
UNREACHABLE = frozenset({str(Failure.HOST_UNREACHABLE), str(Failure.NETWORK_UNREACHABLE)})
# What proves a protocol probe's silence is the path's: the helper's probe to the same endpoint
# was answered, or (no helper) the same address and port answered HTTP or TLS in the run.
PROOF_CONTROL = "control"
PROOF_RUN = "run"
# The id of the rule whose verdicts say the network's own resolver failed for the control sites
# too (the run summary names it once: probe/cli/render.py). The table below spells ids as
# literals (the rules snapshot reads them from the source).
NETWORK_RESOLVER_BROKEN = "dns.network_resolver_broken"
# A certificate signed by an authority the trust store does not know (a self-signed server, or a
# middlebox's own CA).
UNKNOWN_AUTHORITY = str(Failure.SSL_UNKNOWN_AUTHORITY)
# Without a helper, an unknown authority is an interception CA when it signed the rejected
# certificates of at least this many names, at as many addresses, in one run.
INTERCEPTION_MIN_NAMES = 2
CERTIFICATE_FAILURES = frozenset(
    {
        str(Failure.SSL_INVALID_HOSTNAME),
        str(Failure.SSL_UNKNOWN_AUTHORITY),
        str(Failure.SSL_INVALID_CERTIFICATE),
    }
)


class Evidence(StrEnum):
    """Groups of measurement ids a rule cites as its evidence."""

    ALL = "all"  # every measurement of the target
    DNS = "dns"  # the probe's own resolvers
    DNS_CONTROL = "dns_control"  # the run's control resolvers (DoH)
    TCP = "tcp"
    TLS = "tls"
    HTTP = "http"
    DIFFERENTIAL = "differential"  # both sides of an A/B differential
    PROBE = "probe"  # protocol probes (random first data)
    CONTROL_SITES = "control_sites"  # the run's control sites' downloads (throttling)


def _frozen_evidence() -> Mapping[Evidence, tuple[str, ...]]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Facts:
    """What one target's measurements in one run, and the controls, amount to.

    `None` in a control_* field means no control measured it; False means the control tried and
    failed too. A `*_failure` field is set only when every attempt at that layer failed.
    """

    platform: str
    target: str
    host: str | None = None
    measured: bool = True
    # The run.
    connectivity: Connectivity = Connectivity.UNKNOWN
    vpn_suspected: bool = False
    ipv6_broken: bool = False
    # DNS, the probe's own resolvers.
    dns_addresses: tuple[str, ...] = ()
    dns_failure: str | None = None
    dns_fingerprints: tuple[str, ...] = ()  # fingerprint ids hit by answers the control lacks
    dns_bogons: tuple[str, ...] = ()  # bogon answers the control did not give
    dns_injection: bool = False  # a forged first UDP answer raced a different later one
    dns_injection_fingerprints: tuple[str, ...] = ()
    dns_consistent: bool | None = None  # shares an IP/ASN with the control or passed valid TLS
    validated_addresses: tuple[str, ...] = ()  # completed a valid TLS handshake for the host
    control_addresses: tuple[str, ...] = ()
    control_dns_ok: bool | None = None
    # The network resolver's answer is another real site's address (TLS to it presented a
    # certificate for another name while the control's address validated for this one).
    dns_other_site: bool = False
    # The network's resolver gave no address for any of the run's control sites: broken, not
    # censoring; its failures are no DNS verdict.
    network_dns_broken: bool = False
    # IP-level reachability of the name's true address (the attempts to addresses only a
    # control resolver gave; every attempt when the network's resolver gave none): what a user
    # who changed resolver gets. None: not measured.
    ip_reachable: bool | None = None
    # TCP (IPv6 failures masked when IPv6 is broken everywhere in the run).
    tcp_attempted: bool = False
    tcp_ok: bool = False
    tcp_failure: str | None = None
    ipv6_masked: int = 0
    control_tcp_ok: bool | None = None
    # The connects' steadiness (each endpoint is connected twice a run): how many attempts
    # there were, how many failed where another attempt to the same endpoint connected
    # (uneven), how many took a SYN retransmission (slow, 1-4 s); and the run's control sites':
    # whether they connected in milliseconds every time (fast), and their slowest connect (ms).
    tcp_connects: int = 0
    tcp_connects_uneven: int = 0
    tcp_connects_slow: int = 0
    control_connects_fast: bool = False
    control_connect_ms: float | None = None
    # TLS.
    tls_attempted: bool = False
    tls_ok: bool = False
    tls_failure: str | None = None
    tls_failed_operation: str | None = None
    tls_cert_failure: str | None = None  # handshake completed, certificate rejected
    tls_issuer: str | None = None  # leaf issuer of the rejected certificate
    sni_differential: bool = False
    # The harmless-SNI half of the A/B test was cut as well: the failure is not about the name.
    sni_differential_failed: bool = False
    control_tls_ok: bool | None = None
    control_tls_issuer: str | None = None
    # The names, and their addresses, whose handshakes in this run were rejected for a certificate
    # from this target's untrusted issuer (itself included); 0 when its certificate was not one.
    tls_issuer_names: int = 0
    tls_issuer_addresses: int = 0
    # Every handshake of the run's control sites validated (some did): the trust store and the
    # clock work, and nothing intercepts everything.
    control_sites_tls_valid: bool = False
    # HTTP.
    http_attempted: bool = False
    http_ok: bool = False
    http_status: int | None = None
    http_failure: str | None = None
    http_failed_operation: str | None = None
    http_plain: bool = False  # the response came over plain HTTP, where a path can forge it
    http_fingerprints: tuple[str, ...] = ()
    http_captcha: tuple[str, ...] = ()
    http_matches_control: bool | None = None
    http_comparison: str = ""
    host_differential: bool = False
    control_http_ok: bool | None = None
    # Throughput (kbit/s).
    throughput_kbps: float | None = None
    control_kbps: float | None = None  # the reference rate (see the throttling rule)
    throttled: bool = False
    # A transfer's time to first byte (ms) against the control sites' transfers'.
    ttfb_ms: float | None = None
    control_ttfb_ms: float | None = None
    first_byte_delayed: bool = False
    # The protocol allowlist: a flow of non-HTTP/TLS first bytes met silence that no control's
    # flow met as well (silent), and what proves it the path's (PROOF_CONTROL, PROOF_RUN).
    protocol_filtered: bool = False  # proved, either way
    protocol_silent: bool = False
    protocol_proof: str | None = None
    # What the endpoint's own traffic is (raw, tls, http), as its protocol probes recorded the
    # catalog's word; None for records made before the catalog said.
    speaks: str | None = None
    # The endpoint's catalog group (Telegram's DCs, WhatsApp's chat servers): True when every
    # member failed in this run in a way shaped like censorship (failed_like_censorship), False
    # when one did not, None for an endpoint in no group (or a run whose groups are unknown).
    group_failed: bool | None = None
    # The target's layers measured while the probe itself was stalled (probe.stall), and the
    # longest such stall (ms): what those layers timed is the probe's, not the network's.
    stalled_layers: tuple[str, ...] = ()
    stall_ms: float | None = None
    evidence: Mapping[Evidence, tuple[str, ...]] = field(default_factory=_frozen_evidence)

    @property
    def reached(self) -> bool:
        """The target's deepest measured layer succeeded at least once."""
        if self.http_attempted:
            return self.http_ok
        if self.tls_attempted:
            return self.tls_ok
        if self.tcp_attempted:
            return self.tcp_ok
        # Resolving only: the answer is all there is, so it must not disagree with the control.
        return bool(self.dns_addresses) and self.dns_consistent is not False

    @property
    def reachability(self) -> str:
        """What a DNS verdict's detail adds about the true address (empty: not measured)."""
        if self.ip_reachable is None:
            return ""
        if self.ip_reachable:
            return "; the control's address is reachable (a changed resolver gets through)"
        return "; the control's address is not reachable either"

    @property
    def stalled_text(self) -> str:
        """The stalled layers for a verdict's detail ("DNS and TLS")."""
        names = [layer.upper() for layer in self.stalled_layers]
        return " and ".join(names)

    @property
    def connect_rate(self) -> str:
        """The share of connects interfered with (slow or uneven), for a verdict's detail."""
        interfered = self.tcp_connects_uneven + self.tcp_connects_slow
        share = interfered / self.tcp_connects if self.tcp_connects else 0.0
        return f"{interfered} of {self.tcp_connects} connects ({share:.0%})"

    @property
    def has_control(self) -> bool:
        return any(
            c is not None
            for c in (
                self.control_dns_ok,
                self.control_tcp_ok,
                self.control_tls_ok,
                self.control_http_ok,
            )
        )

    def ids(self, groups: Iterable[Evidence]) -> tuple[str, ...]:
        """The measurement ids of `groups`, each once, in order."""
        found: dict[str, None] = {}
        for group in groups:
            found.update(dict.fromkeys(self.evidence.get(group, ())))
        return tuple(found)


@dataclass(frozen=True, slots=True)
class Outcome:
    status: Status
    technique: str | None = None
    confidence: Confidence | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    """One verdict rule. `detail` is a str.format template over the facts (`{f.<field>}`) that
    becomes the verdict's human-readable detail; `evidence` names the measurement groups cited."""

    rule_id: str
    condition: Callable[[Facts], bool]
    outcome: Outcome
    comment: str
    detail: str = ""
    evidence: tuple[Evidence, ...] = (Evidence.ALL,)

    def describe(self, facts: Facts) -> str:
        return self.detail.format(f=facts) if self.detail else self.comment


OK = Outcome(Status.OK)
DOWN = Outcome(Status.DOWN)
INCONCLUSIVE = Outcome(Status.INCONCLUSIVE)


def _blocked(technique: str, confidence: Confidence = Confidence.ANOMALY) -> Outcome:
    return Outcome(Status.BLOCKED, technique, confidence)


def _confirmed(technique: str) -> Outcome:
    return _blocked(technique, Confidence.CONFIRMED)


_DNS = (Evidence.DNS, Evidence.DNS_CONTROL)
_TLS_AB = (Evidence.TLS, Evidence.DIFFERENTIAL)
_HTTP_AB = (Evidence.HTTP, Evidence.DIFFERENTIAL)
_HANDSHAKE = str(Operation.TLS_HANDSHAKE)


def _dns_failed(failure: Failure) -> Callable[[Facts], bool]:
    return lambda f: (
        f.dns_failure == failure and f.control_dns_ok is True and not f.network_dns_broken
    )


def _app_endpoint(f: Facts) -> bool:
    """An endpoint an app speaks its own protocol to, as the catalog says (`speaks = "raw"`:
    WhatsApp's chat servers, Telegram's data centres). One that speaks TLS (Facebook's API hosts,
    every web page) or HTTP is what a protocol allowlist lets through. Records made before the
    catalog said: measured by TCP alone, or an address literal probed with plain HTTP."""
    if f.speaks is not None:
        return f.speaks == "raw"
    if f.tls_attempted:
        return False
    if not f.http_attempted:
        return True
    try:
        ipaddress.ip_address(f.host or "")
    except ValueError:
        return False
    return True


def failed_like_censorship(f: Facts) -> bool:
    """The endpoint failed the way censorship fails, whether or not a control measured it: every
    connect timed out (null-routing) or was answered by a RST, or, on an endpoint the app speaks
    its own protocol to, its kind of bytes met silence where the same address and port answered
    HTTP or TLS. What a group failing together is made of (see _group_failed)."""
    if f.tcp_failure == TIMEOUT or f.tcp_failure in TCP_RESET:
        return True
    return f.protocol_proof == PROOF_RUN and _app_endpoint(f)


# Intermittent interference: at least this many of a target's connects, and at least this share
# of them, were slow (a SYN retransmission) or failed where another attempt connected. A lossy
# link drops a SYN now and then on any name (one in a hundred is ordinary Wi-Fi loss), so one
# slow connect is no evidence; the run's control sites connecting in milliseconds every time
# rules out a slow network.
INTERMITTENT_MIN_CONNECTS = 2
INTERMITTENT_MIN_SHARE = 0.25


def intermittent(f: Facts) -> bool:
    """The target's connects were interfered with in part (see INTERMITTENT_MIN_*) while the
    run's control sites connected in milliseconds, every time."""
    interfered = f.tcp_connects_uneven + f.tcp_connects_slow
    return (
        f.control_connects_fast
        and interfered >= INTERMITTENT_MIN_CONNECTS
        and interfered >= INTERMITTENT_MIN_SHARE * f.tcp_connects
    )


def stall_explains(f: Facts) -> bool:
    """What would decide the target's verdict was timed across a stall of the probe itself: a
    layer that failed with a timeout, a slow download or first byte, unsteady connects, or a
    silent flow, measured while the probe's event loop did not run. The reply may well have
    been waiting in the socket buffer when the expired timer won (probe.stall)."""
    stalled = f.stalled_layers
    if not stalled:
        return False
    failures = {
        "dns": f.dns_failure,
        "tcp": f.tcp_failure,
        "tls": f.tls_failure,
        "http": f.http_failure,
    }
    if any(failures.get(layer) == TIMEOUT for layer in stalled):
        return True
    if "http" in stalled and (f.throttled or f.first_byte_delayed):
        return True
    if "tcp" in stalled and f.reached and intermittent(f):
        return True
    return "protocol" in stalled and not f.reached and (f.protocol_silent or f.protocol_filtered)


def _group_failed(f: Facts) -> bool:
    """Every endpoint of the target's catalog group failed like censorship in a run whose control
    sites were reached: OONI's IM tests judge the group, not one endpoint (ooni/spec
    nettests/ts-020-telegram.md: TCP blocking only when every DC fails), so a lone endpoint
    down is never read as blocking."""
    return f.group_failed is True and f.connectivity is Connectivity.OK


RULES: tuple[Rule, ...] = (
    # 1. Nothing can be called blocked.
    Rule(
        "run.no_connectivity",
        lambda f: f.connectivity is Connectivity.NONE,
        INCONCLUSIVE,
        "The run's control sites were unreachable: the network was down, so no failure in the"
        " run says anything about censorship.",
    ),
    Rule(
        "run.vpn",
        lambda f: f.vpn_suspected,
        INCONCLUSIVE,
        "Measured through a VPN: the results are the VPN's network, not the local one.",
    ),
    Rule(
        "target.not_measured",
        lambda f: not f.measured,
        INCONCLUSIVE,
        "No measurement of this target was recorded in the run (cancelled or interrupted).",
    ),
    # 2. Evidence that is its own control: confirmed.
    Rule(
        "dns.injection.fingerprint",
        lambda f: f.dns_injection and bool(f.dns_injection_fingerprints),
        _confirmed("dns.injection"),
        "Two answers to one UDP query, one a known censor's address, usually the first"
        " (ICLab Centinel's second-answer test, github.com/iclab/centinel).",
        "a forged DNS answer ({f.dns_injection_fingerprints}) raced the real one",
        _DNS,
    ),
    Rule(
        "dns.blockpage_ip",
        lambda f: bool(f.dns_fingerprints),
        _confirmed("dns.blockpage_ip"),
        "The resolver answered a censor's blockpage address (a DNS fingerprint).",
        "DNS answered {f.dns_addresses}, matching {f.dns_fingerprints}",
        _DNS,
    ),
    Rule(
        "http.blockpage",
        lambda f: bool(f.http_fingerprints),
        _confirmed("http.blockpage"),
        "The HTTP response carries a known blockpage fingerprint.",
        "HTTP {f.http_status} response matched {f.http_fingerprints}",
        (Evidence.HTTP,),
    ),
    # 2b. Timed across the probe's own stall: nothing that timing shows is the network's. After
    # the fingerprints (content, which a stall cannot forge), before the A/B tests (one side of
    # which may have been the stalled one).
    Rule(
        "probe.stalled",
        stall_explains,
        INCONCLUSIVE,
        "A timeout (or a slow download, unsteady connects, a silent flow) that decides this"
        " target was measured while the probe itself was stalled: its event loop did not run"
        " (an overloaded or paused machine), and a reply waiting in the socket buffer loses to"
        " the expired timer. The network may be fine; measure again.",
        "the {f.stalled_text} measurements overlapped a {f.stall_ms} ms stall of the probe"
        " itself (an overloaded or paused machine): their timeouts are the probe's, not the"
        " network's",
    ),
    Rule(
        "tls.sni_reset.differential",
        lambda f: f.sni_differential and f.tls_failure in INTERRUPTED,
        _confirmed("tls.sni_reset"),
        "The handshake with the target's SNI was cut while a handshake to the same address with"
        " a harmless SNI completed: SNI filtering (ooni.org/post/2020-iran-sni-blocking).",
        "TLS with SNI {f.host} failed ({f.tls_failure}); a harmless SNI to the same address"
        " completed",
        _TLS_AB,
    ),
    Rule(
        "tls.sni_timeout.differential",
        lambda f: f.sni_differential and f.tls_failure == TIMEOUT,
        _confirmed("tls.sni_timeout"),
        "The handshake with the target's SNI stalled while one with a harmless SNI to the same"
        " address completed: SNI filtering by dropping.",
        "TLS with SNI {f.host} timed out; a harmless SNI to the same address completed",
        _TLS_AB,
    ),
    Rule(
        "http.reset.differential",
        lambda f: f.host_differential and f.http_failure in INTERRUPTED,
        _confirmed("http.reset"),
        "The request with the target's Host was cut while one to the same address with a"
        " harmless Host was answered: Host-header filtering.",
        "HTTP with Host {f.host} failed ({f.http_failure}); a harmless Host to the same address"
        " was answered",
        _HTTP_AB,
    ),
    Rule(
        "http.timeout.differential",
        lambda f: f.host_differential and f.http_failure == TIMEOUT,
        _confirmed("http.timeout"),
        "The request with the target's Host stalled while one with a harmless Host to the same"
        " address was answered.",
        "HTTP with Host {f.host} timed out; a harmless Host to the same address was answered",
        _HTTP_AB,
    ),
    Rule(
        "dns.injection",
        lambda f: f.dns_injection,
        _blocked("dns.injection"),
        "Two different answers to one UDP query, one forged: a bogon (first or later), or a first"
        " answer not matching the control while a later one does.",
        "a forged DNS answer raced the real one (answers {f.dns_addresses})",
        _DNS,
    ),
    # 3. Failing at the control too (DNS), then failing here only, layer by layer; the known
    # false positives sit where their layer is judged.
    Rule(
        "dns.down",
        lambda f: f.control_dns_ok is False and not f.reached,
        DOWN,
        "The control resolvers fail for this name too: it does not resolve anywhere.",
        "the name does not resolve at the control either",
        _DNS,
    ),
    Rule(
        "dns.bogon",
        lambda f: bool(f.dns_bogons) and f.control_dns_ok is True,
        _blocked("dns.bogon"),
        "The resolver answered a non-routable address the control did not give (OONI Web"
        " Connectivity: a bogon answer is DNS blocking, ooni/spec ts-017).",
        "DNS answered bogon(s) {f.dns_bogons}; the control answered {f.control_addresses}"
        "{f.reachability}",
        _DNS,
    ),
    Rule(
        "dns.nxdomain",
        _dns_failed(Failure.DNS_NXDOMAIN_ERROR),
        _blocked("dns.nxdomain"),
        "The resolver says the name does not exist while the control resolves it.",
        "the network's resolver says NXDOMAIN; the control answered {f.control_addresses}"
        "{f.reachability}",
        _DNS,
    ),
    Rule(
        "dns.timeout",
        _dns_failed(Failure.GENERIC_TIMEOUT_ERROR),
        _blocked("dns.timeout"),
        "The resolver never answered for this name while the control resolves it.",
        "DNS timed out here; the control answered {f.control_addresses}{f.reachability}",
        _DNS,
    ),
    Rule(
        "dns.servfail",
        _dns_failed(Failure.DNS_SERVFAIL_ERROR),
        _blocked("dns.servfail"),
        "The resolver answers SERVFAIL for this name while the control resolves it.",
        "SERVFAIL here; the control answered {f.control_addresses}{f.reachability}",
        _DNS,
    ),
    Rule(
        "dns.refused",
        _dns_failed(Failure.DNS_REFUSED_ERROR),
        _blocked("dns.refused"),
        "The resolver refuses this name while the control resolves it.",
        "REFUSED here; the control answered {f.control_addresses}{f.reachability}",
        _DNS,
    ),
    Rule(
        "dns.no_answer",
        _dns_failed(Failure.DNS_NO_ANSWER),
        _blocked("dns.no_answer"),
        "The resolver answers with no address while the control resolves the name.",
        "no address here; the control answered {f.control_addresses}{f.reachability}",
        _DNS,
    ),
    Rule(
        "dns.failure",
        lambda f: (
            f.dns_failure is not None and f.control_dns_ok is True and not f.network_dns_broken
        ),
        _blocked("dns.failure"),
        "The resolver fails for this name in another way while the control resolves it.",
        "DNS failed here ({f.dns_failure}); the control answered {f.control_addresses}"
        "{f.reachability}",
        _DNS,
    ),
    Rule(
        "dns.other_site",
        lambda f: f.dns_other_site and f.dns_consistent is False,
        _blocked("dns.other_site"),
        "The network's resolver answered another real site's address: TLS to it presents a"
        " certificate for another name, while the control's address completes a valid handshake"
        " for this one (DNS tampering that points at someone else's server; an answer is"
        " consistent only when it shares an address or ASN with the control or TLS validates it,"
        " ooni/spec ts-017 and OONI's DNS consistency check).",
        "DNS answered {f.dns_addresses}, a server with a certificate for another name; the"
        " control answered {f.control_addresses}, which validates{f.reachability}",
        (Evidence.DNS, Evidence.DNS_CONTROL, Evidence.TLS),
    ),
    Rule(
        "dns.inconsistent",
        lambda f: f.dns_consistent is False and not f.reached,
        _blocked("dns.inconsistent"),
        "The answers share no address (or ASN) with the control's, none completed a valid TLS"
        " handshake, and the target was not reached through them.",
        "DNS answered {f.dns_addresses}; the control answered {f.control_addresses}"
        "{f.reachability}",
        (Evidence.DNS, Evidence.DNS_CONTROL, Evidence.TCP, Evidence.TLS, Evidence.HTTP),
    ),
    Rule(
        "ipv6.broken",
        lambda f: f.ipv6_masked > 0 and not f.tcp_attempted,
        INCONCLUSIVE,
        "Only IPv6 attempts, and IPv6 fails with host/network unreachable everywhere in this run:"
        " the probe's LAN has no IPv6, which is not censorship.",
        "only IPv6 addresses were tried and IPv6 is broken on this network",
        (Evidence.TCP, Evidence.TLS),
    ),
    Rule(
        "tcp.down",
        lambda f: f.tcp_failure is not None and f.control_tcp_ok is False,
        DOWN,
        "Every connect failed, at the control too.",
        "every connect failed ({f.tcp_failure}), at the control too",
        (Evidence.TCP,),
    ),
    Rule(
        "tcp.reset",
        lambda f: f.tcp_failure in TCP_RESET and f.control_tcp_ok is True,
        _blocked("tcp.reset"),
        "Every connect was answered with a RST while the control connects.",
        "every connect failed ({f.tcp_failure}); the control connects",
        (Evidence.TCP,),
    ),
    Rule(
        "tcp.timeout",
        lambda f: f.tcp_failure == TIMEOUT and f.control_tcp_ok is True,
        _blocked("tcp.timeout"),
        "Every connect timed out while the control connects: IP null-routing (Telegram in"
        " Iran, ooni.org/post/2018-iran-protests).",
        "every connect timed out; the control connects",
        (Evidence.TCP,),
    ),
    Rule(
        "tcp.failure",
        lambda f: f.tcp_failure is not None and f.control_tcp_ok is True,
        _blocked("tcp.failure"),
        "Every connect failed in another way (e.g. unreachable) while the control connects.",
        "every connect failed ({f.tcp_failure}); the control connects",
        (Evidence.TCP,),
    ),
    Rule(
        "tcp.timeout.group",
        lambda f: f.tcp_failure == TIMEOUT and f.control_tcp_ok is None and _group_failed(f),
        _blocked("tcp.timeout"),
        "No control measured it, but every connect timed out and so did every endpoint of its"
        " group, while the run's control sites were reached: the group is null-routed (OONI's"
        " telegram test calls TCP blocking when every DC fails).",
        "every connect timed out, as at every other endpoint of its group; no control measured it",
        (Evidence.TCP,),
    ),
    Rule(
        "tcp.reset.group",
        lambda f: f.tcp_failure in TCP_RESET and f.control_tcp_ok is None and _group_failed(f),
        _blocked("tcp.reset"),
        "No control measured it, but every connect was answered with a RST and every endpoint of"
        " its group failed too, while the run's control sites were reached (OONI's whatsapp test"
        " calls the endpoints blocked when all of them fail).",
        "every connect failed ({f.tcp_failure}), as at every other endpoint of its group; no"
        " control measured it",
        (Evidence.TCP,),
    ),
    Rule(
        "tls.down",
        lambda f: f.tls_failure is not None and f.control_tls_ok is False,
        DOWN,
        "Every handshake failed, at the control too (the site or its certificate is broken).",
        "every TLS handshake failed ({f.tls_failure}), at the control too",
        (Evidence.TLS,),
    ),
    Rule(
        "tls.interception",
        lambda f: (
            f.tls_cert_failure is not None
            and f.control_tls_ok is True
            and f.tls_issuer != f.control_tls_issuer
        ),
        _blocked("tls.interception"),
        "The certificate does not verify and its issuer differs from the one the control saw:"
        " a middlebox presented its own certificate.",
        "certificate rejected ({f.tls_cert_failure}), issued by {f.tls_issuer!r}; the control saw"
        " {f.control_tls_issuer!r}",
        (Evidence.TLS,),
    ),
    Rule(
        "tls.interception.shared_issuer",
        lambda f: (
            f.tls_cert_failure == UNKNOWN_AUTHORITY
            and f.control_tls_ok is None
            and f.tls_issuer_names >= INTERCEPTION_MIN_NAMES
            and f.tls_issuer_addresses >= INTERCEPTION_MIN_NAMES
            and f.control_sites_tls_valid
            and f.connectivity is Connectivity.OK
        ),
        _blocked("tls.interception"),
        "No control measured it, but its certificate comes from an authority the trust store does"
        " not know, the same one that signed the rejected certificates of other names at other"
        " addresses in this run, while every handshake of the run's control sites validated: one"
        " unknown CA issuing for several sites is a middlebox's interception CA (Kazakhstan's fake"
        " root CA was presented for Facebook, Twitter, Google and others, chosen by SNI: Censored"
        " Planet, https://censoredplanet.org/kazakhstan). A lone site with a self-signed"
        " certificate fails alone and stays inconclusive.",
        "certificate rejected ({f.tls_cert_failure}), issued by {f.tls_issuer!r}, which signed the"
        " rejected certificates of {f.tls_issuer_names} names at {f.tls_issuer_addresses}"
        " addresses in this run; the run's control sites' certificates validated; no control"
        " measured it",
        (Evidence.TLS,),
    ),
    Rule(
        "tls.sni_reset",
        lambda f: (
            f.tls_failure in INTERRUPTED
            and f.tls_failed_operation == _HANDSHAKE
            and f.control_tls_ok is True
            and not f.sni_differential_failed
        ),
        _blocked("tls.sni_reset"),
        "Every handshake was cut after the ClientHello while the control completes it (and no"
        " harmless SNI to the same address was cut too, which would clear the name).",
        "every TLS handshake was cut ({f.tls_failure}); the control completes it",
        (Evidence.TLS,),
    ),
    Rule(
        "tls.sni_timeout",
        lambda f: (
            f.tls_failure == TIMEOUT
            and f.tls_failed_operation == _HANDSHAKE
            and f.control_tls_ok is True
            and not f.sni_differential_failed
        ),
        _blocked("tls.sni_timeout"),
        "Every handshake stalled after the ClientHello while the control completes it (and no"
        " harmless SNI to the same address stalled too, which would clear the name).",
        "every TLS handshake timed out; the control completes it",
        (Evidence.TLS,),
    ),
    Rule(
        "tls.failure",
        lambda f: (
            f.tls_failure is not None and f.tls_cert_failure is None and f.control_tls_ok is True
        ),
        _blocked("tls.failure"),
        "Every handshake failed in another way, or a harmless SNI to the same address failed"
        " as well (the address, not the name, is blocked or degraded, e.g. throttled), while the"
        " control completes it. (A certificate"
        " from the control's own issuer that does not verify is the probe's trust store or clock,"
        " not the path: left inconclusive.)",
        "every TLS handshake failed ({f.tls_failure}); the control completes it",
        (Evidence.TLS,),
    ),
    Rule(
        "http.captcha",
        lambda f: bool(f.http_captcha),
        OK,
        "A captcha page (Cloudflare's bot check) is the server answering, not a censor.",
        "the server answered with a captcha ({f.http_captcha})",
        (Evidence.HTTP,),
    ),
    Rule(
        "http.down",
        lambda f: f.http_failure is not None and f.control_http_ok is False,
        DOWN,
        "The request fails at the control too.",
        "HTTP failed ({f.http_failure}), at the control too",
        (Evidence.HTTP,),
    ),
    Rule(
        "throttling",
        lambda f: f.throttled,
        _blocked("throttling"),
        "The download ran ten times slower or worse than the control (the run's control sites'"
        " long downloads, else the helper's download of the same resource) while the control was"
        " fast and the download was not (OONI targets 'extreme' throttling, 10x;"
        " ooni/probe-cli docs/design/dd-007-throttling.md).",
        "{f.throughput_kbps} kbit/s here; the control ran at {f.control_kbps} kbit/s",
        (Evidence.HTTP, Evidence.CONTROL_SITES),
    ),
    Rule(
        "throttling.first_byte",
        lambda f: f.first_byte_delayed,
        _blocked("throttling"),
        "A transfer's first byte came ten times later than the control sites' transfers' (and"
        " seconds later) while the helper's request for it, if any, was answered promptly: the"
        " path holds the response back (a shaper queueing it, or a response slowed by its name),"
        " which the goodput alone misses when little of the transfer arrives at all.",
        "first byte after {f.ttfb_ms} ms here; the control transfers' after {f.control_ttfb_ms} ms",
        (Evidence.HTTP, Evidence.CONTROL_SITES),
    ),
    Rule(
        "http.reset",
        lambda f: f.http_failure in INTERRUPTED and f.control_http_ok is True,
        _blocked("http.reset"),
        "The request was cut while the control gets a response.",
        "HTTP failed ({f.http_failure}); the control gets a response",
        (Evidence.HTTP,),
    ),
    Rule(
        "http.timeout",
        lambda f: f.http_failure == TIMEOUT and f.control_http_ok is True,
        _blocked("http.timeout"),
        "The request stalled while the control gets a response.",
        "HTTP timed out ({f.http_failed_operation}); the control gets a response",
        (Evidence.HTTP,),
    ),
    Rule(
        "http.failure",
        lambda f: f.http_failure is not None and f.control_http_ok is True,
        _blocked("http.failure"),
        "The request failed in another way while the control gets a response.",
        "HTTP failed ({f.http_failure}); the control gets a response",
        (Evidence.HTTP,),
    ),
    Rule(
        "http.diff",
        lambda f: f.http_ok and f.http_plain and f.http_matches_control is False,
        _blocked("http.diff"),
        "A plain-HTTP page unlike the control's (status, body length within 0.7, uncommon header"
        " names, title words): possibly an unknown blockpage. Over verified HTTPS a different"
        " page is the server's own and never counts.",
        "the page differs from the control's: {f.http_comparison}",
        (Evidence.HTTP,),
    ),
    Rule(
        "protocol_filter",
        lambda f: f.protocol_proof == PROOF_CONTROL and _app_endpoint(f),
        _blocked("protocol_filter"),
        "A flow whose first data was neither HTTP nor TLS got no answer where the control's did,"
        " on an endpoint that accepts HTTP/TLS: a protocol allowlist (Iran 2020-; Bock et al.,"
        " FOCI 2020)."
        " It blocks the endpoints apps speak their own protocols to (WhatsApp's chat servers,"
        " Telegram's data centres), not the web pages reached over HTTP or TLS.",
        "a non-HTTP/TLS first flight went unanswered; the control's was answered",
        (Evidence.PROBE, Evidence.TCP),
    ),
    Rule(
        "protocol_filter.group",
        lambda f: f.protocol_proof == PROOF_RUN and _app_endpoint(f) and _group_failed(f),
        _blocked("protocol_filter"),
        "No helper measured it, but a flow of non-HTTP/TLS first bytes met silence where the same"
        " address and port answered HTTP or TLS in this run (the protocol A/B test), and every"
        " endpoint of its group met the same: a protocol allowlist (Iran 2020-; Bock et al.,"
        " FOCI 2020).",
        "a non-HTTP/TLS first flight went unanswered where the same address and port answered"
        " HTTP/TLS, at every endpoint of its group",
        (Evidence.PROBE, Evidence.DIFFERENTIAL, Evidence.TCP),
    ),
    Rule(
        "protocol.unproven",
        lambda f: f.protocol_silent and _app_endpoint(f),
        INCONCLUSIVE,
        "An endpoint the app speaks its own protocol to: a flow of such bytes met silence, and"
        " nothing shows whether the path or the server dropped it (no helper's flow was answered;"
        " no HTTP or TLS answer from that address and port, or its group did not fail with it)."
        " Its app may well be cut off: never ok.",
        "a non-HTTP/TLS first flight went unanswered; nothing shows whether the path dropped it",
        (Evidence.PROBE, Evidence.DIFFERENTIAL, Evidence.TCP),
    ),
    Rule(
        "ok.protocol_filter_seen",
        lambda f: f.protocol_filtered and f.reached,
        OK,
        "Reached over HTTP or TLS, which a protocol allowlist lets through; the allowlist itself"
        " is recorded in the detail and on the platform's app endpoints.",
        "reached over its own protocol; a non-HTTP/TLS flow to it went unanswered where the"
        " control's was answered (a protocol allowlist on this network)",
        (Evidence.PROBE,),
    ),
    Rule(
        "tcp.intermittent",
        lambda f: f.reached and intermittent(f),
        _blocked("intermittent"),
        "Reached, but not steadily: some connects (each endpoint is connected twice a run) took"
        " 1-4 s, a SYN retransmission after the initial 1 s RTO and its doubling (RFC 6298), or"
        " failed where another attempt to the same endpoint connected, while the run's control"
        " sites connected in milliseconds every time: a path that drops a share of the target's"
        " SYNs or connections (intermittent interference), not a slow network.",
        "{f.connect_rate} were slow (1-4 s, a SYN retransmission; {f.tcp_connects_slow}) or"
        " failed where another attempt connected ({f.tcp_connects_uneven}); the run's control"
        " sites connected within {f.control_connect_ms} ms every time",
        (Evidence.TCP,),
    ),
    # 4. The rest.
    Rule(
        "dns.network_resolver_broken",
        lambda f: f.network_dns_broken and f.dns_failure is not None,
        INCONCLUSIVE,
        "The network's resolver failed for this name, and for every one of the run's control"
        " sites too: a broken resolver, not a censor choosing names, so its failure is no DNS"
        " verdict (without a working baseline the honest verdict is inconclusive, ooni/spec"
        " ts-017).",
        "the network's resolver failed ({f.dns_failure}) here and for the run's control sites"
        " too: DNS is inconclusive on this network{f.reachability}",
        _DNS,
    ),
    Rule(
        "ok",
        lambda f: f.reached,
        OK,
        "The target was reached and nothing in its measurements differs from the controls.",
    ),
    Rule(
        "endpoint.lone_failure",
        lambda f: not f.reached and failed_like_censorship(f) and not _group_failed(f),
        INCONCLUSIVE,
        "It failed the way censorship fails, but no control measured it and it failed alone (no"
        " group, or other endpoints of its group got through): a server that is down looks the"
        " same, so it is never called blocked.",
        "it failed ({f.tcp_failure}) and no control measured it; it failed alone, not with a group",
    ),
    Rule(
        "control.missing",
        lambda f: not f.has_control,
        INCONCLUSIVE,
        "The target failed but no control measured it: blocked and down cannot be told apart.",
        "the target failed and no control measured it",
    ),
    Rule(
        "unexplained",
        lambda f: True,
        INCONCLUSIVE,
        "The target failed in a way no rule covers (e.g. the control failed at another layer).",
    ),
)


def evaluate(facts: Facts, rules: Iterable[Rule] = RULES) -> Rule:
    """The first rule whose condition holds (the table ends with a catch-all)."""
    for rule in rules:
        if rule.condition(facts):
            return rule
    raise LookupError("no rule matched: the rule table must end with a catch-all")
