"""Named scenarios: the techniques a censor (or a broken network) applies, and what they hit.

A Scenario is data: a name, a sentence, and techniques whose host selectors are resolved
against the lab's address plan (the probe's built-in catalog). Scenarios compose: applying
several applies all their techniques at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from probe.catalog import builtin_targets
from tests.lab import plan as lab_plan
from tests.lab.plan import AddressPlan
from tests.lab.techniques import (
    Cdn,
    DeadUplink,
    DnsDrop,
    DnsInjection,
    DnsLie,
    DnsNxdomain,
    DnsOtherSite,
    HttpBlockpage,
    HttpReset,
    IpBlackhole,
    ProtocolAllowlist,
    SiteDown,
    SniAllowlist,
    SniDrop,
    SniReset,
    SynDrop,
    TcpReset,
    Technique,
    Throttle,
    TlsInterception,
)

# Host groups, as selectors over the catalog's names (the OONI specs' endpoints, ooni/spec
# nettests/ts-018-whatsapp.md, ts-019-facebook-messenger.md, ts-020-telegram.md, ts-029-signal.md).
TELEGRAM_NAMES = ("telegram.org", "*.telegram.org", "t.me")
TELEGRAM_DCS = tuple(
    t.host for t in builtin_targets() if t.platform == "telegram" and t.group == "dc"
)
TWITTER = ("twitter.com", "*.twitter.com", "x.com", "*.twimg.com", "t.co")
FACEBOOK = ("*.facebook.com", "*.fbcdn.net")
INSTAGRAM = ("*.instagram.com",)
WHATSAPP = ("*.whatsapp.net", "*.whatsapp.com")
SIGNAL = ("*.signal.org",)
YOUTUBE = ("youtube.com", "*.youtube.com", "*.ytimg.com")
YOUTUBE_VIDEO = ("*.googlevideo.com",)
# The run's control sites (probe/catalog/controls.toml): what an SNI allowlist lets through.
CONTROL_NAMES = tuple(t.host for t in builtin_targets() if t.control)
# One endpoint of each kind of group, down for everyone: a WhatsApp chat server, a Telegram DC,
# and one of Facebook's TLS-speaking API hosts (in no group).
LONE_ENDPOINTS = ("e7.whatsapp.net", "149.154.171.5", "b-graph.facebook.com")
YOUTUBE_MEDIA = ("*.ytimg.com", *YOUTUBE_VIDEO)
TWITTER_MEDIA = ("pbs.twimg.com",)
# Where a resolver lie points that is no fingerprint and no bogon: an address nobody serves.
NOWHERE_ADDRESS = "45.90.28.1"


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named set of techniques."""

    name: str
    description: str
    techniques: tuple[Technique, ...] = ()

    def hits(self, address_plan: AddressPlan) -> list[tuple[str, tuple[str, ...]]]:
        """(technique name, what it hits) for each technique, resolved against the plan."""
        return [(t.name, t.hits(address_plan)) for t in self.techniques]


def _scenarios(*scenarios: Scenario) -> dict[str, Scenario]:
    return {scenario.name: scenario for scenario in scenarios}


