"""The HTTP check against real loopback servers: pages, redirects, pinned addresses, Host
overrides, and servers that reset, stall, trickle, flood or answer garbage."""

from __future__ import annotations

import asyncio
import hashlib
import tracemalloc
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from probe.checks import Timeouts
from probe.checks.http import RedirectPolicy, fetch, open_session
from probe.model import Layer, Operation, Redirect
from tests.servers import hostile
from tests.servers.recording import PAGE, SITE, Site, same_port_on_two_addresses
from tests.servers.recording import system_resolver as system_resolver
from tests.servers.tls_certs import Pki

# Each check on asyncio's loop and on uvloop (tests/loops.py, probe/eventloop.py).
pytestmark = pytest.mark.both_loops


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki()


async def test_page_records_status_headers_title_and_body_digest(pki: Pki) -> None:
    site = Site()
    async with hostile.web_app(site.app) as server:
        observation = await fetch(server.url, pki.check_context())

    assert observation.ok
    assert observation.layer is Layer.HTTP
    assert observation.endpoint == server.url
    details = observation.details
    body = PAGE.encode()
    assert details.status == 200
    assert ("X-Served-By", "site") in details.headers
    assert details.title == "Caf\u00e9 & Blocked"
    assert details.body_length == len(body)
    assert details.body_sha256 == hashlib.sha256(body).hexdigest()
    assert details.body_truncated is False
    assert details.body_prefix == PAGE[:2048]
    assert details.method == "GET"
    assert details.address is None
    assert details.redirects == ()
    timings = details.timings
    assert timings.connect_ms is not None and timings.ttfb_ms is not None
    assert timings.total_ms is not None and details.throughput_kbps is not None
    assert timings.connect_ms > 0 and timings.ttfb_ms >= timings.connect_ms
    assert timings.total_ms >= timings.ttfb_ms
    assert details.throughput_kbps > 0
    assert "Mozilla/5.0" in site.requests[0]["user_agent"]


async def test_post_is_sent_and_recorded_as_post(pki: Pki) -> None:
    site = Site()
    async with hostile.web_app(site.app) as server:
        observation = await fetch(server.url, pki.check_context(), method="POST")

    assert observation.ok
    assert observation.details.method == "POST"
    assert [r["method"] for r in site.requests] == ["POST"]


async def test_redirect_chain_is_followed_and_every_hop_recorded(pki: Pki) -> None:
    site = Site()
    async with hostile.web_app(site.app) as server:
        observation = await fetch(f"{server.url}hop/3", pki.check_context())

    assert observation.ok
    assert observation.details.status == 200
    assert observation.details.redirects == (
        Redirect(f"{server.url}hop/3", 302, "/hop/2"),
        Redirect(f"{server.url}hop/2", 302, "/hop/1"),
        Redirect(f"{server.url}hop/1", 302, "/"),
    )
    assert observation.details.final_url == server.url
    assert [r["path"] for r in site.requests] == ["/hop/3", "/hop/2", "/hop/1", "/"]


async def test_redirect_loop_beyond_the_limit_is_a_failure_keeping_the_chain(pki: Pki) -> None:
    site = Site()
    async with hostile.web_app(site.app) as server:
        observation = await fetch(f"{server.url}hop/9", pki.check_context(max_redirects=2))

    assert observation.failure == "unknown_failure"
    assert observation.failure_detail == "too many redirects (more than 2)"
    assert observation.failed_operation is Operation.HTTP_ROUND_TRIP
    assert len(observation.details.redirects) == 3
    assert observation.details.status == 302


async def test_pinned_address_is_used_while_the_server_sees_the_urls_host(pki: Pki) -> None:
    site = Site()
    async with hostile.web_app(site.app) as server:
        url = f"http://{SITE}:{server.port}/"
        observation = await fetch(url, pki.check_context(), address=server.host)

    assert observation.ok
    assert observation.details.address == "127.0.0.1"
    assert observation.details.host_header == f"{SITE}:{server.port}"
    assert site.requests == [
        {
            "method": "GET",
            "host": f"{SITE}:{server.port}",
            "path": "/",
            "local_address": "127.0.0.1",
            "user_agent": site.requests[0]["user_agent"],
        }
    ]


