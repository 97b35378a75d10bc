"""`probe locate` without a network: the triggers it builds, and how it refuses bad input, a
process without raw sockets, and a user who has not consented. (Locating a real censor in a
namespace topology: tests/test_rawnet.py.)"""

from __future__ import annotations

import ssl
from typing import Any

import dns.message
import pytest

import probe.cli.locate as locate_cli
from probe.cli.base import EXIT_ERROR, EXIT_NO_CONSENT
from probe.cli.locate import client_hello, http_request
from probe.rawnet import NEEDS_RAW_NOTE, RawCapability
from tests.cli import invoke


def _sni_seen_by_a_tls_server(hello: bytes) -> list[str | None]:
    """Feed `hello` to a real OpenSSL server and return the SNI its callback saw."""
    seen: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.sni_callback = lambda _sock, name, _ctx: seen.append(name)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    server = context.wrap_bio(incoming, outgoing, server_side=True)
    incoming.write(hello)
    with pytest.raises(ssl.SSLError):
        server.do_handshake()  # no certificate: the server gives up after reading the hello
    return seen


def test_sni_trigger_is_a_client_hello_a_tls_server_reads_the_name_from() -> None:
    hello = client_hello("twitter.com")
    assert hello[:1] == b"\x16"  # a TLS handshake record
    assert _sni_seen_by_a_tls_server(hello) == ["twitter.com"]


def test_host_trigger_is_a_complete_http_request_for_the_name() -> None:
    request = http_request("facebook.com")
    assert request.startswith(b"GET / HTTP/1.1\r\n")
    assert b"\r\nHost: facebook.com\r\n" in request and request.endswith(b"\r\n\r\n")


@pytest.fixture
def no_packets(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Replaces the TTL-limited probe: any call is recorded and fails the test's expectations."""
    calls: list[Any] = []

    async def refuse(*args: Any, **kwargs: Any) -> dict[str, Any]:
        calls.append((args, kwargs))
        return {"available": True, "hops": [], "note": "should not have run"}

    monkeypatch.setattr(locate_cli, "locate_interference", refuse)
    monkeypatch.setattr(locate_cli, "raw_capability", lambda: RawCapability(True))
    return calls


@pytest.mark.parametrize(
    "options",
    [
        [],
        ["--sni", "a.example", "--host", "a.example"],
        ["--dns", "a..example"],
        ["--sni", "a..example"],
        ["--sni", "x" * 300 + ".example"],
        ["--host", "blocked.\u00e9xample"],
    ],
    ids=["none", "two", "bad dns name", "empty sni label", "long sni label", "non-ascii host"],
)
def test_locate_without_exactly_one_valid_trigger_is_a_usage_error(
    options: list[str], no_packets: list[Any]
) -> None:
    result = invoke("locate", "192.0.2.1", *options)
    assert result.code == 2, result.output
    assert any(m in result.output for m in ("trigger", "not a DNS name", "not a host", "ASCII"))
    assert not no_packets


def test_locate_without_raw_sockets_says_why_and_sends_nothing(
    no_packets: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(locate_cli, "raw_capability", lambda: RawCapability(False, NEEDS_RAW_NOTE))
    result = invoke("locate", "192.0.2.1", "--sni", "x.com", consent=True)
    assert result.code == EXIT_ERROR
    assert "CAP_NET_RAW" in result.output and not no_packets


def test_locate_without_consent_sends_nothing(no_packets: list[Any]) -> None:
    result = invoke("locate", "192.0.2.1", "--host", "x.com")
    assert result.code == EXIT_NO_CONSENT and not no_packets


def test_locate_sends_the_trigger_to_the_address_and_port_asked_for(
    no_packets: list[Any],
) -> None:
    options = ["--dns", "t.me", "--port", "5353", "--max-hops", "7"]
    result = invoke("locate", "192.0.2.1", *options, consent=True)
    assert result.code == 0, result.output
    [(args, kwargs)] = no_packets
    address, port, payload, max_hops = args
    assert (address, port, max_hops, kwargs["protocol"]) == ("192.0.2.1", 5353, 7, "udp")
    assert dns.message.from_wire(payload).question[0].name.to_text() == "t.me."
