"""The control test helper end to end on loopback: a real helper server (its own event loop in a
thread, as on another host), a real HTTPS site, a fake nameserver as the helper's resolver, and
the probe's client, which must turn every helper problem into "unavailable" with a reason."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import typer
from aiohttp import web

from probe.addresses import non_public_reason
from probe.checks import CheckContext, Timeouts
from probe.cli import helper as helper_cli
from probe.config import ConfigError, parse_settings
from probe.helper.client import HelperUnavailable, measure_url, query_helper
from probe.helper.protocol import (
    HelperResult,
    Limits,
    ProtocolError,
    encode_request,
    encode_response,
    parse_request,
    parse_response,
)
from probe.helper.server import HelperConfig, running
from probe.model import DnsQuery, HttpTransaction, Layer, Target, TargetKind, TlsHandshake
from probe.resolvers import parse_resolver
from tests.builders import record
from tests.cli import invoke
from tests.servers import hostile
from tests.servers.background import background
from tests.servers.dns_server import Behaviour, FakeNameserver
from tests.servers.helper import guarded_helper
from tests.servers.tls_certs import Pki

TOKEN = "test-token-0123456789abcdef"
TITLE = "Helper Control Page"
PAGE = f"<html><head><title>{TITLE}</title></head><body>control</body></html>"


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki()


@pytest.fixture(scope="module")
def ns() -> Iterator[FakeNameserver]:
    zone = {
        "site.example": Behaviour.answer(a=["127.0.0.1"]),
        "slow.example": Behaviour.drop(),
    }
    with FakeNameserver(zone) as server:
        yield server


def _site_app() -> web.Application:
    async def page(_request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", page)
    return app


@pytest.fixture(scope="module")
def https_port(pki: Pki) -> Iterator[int]:
    """A loopback HTTPS site for site.example, certified by the test CA."""
    identity = pki.server("site.example")
    with background(lambda: hostile.web_app(_site_app(), ssl_context=identity.context)) as (
        listener,
    ):
        yield listener.port


@contextlib.asynccontextmanager
async def _counting_listener() -> AsyncIterator[tuple[int, list[int]]]:
    """A TCP listener that counts the connections it accepts."""
    accepted: list[int] = []

    async def on_connect(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1]), accepted
    finally:
        server.close()
        await server.wait_closed()


def _name(query_name: str) -> str:
    return query_name.lower().rstrip(".")


def helper_config(
    ns: FakeNameserver, pki: Pki, *, dns_timeout: float = 0.5, **overrides: Any
) -> HelperConfig:
    # The helper resolves through the fake nameserver only and trusts the test CA only.
    timeouts = Timeouts(dns=dns_timeout, connect=0.5, tls=0.5, http=1.0)
    context = dataclasses.replace(pki.check_context(timeouts), dns_second_answer_window=0.05)
    settings: dict[str, Any] = {
        "token": TOKEN,
        "resolvers": (parse_resolver(ns.udp_spec),),
        "context": context,
        "concurrency": 16,
        "allow_private": True,
        "deadline": 10.0,
    }
    settings.update(overrides)
    return HelperConfig(**settings)


@pytest.fixture(scope="module")
def helper_url(ns: FakeNameserver, pki: Pki) -> Iterator[str]:
    with guarded_helper(helper_config(ns, pki)) as url:
        yield url


def site_target(port: int) -> Target:
    return Target("lo", "site", TargetKind.HTTPS, "site.example", (port,))


async def _post(
    url: str, body: Any, token: str | None = TOKEN, **kwargs: Any
) -> tuple[int, dict[str, Any], Any]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/v1/measure", headers=headers, **kwargs, **body) as response,
    ):
        return response.status, dict(response.headers), await response.json()


async def test_helper_measures_dns_tcp_tls_and_http_from_its_own_vantage(
    helper_url: str, https_port: int, ns: FakeNameserver
) -> None:
    targets = [site_target(https_port), Target("lo", "site-dns", TargetKind.DNS, "site.example")]
    result = await query_helper(helper_url, TOKEN, targets, CheckContext(), timeout=10)

    assert isinstance(result, HelperResult), result
    assert result.complete and not result.refused
    assert result.client.address == "127.0.0.1"
    measured = {t.target: t for t in result.targets}
    site = measured["site"]
    assert site.host == "site.example"
    by_layer = {o.layer: o for o in site.measurements}
    assert set(by_layer) == {Layer.DNS, Layer.TCP, Layer.TLS, Layer.HTTP}
    assert all(o.failure is None for o in site.measurements), site.measurements
    assert by_layer[Layer.DNS].endpoint == ns.udp_spec
    assert record(DnsQuery, by_layer[Layer.DNS]).addresses == ("127.0.0.1",)
    assert by_layer[Layer.TCP].endpoint == f"127.0.0.1:{https_port}"
    handshake = record(TlsHandshake, by_layer[Layer.TLS])
    assert handshake.verified is True and handshake.sni == "site.example"
    page = record(HttpTransaction, by_layer[Layer.HTTP])
    assert page.status == 200 and page.title == TITLE
    assert [o.layer for o in measured["site-dns"].measurements] == [Layer.DNS]
    # The helper resolved through its own resolver, not the probe's.
    assert ns.queries_for("site.example")
    # What the helper sent survives the wire unchanged.
    assert parse_response(json.loads(json.dumps(encode_response(result)))) == result


async def test_helper_over_https_is_verified_with_the_probes_trust_store(
    ns: FakeNameserver, pki: Pki
) -> None:
    identity = pki.server("127.0.0.1")
    with guarded_helper(helper_config(ns, pki), ssl_context=identity.context) as url:
        assert url.startswith("https://")
        trusted = await query_helper(url, TOKEN, [], pki.check_context(), timeout=5)
        untrusted = await query_helper(url, TOKEN, [], Pki().check_context(), timeout=5)
    assert isinstance(trusted, HelperResult) and trusted.targets == ()
    assert isinstance(untrusted, HelperUnavailable)
    assert "ssl_unknown_authority" in untrusted.reason


async def test_wrong_token_is_401_and_the_probe_reports_the_helper_unavailable(
    helper_url: str, https_port: int
) -> None:
    request = {"json": encode_request([site_target(https_port)])}
    wrong_status, wrong_headers, wrong_body = await _post(helper_url, request, token="guess")
    missing_status, _, _ = await _post(helper_url, request, token=None)
    result = await query_helper(
        helper_url, "not-the-token", [site_target(https_port)], CheckContext(), timeout=5
    )

    assert wrong_status == 401 and missing_status == 401
    assert wrong_headers["WWW-Authenticate"].startswith("Bearer")
    assert "token" in wrong_body["error"]
    assert isinstance(result, HelperUnavailable)
    assert "refused the token (HTTP 401" in result.reason
    assert "[helper] token" in result.reason


async def test_helper_down_is_unavailable_with_the_connect_failure() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port any more: the connect is refused.
    result = await query_helper(f"http://127.0.0.1:{port}", TOKEN, [], CheckContext(), timeout=5)

    assert isinstance(result, HelperUnavailable)
    assert result.reason == (
        f"cannot reach the helper at http://127.0.0.1:{port}/v1/measure: connection_refused"
    )


_ANSWER_WITH_A_TCP_CONNECT_WITHOUT_ADDRESS = {
    "version": 1,
    "complete": True,
    "client": {"address": None, "asn": None, "as_name": None, "country": None},
    "targets": [
        {
            "platform": "telegram",
            "target": "dc2",
            "host": "149.154.167.51",
            "measurements": [
                {
                    "layer": "tcp",
                    "endpoint": "149.154.167.51:443",
                    "started_at": "2025-03-01T12:00:00+00:00",
                    "duration_ms": 3.0,
                    "failure": None,
                    "failed_operation": None,
                    "details": {"port": 443},
                }
            ],
        }
    ],
    "refused": [],
}


def _fixed_answer(body: bytes, content_type: str) -> web.Application:
    async def answer(_request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=content_type)

    app = web.Application()
    app.router.add_post("/v1/measure", answer)
    return app


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"<html>definitely not json", "answered with something that is not JSON"),
        (
            json.dumps({"version": 1, "complete": True, "client": {}, "targets": "x"}).encode(),
            "answered outside protocol v1: $.targets: expected a list, got str",
        ),
        (
            json.dumps({"version": 2, "targets": []}).encode(),
            "answered outside protocol v1: $.version: unsupported protocol version 2",
        ),
        (
            # Once a HelperResponseError traceback in `probe run` before anything was measured.
            json.dumps(_ANSWER_WITH_A_TCP_CONNECT_WITHOUT_ADDRESS).encode(),
            "$.targets[0].measurements[0].details.address: missing",
        ),
    ],
    ids=["not-json", "wrong-shape", "wrong-version", "tcp-without-address"],
)
async def test_garbage_answer_makes_the_helper_unavailable(body: bytes, expected: str) -> None:
    async with hostile.web_app(_fixed_answer(body, "application/json")) as listener:
        result = await query_helper(
            f"http://127.0.0.1:{listener.port}", TOKEN, [], CheckContext(), timeout=5
        )
    assert isinstance(result, HelperUnavailable)
    assert expected in result.reason


async def test_silent_helper_is_unavailable_after_the_timeout() -> None:
    async with hostile.silent() as listener:
        started = time.monotonic()
        result = await query_helper(
            f"http://127.0.0.1:{listener.port}", TOKEN, [], CheckContext(), timeout=0.3
        )
    assert isinstance(result, HelperUnavailable)
    assert "did not answer within 0.3 s" in result.reason
    assert time.monotonic() - started < 2.0


async def test_oversized_answer_is_not_read_past_the_cap() -> None:
    huge = json.dumps({"padding": "x" * 200_000}).encode()
    async with hostile.web_app(_fixed_answer(huge, "application/json")) as listener:
        result = await query_helper(
            f"http://127.0.0.1:{listener.port}",
            TOKEN,
            [],
            CheckContext(),
            timeout=5,
            limits=Limits(max_response_bytes=100_000),
        )
    assert isinstance(result, HelperUnavailable)
    assert "sent more than 100000 bytes" in result.reason


async def test_private_addresses_are_refused_without_allow_private(
    ns: FakeNameserver, pki: Pki
) -> None:
    config = helper_config(ns, pki, allow_private=False)
    async with _counting_listener() as (port, accepted):
        targets = [
            Target("lo", "literal", TargetKind.TCP, "127.0.0.1", (port,)),
            Target("lo", "named", TargetKind.TCP, "site.example", (port,)),
            Target("lo", "named-https", TargetKind.HTTPS, "site.example", (port,)),
            Target("lo", "dns-only", TargetKind.DNS, "site.example"),
        ]
        with guarded_helper(config) as url:
            result = await query_helper(url, TOKEN, targets, CheckContext(), timeout=10)

    assert isinstance(result, HelperResult), result
    reasons = {r.target: r.reason for r in result.refused}
    assert set(reasons) == {"literal", "named", "named-https", "dns-only"}
    assert reasons["literal"].startswith("127.0.0.1 is a loopback address")
    assert reasons["named"].startswith("resolves to a non-public address (loopback)")
    assert all("--allow-private" in reason for reason in reasons.values())
    # The helper's own network was never touched, and no internal address went back: a DNS
    # answer on loopback is refused like a connect, without the address.
    assert accepted == []
    assert result.targets == ()
    assert all("127.0.0.1" not in reasons[name] for name in ("named", "named-https", "dns-only"))


async def test_helper_without_allow_private_refuses_to_start_on_an_unguarded_loop(
    ns: FakeNameserver, pki: Pki
) -> None:
    with pytest.raises(RuntimeError, match="GuardedEventLoop"):
        async with running(helper_config(ns, pki, allow_private=False)):
            pass


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.2", "loopback"),
        ("::1", "loopback"),
        ("::ffff:10.1.2.3", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("100.64.0.1", "non-global"),
        ("0.0.0.0", "unspecified"),
        ("239.1.1.1", "multicast"),
        ("149.154.167.51", None),
        ("2001:4860:4860::8888", None),
    ],
)
def test_only_globally_routable_addresses_count_as_public(address: str, reason: str | None) -> None:
    assert non_public_reason(address) == reason


async def test_oversized_request_is_refused_with_413(helper_url: str) -> None:
    body = b"x" * (2 * 1024 * 1024 + 1)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 65536):
            yield body[i : i + 65536]

    declared_status, _, declared = await _post(helper_url, {"data": body})
    # Without a Content-Length, the read itself stops at the cap.
    chunked_status, _, chunked = await _post(helper_url, {"data": chunks()})

    assert declared_status == 413 and chunked_status == 413
    assert "larger than 2097152 bytes" in declared["error"]
    assert "larger than 2097152 bytes" in chunked["error"]


async def test_too_many_targets_and_bad_hosts_are_refused_with_the_offending_path(
    helper_url: str,
) -> None:
    many = [Target("lo", f"t{i}", TargetKind.DNS, f"h{i}.example") for i in range(2001)]
    bad_host = encode_request([Target("lo", "bad", TargetKind.TCP, "exa mple", (443,))])
    future = {"version": 2, "targets": []}

    too_many_status, _, too_many = await _post(helper_url, {"json": encode_request(many)})
    bad_status, _, bad = await _post(helper_url, {"json": bad_host})
    future_status, _, future_body = await _post(helper_url, {"json": future})
    not_json_status, _, not_json = await _post(helper_url, {"data": b"{nope"})

    assert too_many_status == 400
    assert too_many["error"] == "$.targets: 2001 entries, more than the 2000 allowed"
    assert bad_status == 400
    assert bad["error"] == "$.targets[0]: 'exa mple' is not a valid host name or IP address"
    assert future_status == 400 and "unsupported protocol version 2" in future_body["error"]
    assert not_json_status == 400 and "not JSON" in not_json["error"]


def test_request_round_trip_keeps_what_the_runner_needs() -> None:
    targets = [
        Target("telegram", "dc2-80", TargetKind.HTTP, "149.154.167.51", (80, 443), "/api", "POST"),
        Target("signal", "chat", TargetKind.HTTPS, "chat.signal.org", (443,)),
        Target("facebook", "stun", TargetKind.DNS, "stun.fbsbx.com"),
    ]
    parsed = parse_request(json.loads(json.dumps(encode_request(targets))))
    fields = ("platform", "name", "kind", "host", "ports", "path", "method")
    assert [[getattr(t, f) for f in fields] for t in parsed] == [
        [getattr(t, f) for f in fields] for t in targets
    ]
    with pytest.raises(ProtocolError, match=r"\$\.targets\[1\]: duplicate target"):
        parse_request(encode_request([targets[0], targets[0]]))
    with pytest.raises(ProtocolError, match=r"\$\.targets\[0\]: unknown key\(s\) control"):
        parse_request(
            {"version": 1, "targets": [{**encode_request(targets)["targets"][0], "control": True}]}
        )


async def test_batch_deadline_returns_what_was_measured_marked_incomplete(
    ns: FakeNameserver, pki: Pki
) -> None:
    config = helper_config(ns, pki, dns_timeout=5.0, deadline=0.3)
    target = Target("lo", "slow", TargetKind.TCP, "slow.example", (443,))
    with guarded_helper(config) as url:
        started = time.monotonic()
        result = await query_helper(url, TOKEN, [target], CheckContext(), timeout=10)
        elapsed = time.monotonic() - started

    assert isinstance(result, HelperResult), result
    assert result.complete is False
    # The DNS check (5 s timeout) was cut by the 0.3 s deadline: no measurement, no guess.
    assert [t.measurements for t in result.targets] == [()]
    assert elapsed < 3.0


async def test_helper_busy_with_another_batch_answers_503(ns: FakeNameserver, pki: Pki) -> None:
    config = helper_config(ns, pki, dns_timeout=5.0, deadline=1.0, max_requests=1)
    slow = [Target("lo", "slow", TargetKind.TCP, "slow.example", (443,))]

    def lookups() -> int:  # the nameserver is shared by the module's tests: count, then compare
        return sum(_name(q.name) == "slow.example" for q in ns.queries)

    before = lookups()
    with guarded_helper(config) as url:
        first = asyncio.create_task(query_helper(url, TOKEN, slow, CheckContext(), timeout=5))
        # The first batch is in flight once its lookup reaches the nameserver (it then waits for
        # its 1 s deadline): an event, not a guess of how long the request takes to arrive.
        async with asyncio.timeout(5):
            while lookups() == before:  # noqa: ASYNC110
                await asyncio.sleep(0.01)  # the nameserver runs in its own thread: poll it
        second = await query_helper(url, TOKEN, slow, CheckContext(), timeout=5)
        first_result = await first

    assert isinstance(second, HelperUnavailable)
    assert "is busy (HTTP 503: busy: 1 batches in flight" in second.reason
    assert isinstance(first_result, HelperResult)


# -- the command ----------------------------------------------------------------------------------


def _helper_cli() -> typer.Typer:
    cli = typer.Typer()
    helper_cli.register(cli)
    return cli


def test_serve_without_a_token_explains_where_to_put_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROBE_HELPER_TOKEN", raising=False)
    result = invoke("helper", "serve", app=_helper_cli())
    assert result.code == 1
    assert "give --token-file FILE or set $PROBE_HELPER_TOKEN" in result.output


def test_serve_refuses_a_short_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROBE_HELPER_TOKEN", "secret")
    result = invoke("helper", "serve", app=_helper_cli())
    assert result.code == 1
    assert "at least 16 characters" in result.output


def test_serve_command_has_help() -> None:
    result = invoke("helper", "serve", "--help", app=_helper_cli())
    assert result.code == 0
    assert "--token-file" in result.output and "--allow-private" in result.output


def _read_until(process: subprocess.Popen[bytes], marker: bytes, timeout: float) -> bytes:
    """stderr of `process` up to the line holding `marker` (or what came before the timeout)."""
    assert process.stderr is not None
    seen = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stderr, selectors.EVENT_READ)
        while marker not in seen and time.monotonic() < deadline:
            if selector.select(timeout=max(0.0, deadline - time.monotonic())):
                chunk = os.read(process.stderr.fileno(), 4096)
                if not chunk:
                    break
                seen += chunk
    return seen


def _http(url: str, data: bytes | None = None, token: str | None = None) -> tuple[int, Any]:
    # No proxies: the request must go to the loopback helper and nowhere else.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, data=data)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
        request.add_header("Content-Type", "application/json")
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_probe_helper_serve_answers_healthz_and_refuses_loopback_targets(
    tmp_path: Path, ns: FakeNameserver
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    config = tmp_path / "config.toml"
    config.write_text(f'[dns]\nresolvers = ["{ns.udp_spec}"]\n[timeouts]\ndns = 0.5\n')
    env = {k: v for k, v in os.environ.items() if k != "PROBE_HELPER_TOKEN"}
    command = [sys.executable, "-m", "probe", "helper", "serve", "--listen", "127.0.0.1:0"]
    command += ["--token-file", str(token_file), "--config", str(config)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        banner = _read_until(process, b"listening on", timeout=20)
        assert b"listening on http://127.0.0.1:" in banner, banner.decode(errors="replace")
        url = banner.split(b"listening on ")[1].split()[0].decode()
        health_status, health = _http(f"{url}/healthz")
        request = json.dumps(
            encode_request([Target("lo", "self", TargetKind.TCP, "127.0.0.1", (22,))])
        ).encode()
        measure_status, measured = _http(f"{url}/v1/measure", request, TOKEN)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert health_status == 200 and health == {"status": "ok", "version": 1}
    assert measure_status == 200
    assert measured["targets"] == []
    assert measured["refused"][0]["reason"].startswith("127.0.0.1 is a loopback address")
    assert process.returncode == 0, stderr.decode(errors="replace")
    assert b"Traceback" not in stderr


def test_the_helper_client_refuses_the_urls_config_refuses() -> None:
    assert str(measure_url("https://helper.example/proxy")) == (
        "https://helper.example/proxy/v1/measure"
    )
    for url, problem in (
        ("ftp://helper.example/", "must start with http:// or https://"),
        ("https://user:secret@helper.example/", "put the credentials in [helper] token"),
        ("https://helper.example/?a=1", "no query, no spaces"),
        ("https://helper.example:0/", "port 0 is not a port"),
    ):
        with pytest.raises(ValueError, match=re.escape(problem)):
            measure_url(url)
        with pytest.raises(ConfigError, match=re.escape(problem)):
            parse_settings({"helper": {"url": url, "token": "t" * 20}})