async def test_pinned_https_verifies_the_certificate_against_the_urls_host(pki: Pki) -> None:
    site = Site()
    async with hostile.web_app(site.app, ssl_context=pki.server(SITE).context) as server:
        good = await fetch(
            f"https://{SITE}:{server.port}/", pki.check_context(), address="127.0.0.1"
        )
        wrong = await fetch(
            f"https://other.example:{server.port}/", pki.check_context(), address="127.0.0.1"
        )

    assert good.ok
    assert good.details.title == "Caf\u00e9 & Blocked"
    assert wrong.failure == "ssl_invalid_hostname"
    assert wrong.failed_operation is Operation.HTTP_ROUND_TRIP


async def test_host_header_override_is_what_the_server_sees(pki: Pki) -> None:
    site = Site()
    async with hostile.web_app(site.app) as server:
        observation = await fetch(
            f"http://{SITE}:{server.port}/",
            pki.check_context(),
            address=server.host,
            host_header="harmless.example",
        )

    assert observation.ok
    assert observation.details.host_header == "harmless.example"
    assert [r["host"] for r in site.requests] == ["harmless.example"]


async def test_redirect_to_another_host_resolves_through_the_policy_not_to_the_pin(
    pki: Pki, system_resolver: dict[str, str]
) -> None:
    origin, elsewhere = Site("origin"), Site("elsewhere")
    asked: list[str] = []

    async def resolve(host: str) -> list[str]:
        asked.append(host)
        return [two.host]

    # The test's policy lets the redirect reach the second loopback address (refused otherwise).
    policy = RedirectPolicy(resolve=resolve, refuse=lambda a: None if a == two.host else "no")
    async with same_port_on_two_addresses(origin, elsewhere) as (one, two):
        origin.redirect_elsewhere = f"http://elsewhere.example:{two.port}/"
        observation = await fetch(
            f"http://{SITE}:{one.port}/away",
            pki.check_context(),
            address=one.host,
            redirects=policy,
        )

    assert observation.ok
    assert asked == ["elsewhere.example"] and system_resolver == {}  # never the system's
    assert ("X-Served-By", "elsewhere") in observation.details.headers
    assert [r["path"] for r in origin.requests] == ["/away"]
    assert elsewhere.requests[0]["host"] == f"elsewhere.example:{two.port}"
    assert elsewhere.requests[0]["local_address"] == "127.0.0.2"


async def test_shared_session_keeps_each_concurrent_fetch_on_its_own_pin(pki: Pki) -> None:
    real, blockpage = Site("real"), Site("blockpage")
    # 80 fetches at once: the fast tests' 1 s HTTP timeout failed one on a loaded machine (CI
    # under four benchmarks: a KeyError on the missing header), which says nothing of pins.
    ctx = pki.check_context(timeouts=Timeouts(connect=10.0, tls=10.0, http=20.0))
    async with same_port_on_two_addresses(real, blockpage) as (one, two):
        url = f"http://{SITE}:{one.port}/"
        async with open_session(ctx) as session:
            pins = [one.host, two.host] * 40
            observations = await asyncio.gather(
                *(fetch(url, ctx, address=pin, session=session) for pin in pins)
            )

    assert [o.failure for o in observations] == [None] * 80
    served = [dict(o.details.headers)["X-Served-By"] for o in observations]
    assert served == ["real", "blockpage"] * 40
    assert len(real.requests) == len(blockpage.requests) == 40


async def test_every_fetch_on_a_shared_session_opens_its_own_connection(pki: Pki) -> None:
    # A pooled connection would skip the handshake a censor acts on, and could carry one
    # fetch's pin into another's.
    peers: list[Any] = []

    async def page(request: web.Request) -> web.Response:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", page)
    ctx = pki.check_context()
    async with hostile.web_app(app) as server, open_session(ctx) as session:
        for _ in range(3):
            observation = await fetch(
                f"http://{SITE}:{server.port}/", ctx, address=server.host, session=session
            )
            assert observation.ok
            assert observation.details.timings.connect_ms is not None

    assert len(set(peers)) == 3


