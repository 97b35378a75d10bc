"""Adversarial redirect suite: a censor (or a hostile server) that answers with a redirect into
the volunteer's LAN never makes the probe connect there. The Location is recorded and the fetch
stops with a failure that says why; a known blockpage address is recorded and not followed; a
redirect's host name is resolved through the policy (the runner's configured resolvers), never
the system resolver. Real loopback servers; the policy is injected where a test must let a
redirect reach a second loopback address (the negative control of each refusal).
"""

from __future__ import annotations

import asyncio
import socket

import pytest
from yarl import URL

from probe.checks.http import RedirectPolicy, fetch
from probe.model import DnsQuery, HttpTransaction, Layer, Target, TargetKind
from probe.resolvers import parse_resolver
from probe.runner import RunPlan, execute
from tests.builders import ListSink, record
from tests.servers import hostile
from tests.servers.dns_server import Behaviour, FakeNameserver
from tests.servers.recording import SITE, Site, same_port_on_two_addresses
from tests.servers.recording import system_resolver as system_resolver
from tests.servers.tls_certs import Pki

# Each check on asyncio's loop and on uvloop (tests/loops.py, probe/eventloop.py).
pytestmark = pytest.mark.both_loops

LAN_TARGETS = {
    "home router (RFC 1918)": "http://192.168.1.1/",
    "private 10/8": "http://10.0.0.1:8080/admin",
    "private 172.16/12": "http://172.16.0.1/",
    "loopback": "http://127.0.0.1:22/",
    "loopback, another address": "http://127.9.9.9/",
    "cloud metadata (link-local)": "http://169.254.169.254/latest/meta-data/",
    "CGNAT": "http://100.64.0.1/",
    "multicast": "http://224.0.0.1/",
    "reserved": "http://240.0.0.1/",
    "unspecified": "http://0.0.0.0/",
    "IPv6 loopback": "http://[::1]:631/",
    "IPv6 link-local": "http://[fe80::1]/",
    "IPv6 unique local": "http://[fd00::1]/",
    "IPv4-mapped private": "http://[::ffff:192.168.1.1]/",
    "6to4 of a private address": "http://[2002:c0a8:101::1]/",
    "NAT64 of a private address": "http://[64:ff9b::c0a8:101]/",
    "Teredo of a private client": "http://[2001:0:4136:e378:8000:63bf:3f57:fefe]/",
    "decimal-integer host": "http://3232235777/",
    "a name that resolves into the LAN": "http://router.lan/",
}


@pytest.fixture
def pki() -> Pki:
    return Pki()