SCENARIOS: dict[str, Scenario] = _scenarios(
    Scenario("clean", "no censorship: every site works from the client as from the control"),
    Scenario(
        "dns_lie",
        "the ISP resolver answers 10.10.34.35 (AAAA d0::11) for Facebook and Instagram names",
        (DnsLie(FACEBOOK + INSTAGRAM),),
    ),
    Scenario(
        "dns_nxdomain",
        "the ISP resolver answers NXDOMAIN for YouTube's names",
        (DnsNxdomain(YOUTUBE),),
    ),
    Scenario(
        "resolver_lie",
        "only the network's resolver censors: NXDOMAIN for Signal's names, and an address "
        f"nobody serves ({NOWHERE_ADDRESS}, no fingerprint, no bogon) for Telegram's web names; "
        "a foreign resolver (8.8.8.8) and DoH answer truly",
        (DnsNxdomain(SIGNAL), DnsLie(TELEGRAM_NAMES, address=NOWHERE_ADDRESS, address6=None)),
    ),
    Scenario(
        "dns_other_site",
        "the ISP resolver points Instagram's names at another real site "
        f"({lab_plan.OTHER_SITE_ADDRESS}, a valid certificate for {lab_plan.OTHER_SITE_NAME} only)",
        (DnsOtherSite(INSTAGRAM),),
    ),
    Scenario(
        "resolver_broken",
        "not censorship: the ISP resolver answers NXDOMAIN for every name, the run's control "
        "sites' included (a broken resolver); DoH and 8.8.8.8 answer",
        (DnsNxdomain(("*",)),),
    ),
    Scenario(
        "dns_injection",
        "an on-path injector races a forged 10.10.34.35 ahead of the real answer, to any "
        "resolver, for Twitter/X names",
        (DnsInjection(TWITTER),),
    ),
    Scenario(
        "dns_drop",
        "DNS queries for WhatsApp names are dropped on the way to any resolver",
        (DnsDrop(WHATSAPP),),
    ),
    Scenario(
        "ip_blackhole",
        "Telegram's data centres are null-routed: connects time out, no RST",
        (IpBlackhole(TELEGRAM_DCS),),
    ),
    Scenario(
        "tcp_reset",
        "SYNs to WhatsApp's chat and registration addresses are answered with RST",
        (TcpReset(("*.whatsapp.net",)),),
    ),
    Scenario(
        "sni_reset",
        "a ClientHello with a Twitter/X SNI is answered with RST (TCP connect still succeeds)",
        (SniReset(TWITTER),),
    ),
    Scenario(
        "sni_drop",
        "a ClientHello with an Instagram SNI is dropped: the TLS handshake stalls",
        (SniDrop(INSTAGRAM),),
    ),
    Scenario(
        "http_blockpage",
        "plain-HTTP requests for Facebook names are dropped and Iran's 403 blockpage is "
        "injected from the server's address",
        (HttpBlockpage(FACEBOOK),),
    ),
    Scenario(
        "http_reset",
        "plain-HTTP requests for Instagram names are answered with RST",
        (HttpReset(INSTAGRAM),),
    ),
    Scenario(
        "intermittent_syn_drop",
        "the first SYN of every connection to Signal's addresses is dropped (its retransmission "
        "passes): every connect takes a 1 s SYN retransmission, and nothing fails outright",
        (SynDrop(SIGNAL),),
    ),
    Scenario(
        "throttle",
        "YouTube's media addresses (i.ytimg.com, the googlevideo video host) are shaped to "
        "64 kbit/s",
        (Throttle(YOUTUBE_MEDIA),),
    ),
    Scenario(
        "throttle_small_pages",
        "Twitter's media CDN (pbs.twimg.com) is shaped to 64 kbit/s: its root page is a few KB, "
        "too short for a rate, and only its large asset shows the throttling",
        (Throttle(TWITTER_MEDIA),),
    ),
    Scenario(
        "tls_interception",
        "port 443 of Facebook's addresses is redirected to the censor's TLS server, whose "
        "certificate comes from an untrusted CA",
        (TlsInterception(FACEBOOK),),
    ),
    Scenario(
        "protocol_allowlist",
        "on ports 53/80/443 only flows whose first data is DNS/HTTP/TLS pass (Iran, 2020-)",
        (ProtocolAllowlist(),),
    ),
    Scenario(
        "sni_allowlist",
        "on port 443 only ClientHellos naming a control site pass (not example.com, the old "
        "harmless name); any other SNI is answered with RST",
        (SniAllowlist(CONTROL_NAMES),),
    ),
    Scenario(
        "endpoint_down",
        "not censorship: one WhatsApp chat server, one Telegram DC and Facebook's b-graph host "
        "are down everywhere (the control fails too), their groups' other endpoints work",
        (SiteDown(LONE_ENDPOINTS),),
    ),
    Scenario(
        "site_down",
        "not censorship: Signal's servers are down everywhere (the control fails too)",
        (SiteDown(SIGNAL),),
    ),
    Scenario(
        "cdn",
        "not censorship: the ISP resolver gets another legitimate (CDN) address for Facebook "
        "names, valid certificate included",
        (Cdn(FACEBOOK),),
    ),
    Scenario(
        "dead_uplink",
        "not censorship: the client's link to its ISP is down",
        (DeadUplink(),),
    ),
    Scenario(
        "iran_mix",
        "Iran as measured: DNS lies for Telegram's names, Telegram DCs blackholed, SNI reset "
        "for Twitter/X, blockpage for Facebook's HTTP, YouTube's media throttled",
        (
            DnsLie(TELEGRAM_NAMES),
            IpBlackhole(TELEGRAM_DCS),
            SniReset(TWITTER),
            HttpBlockpage(FACEBOOK),
            Throttle(YOUTUBE_MEDIA),
        ),
    ),
)


def get_scenario(name: str) -> Scenario:
    """The named scenario; KeyError lists the known names."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise KeyError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}") from None