async def test_a_plain_aiohttp_session_is_not_trusted_to_pin(pki: Pki) -> None:
    site = Site()
    async with hostile.web_app(site.app) as server, aiohttp.ClientSession() as plain:
        observation = await fetch(
            f"http://{SITE}:{server.port}/", pki.check_context(), address=server.host, session=plain
        )

    assert observation.ok
    assert site.requests[0]["host"] == f"{SITE}:{server.port}"


async def test_endless_body_is_capped_without_failing_and_memory_stays_bounded(
    pki: Pki,
) -> None:
    cap = 256 * 1024
    async with hostile.endless_body() as server:
        tracemalloc.start()
        try:
            observation = await fetch(server.url, pki.check_context(), max_body_bytes=cap)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()

    assert observation.ok
    assert observation.details.body_truncated is True
    assert observation.details.body_length == cap
    assert observation.details.body_sha256 == hashlib.sha256(b"A" * cap).hexdigest()
    assert peak < 8 * 1024 * 1024


async def test_body_exactly_at_the_cap_is_not_called_truncated(pki: Pki) -> None:
    site = Site()
    async with hostile.web_app(site.app) as server:
        observation = await fetch(
            server.url, pki.check_context(), max_body_bytes=len(PAGE.encode())
        )

    assert observation.ok
    assert observation.details.body_truncated is False


async def test_trickling_body_is_generic_timeout_while_reading(pki: Pki) -> None:
    ctx = pki.check_context(timeouts=Timeouts(connect=0.5, tls=0.5, http=0.5))
    async with hostile.trickle(interval=1.0) as server:
        observation = await fetch(server.url, ctx)

    assert observation.failure == "generic_timeout_error"
    assert observation.failed_operation is Operation.READ
    details = observation.details
    assert details.status == 200
    assert details.body_length == 1  # what arrived before the timeout is kept
    assert 450 <= observation.duration_ms < 2000


async def test_a_trickling_transfer_is_a_sample_that_ends_with_its_window(pki: Pki) -> None:
    # A throttled transfer: the window ends while bytes still trickle in. That is the sample a
    # transfer target is read for, not a failure, and its rate is over the whole window.
    ctx = pki.check_context(timeouts=Timeouts(connect=0.5, tls=0.5, http=5.0))
    async with hostile.trickle(interval=0.2) as server:
        observation = await fetch(server.url, ctx, read_seconds=0.6)

    assert observation.ok
    details = observation.details
    assert details.status == 200 and details.body_truncated is True
    assert 1 <= details.body_length <= 5
    # A few bytes over about 0.6 s: well under a kilobit per second.
    assert details.throughput_kbps is not None and details.throughput_kbps < 1.0
    assert observation.duration_ms < 4000  # the window ended it, not the http timeout


async def test_a_transfer_window_closes_before_the_fetch_timeout(pki: Pki) -> None:
    # A window longer than what is left of the fetch's timeout still ends as a sample.
    ctx = pki.check_context(timeouts=Timeouts(connect=0.5, tls=0.5, http=0.8))
    async with hostile.trickle(interval=0.2) as server:
        observation = await fetch(server.url, ctx, read_seconds=30.0)

    assert observation.ok
    assert observation.details.body_truncated is True
    assert observation.details.throughput_kbps is not None


async def test_a_transfer_that_ends_within_its_window_is_whole(pki: Pki) -> None:
    site = Site()
    async with hostile.web_app(site.app) as server:
        observation = await fetch(server.url, pki.check_context(), read_seconds=5.0)

    assert observation.ok
    assert observation.details.body_truncated is False
    assert observation.details.body_length == len(PAGE.encode())


async def test_server_that_never_answers_is_generic_timeout_in_the_round_trip(pki: Pki) -> None:
    ctx = pki.check_context(timeouts=Timeouts(connect=0.5, tls=0.5, http=0.4))
    async with hostile.silent() as server:
        observation = await fetch(server.url, ctx)

    assert observation.failure == "generic_timeout_error"
    assert observation.failed_operation is Operation.HTTP_ROUND_TRIP
    assert observation.details.status is None