class Connections:
    """A listener that counts the TCP connections it accepts (what a refusal must prevent)."""

    def __init__(self) -> None:
        self.count = 0

    async def handle(self, _r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.count += 1
        writer.close()


def _policy(**names: str) -> RedirectPolicy:
    async def resolve(host: str) -> list[str]:
        return [names[host]] if host in names else []

    return RedirectPolicy(resolve=resolve)


@pytest.mark.parametrize("case", sorted(LAN_TARGETS))
async def test_redirect_into_the_lan_is_recorded_and_not_followed(pki: Pki, case: str) -> None:
    location = LAN_TARGETS[case]
    origin = Site("origin")
    origin.redirect_elsewhere = location
    async with hostile.web_app(origin.app) as server:
        observation = await fetch(
            f"http://{SITE}:{server.port}/away",
            pki.check_context(),
            address=server.host,
            redirects=_policy(**{"router.lan": "192.168.1.1"}),
        )
    assert observation.failure == "unknown_failure"
    assert observation.failure_detail is not None and "not followed" in observation.failure_detail
    # As the server sent it (aiohttp writes the URL in its canonical form).
    assert URL(observation.details.redirects[-1].location) == URL(location)
    assert observation.details.status == 301
    assert [r["path"] for r in origin.requests] == ["/away"]


async def test_redirect_to_a_local_port_never_connects(pki: Pki) -> None:
    # A real listener on a second loopback address: the refused redirect opens no connection.
    connections = Connections()
    listener = await asyncio.start_server(connections.handle, "127.0.0.3", 0)
    port = listener.sockets[0].getsockname()[1]
    origin = Site("origin")
    origin.redirect_elsewhere = f"http://127.0.0.3:{port}/"
    try:
        async with hostile.web_app(origin.app) as server:
            observation = await fetch(
                f"http://{SITE}:{server.port}/away",
                pki.check_context(),
                address=server.host,
                redirects=RedirectPolicy(),
            )
    finally:
        listener.close()
        await listener.wait_closed()
    assert observation.failure_detail == "redirect to a loopback address, not followed"
    assert connections.count == 0


async def test_the_same_redirect_is_followed_when_the_policy_allows_the_address(pki: Pki) -> None:
    # The negative control: the refusal above is the policy's doing, not a broken redirect.
    origin, inside = Site("origin"), Site("inside")
    async with same_port_on_two_addresses(origin, inside) as (one, two):
        origin.redirect_elsewhere = f"http://{two.host}:{two.port}/"
        observation = await fetch(
            f"http://{SITE}:{one.port}/away",
            pki.check_context(),
            address=one.host,
            redirects=RedirectPolicy(refuse=lambda a: None if a == two.host else "refused"),
        )
    assert observation.ok, observation.failure_detail
    assert ("X-Served-By", "inside") in observation.details.headers
    assert len(inside.requests) == 1


async def test_redirect_to_a_known_blockpage_is_recorded_without_fetching_it(pki: Pki) -> None:
    origin = Site("origin")
    origin.redirect_elsewhere = "http://10.10.34.34/?type=Invalid%20Site"
    async with hostile.web_app(origin.app) as server:
        observation = await fetch(
            f"http://{SITE}:{server.port}/away",
            pki.check_context(),
            address=server.host,
            redirects=RedirectPolicy(),
        )
    # Recorded as the final response (the blockpage rules read its Location), no failure.
    assert observation.ok
    assert observation.details.status == 301
    assert ("Location", "http://10.10.34.34/?type=Invalid%20Site") in observation.details.headers
    assert observation.details.final_url == f"http://{SITE}:{server.port}/away"


async def test_a_blockpage_address_unknown_to_the_policy_is_refused_like_the_lan(pki: Pki) -> None:
    # The control: 10.10.34.34 is private address space; only the blockpage list exempts it.
    origin = Site("origin")
    origin.redirect_elsewhere = "http://10.10.34.34/"
    async with hostile.web_app(origin.app) as server:
        observation = await fetch(
            f"http://{SITE}:{server.port}/away",
            pki.check_context(),
            address=server.host,
            redirects=RedirectPolicy(blockpages=frozenset()),
        )
    assert observation.failure_detail == "redirect to a private address, not followed"


async def test_redirect_to_a_name_without_a_resolver_is_not_looked_up_by_the_system(
    pki: Pki, system_resolver: dict[str, str]
) -> None:
    origin = Site("origin")
    origin.redirect_elsewhere = "http://elsewhere.example/"
    system_resolver["elsewhere.example"] = "127.0.0.1"  # would answer, were it asked
    async with hostile.web_app(origin.app) as server:
        observation = await fetch(
            f"http://{SITE}:{server.port}/away", pki.check_context(), address=server.host
        )
    assert observation.failure_detail == (
        "redirect to elsewhere.example: no resolver to look it up, not followed"
    )
    assert [r["path"] for r in origin.requests] == ["/away"]


async def test_relative_redirects_on_the_urls_own_host_keep_its_pin(pki: Pki) -> None:
    site = Site()
    async with hostile.web_app(site.app) as server:
        observation = await fetch(
            f"http://{SITE}:{server.port}/hop/2",
            pki.check_context(),
            address=server.host,
            redirects=RedirectPolicy(),
        )
    assert observation.ok
    assert [r["path"] for r in site.requests] == ["/hop/2", "/hop/1", "/"]


async def test_a_redirect_to_an_unresolvable_name_stops(pki: Pki) -> None:
    origin = Site("origin")
    origin.redirect_elsewhere = "http://nx.example/"
    async with hostile.web_app(origin.app) as server:
        observation = await fetch(
            f"http://{SITE}:{server.port}/away",
            pki.check_context(),
            address=server.host,
            redirects=_policy(),
        )
    assert (
        observation.failure_detail
        == "redirect to nx.example: the name did not resolve, not followed"
    )


async def test_runner_resolves_a_redirects_host_through_its_resolvers_and_records_it() -> None:
    # An injected 302 to a name the censor's resolver points into the LAN: the runner looks the
    # name up through its configured resolver (recorded as a DNS measurement of the target,
    # marked as the redirect's), and the fetch refuses the private answer.
    origin = Site("origin")
    origin.redirect_elsewhere = "http://router.home.arpa/"
    zone = {"router.home.arpa": Behaviour.answer(a=["192.168.1.1"])}
    async with hostile.web_app(origin.app) as server, FakeNameserver(zone) as ns:
        target = Target("lo", "site", TargetKind.HTTP, "127.0.0.1", (server.port,), path="/away")
        plan = RunPlan([target], [], [parse_resolver(ns.udp_spec)], Pki().check_context())
        sink = ListSink()
        await asyncio.wait_for(execute(plan, "r-redirect", sink), 10)
    http = [record(HttpTransaction, m.observation) for m in sink.all if m.layer is Layer.HTTP]
    failures = [m.observation.failure_detail for m in sink.all if m.layer is Layer.HTTP]
    dns = [record(DnsQuery, m.observation) for m in sink.all if m.layer is Layer.DNS]
    assert failures[0] == "redirect to a private address, not followed"
    assert http[0].redirects[0].location == "http://router.home.arpa/"
    (lookup,) = [d for d in dns if d.query == "router.home.arpa"]
    assert lookup.resolver == ns.udp_spec and lookup.addresses == ("192.168.1.1",)
    assert lookup.redirect_from == f"http://127.0.0.1:{server.port}/away"


# What inet_aton(3), and so getaddrinfo, reads as 127.0.0.1 or 0.0.0.0 (no query is made for
# them): ipaddress reads none as an address, so a redirect names them as a host.
INET_ATON_LOOPBACK = ["127.1", "2130706433", "0x7f000001", "0177.0.0.1", "0x7f.0.0.1", "0"]


# The real getaddrinfo (tests/servers/recording.py replaces it while a test runs), asked for
# numeric hosts only: inet_aton's forms, and never a query.
_GETADDRINFO = socket.getaddrinfo


async def _getaddrinfo(host: str) -> list[str]:
    infos = await asyncio.to_thread(
        _GETADDRINFO, host, None, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST
    )
    return [str(info[4][0]) for info in infos]


@pytest.mark.parametrize("host", INET_ATON_LOOPBACK)
@pytest.mark.parametrize("resolver", ["none", "system"])
async def test_a_redirect_to_an_inet_aton_spelling_of_loopback_never_connects(
    pki: Pki, host: str, resolver: str
) -> None:
    # With no resolver the host is not looked up; with the system one (a [dns] resolvers =
    # ["system"] config) it resolves to loopback, which the policy refuses.
    connections = Connections()
    listener = await asyncio.start_server(connections.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    origin = Site("origin")
    origin.redirect_elsewhere = f"http://{host}:{port}/"
    policy = RedirectPolicy(resolve=_getaddrinfo if resolver == "system" else None)
    try:
        async with hostile.web_app(origin.app) as server:
            observation = await fetch(
                f"http://{SITE}:{server.port}/away",
                pki.check_context(),
                address=server.host,
                redirects=policy,
            )
    finally:
        listener.close()
        await listener.wait_closed()
    assert observation.failure_detail is not None
    assert observation.failure_detail.endswith("not followed")
    if resolver == "system":  # resolved, then refused for where it leads
        reason = "an unspecified" if host == "0" else "a loopback"
        assert observation.failure_detail == f"redirect to {reason} address, not followed"
    assert connections.count == 0