async def test_garbage_instead_of_http_is_unknown_failure(pki: Pki) -> None:
    async with hostile.garbage() as server:
        observation = await fetch(server.url, pki.check_context())

    # The parser's message is detail, never the join key: an aiohttp upgrade cannot change it.
    assert observation.failure == "unknown_failure"
    assert observation.failure_detail == (
        "ClientResponseError: Bad status line: Expected HTTP/, RTSP/ or ICE/"
    )
    assert observation.failed_operation is Operation.HTTP_ROUND_TRIP
    assert server.received[0].startswith(b"GET / HTTP/1.1\r\n")


async def test_close_before_response_headers_is_eof_error(pki: Pki) -> None:
    async with hostile.closing() as server:
        observation = await fetch(server.url, pki.check_context())

    assert observation.failure == "eof_error"
    assert observation.failed_operation is Operation.HTTP_ROUND_TRIP


async def test_reset_after_the_request_is_connection_reset(pki: Pki) -> None:
    async with hostile.reset_on_accept(after_first_data=True) as server:
        observation = await fetch(
            f"http://{SITE}:{server.port}/", pki.check_context(), address=server.host
        )

    assert observation.failure == "connection_reset"
    assert observation.failed_operation is Operation.HTTP_ROUND_TRIP
    assert f"Host: {SITE}:{server.port}".encode() in server.received[0]


@pytest.mark.parametrize(("reset", "failure"), [(True, "connection_reset"), (False, "eof_error")])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_interference_with_the_first_request_is_recorded_not_retried_away(
    pki: Pki, reset: bool, failure: str, method: str
) -> None:
    # aiohttp (3.14) sends an idempotent request again on a new connection after a reset or an
    # early close; the second connection would succeed here, and the observation would hide the
    # interference. One request, one connection: what hit it is what is recorded.
    async with hostile.first_request_hit(reset=reset) as server:
        observation = await fetch(server.url, pki.check_context(), method=method)

    assert observation.failure == failure
    assert observation.failed_operation is Operation.HTTP_ROUND_TRIP
    assert len(server.received) == 1


async def test_interference_on_a_shared_session_is_recorded_for_each_fetch(pki: Pki) -> None:
    async with (
        hostile.first_request_hit() as server,
        open_session(pki.check_context()) as session,
    ):
        first = await fetch(server.url, pki.check_context(), session=session)
        second = await fetch(server.url, pki.check_context(), session=session)

    assert first.failure == "connection_reset"
    assert second.ok and second.details.status == 200
    assert len(server.received) == 2


async def test_refused_port_is_connection_refused(pki: Pki) -> None:
    async with hostile.refused_port() as server:
        observation = await fetch(server.url, pki.check_context())

    assert observation.failure == "connection_refused"
    assert observation.failed_operation is Operation.HTTP_ROUND_TRIP
    assert observation.details.timings.connect_ms is None


async def test_endless_headers_are_refused_with_memory_bounded(pki: Pki) -> None:
    async with hostile.endless_headers() as server:
        tracemalloc.start()
        try:
            observation = await fetch(server.url, pki.check_context())
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()

    assert observation.failure == "unknown_failure"
    assert observation.failure_detail == "ClientResponseError: Too many headers received"
    assert observation.failed_operation is Operation.HTTP_ROUND_TRIP
    assert peak < 8 * 1024 * 1024


async def test_cancelling_a_fetch_propagates_instead_of_becoming_a_failure(pki: Pki) -> None:
    ctx = pki.check_context(timeouts=Timeouts(connect=5, tls=5, http=5))
    async with hostile.silent() as server:
        task = asyncio.create_task(fetch(server.url, ctx))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_non_http_url_is_a_bug_not_a_measurement(pki: Pki) -> None:
    with pytest.raises(ValueError, match="expected an http"):
        await fetch("ftp://site.example/", pki.check_context())
