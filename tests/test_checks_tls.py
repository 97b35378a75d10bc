"""The TLS check against real loopback TLS servers with trustme certificates, and against servers
that reset, stall or close during the handshake (how SNI filtering shows up)."""

from __future__ import annotations

import ssl
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from aiohttp import web

from probe.checks import http
from probe.checks.tls import handshake
from probe.model import Layer, Operation
from tests.servers import hostile
from tests.servers.tls_certs import Pki, pem_sha256

# Each check on asyncio's loop and on uvloop (tests/loops.py, probe/eventloop.py).
pytestmark = pytest.mark.both_loops

SITE = "site.example"


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki()


async def test_valid_certificate_is_verified_with_version_alpn_and_chain(pki: Pki) -> None:
    identity = pki.server(SITE, "www.site.example")
    async with hostile.tls(identity.context) as server:
        observation = await handshake(server.host, server.port, SITE, pki.check_context())

    assert observation.ok
    assert observation.layer is Layer.TLS
    assert observation.endpoint == f"127.0.0.1:{server.port}"
    details = observation.details
    assert details.sni == SITE
    assert details.verified is True
    assert details.verify_failure is None
    assert details.version == "TLSv1.3"
    assert details.cipher is not None and details.cipher.startswith("TLS_")
    assert details.alpn == "h2"  # a browser's offer: h2 first
    [leaf] = details.certificates
    assert leaf.sha256 == identity.leaf_sha256
    assert leaf.sans == (SITE, "www.site.example")
    assert "O=Probe Test CA" in leaf.issuer
    assert leaf.not_before is not None and leaf.not_after is not None
    not_before = datetime.fromisoformat(leaf.not_before)
    not_after = datetime.fromisoformat(leaf.not_after)
    assert not_before.tzinfo is not None and not_before < not_after


async def test_presented_chain_is_recorded_leaf_first(pki: Pki) -> None:
    intermediate = pki.ca.create_child_ca()
    leaf = intermediate.issue_cert(SITE)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(context)
    async with hostile.tls(context) as server:
        observation = await handshake(server.host, server.port, SITE, pki.check_context())

    assert observation.ok
    chain = observation.details.certificates
    assert [c.sha256 for c in chain] == [pem_sha256(p.bytes()) for p in leaf.cert_chain_pems]
    assert chain[0].sans == (SITE,)
    assert chain[1].subject == chain[0].issuer


async def test_wrong_name_is_ssl_invalid_hostname_with_the_presented_certificate(
    pki: Pki,
) -> None:
    identity = pki.wrong_name_server("other.example")
    async with hostile.tls(identity.context) as server:
        observation = await handshake(server.host, server.port, SITE, pki.check_context())

    assert observation.failure == "ssl_invalid_hostname"
    assert observation.failed_operation is Operation.TLS_HANDSHAKE
    details = observation.details
    assert details.verified is False
    assert details.verify_failure == "ssl_invalid_hostname"
    assert [c.sha256 for c in details.certificates] == [identity.leaf_sha256]
    assert details.certificates[0].sans == ("other.example",)
    assert details.version == "TLSv1.3"


async def test_unknown_ca_is_ssl_unknown_authority_and_shows_the_interception_issuer(
    pki: Pki,
) -> None:
    identity = pki.unknown_ca_server(SITE)
    async with hostile.tls(identity.context) as server:
        observation = await handshake(server.host, server.port, SITE, pki.check_context())

    assert observation.failure == "ssl_unknown_authority"
    assert observation.failed_operation is Operation.TLS_HANDSHAKE
    assert observation.details.verify_failure == "ssl_unknown_authority"
    [leaf] = observation.details.certificates
    assert leaf.sha256 == identity.leaf_sha256
    assert "O=Rogue Interception CA" in leaf.issuer


async def test_expired_certificate_is_ssl_invalid_certificate(pki: Pki) -> None:
    leaf = pki.ca.issue_cert(SITE, not_before=datetime(2020, 1, 1), not_after=datetime(2020, 2, 1))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(context)
    async with hostile.tls(context) as server:
        observation = await handshake(server.host, server.port, SITE, pki.check_context())

    assert observation.failure == "ssl_invalid_certificate"
    assert (observation.details.certificates[0].not_after or "").startswith("2020-02-01")


async def test_reset_after_the_client_hello_is_connection_reset_in_the_handshake(
    pki: Pki,
) -> None:
    async with hostile.reset_on_accept(after_first_data=True) as server:
        observation = await handshake(
            server.host, server.port, "blocked.example", pki.check_context()
        )

    assert observation.failure == "connection_reset"
    assert observation.failed_operation is Operation.TLS_HANDSHAKE
    assert observation.details.certificates == ()
    assert observation.details.verified is False
    # The censor-like server saw a ClientHello carrying the SNI it keyed on.
    assert server.received[0][:1] == b"\x16"
    assert b"blocked.example" in server.received[0]


async def test_stalled_handshake_is_generic_timeout_after_the_tls_timeout(pki: Pki) -> None:
    async with hostile.silent() as server:
        observation = await handshake(server.host, server.port, SITE, pki.check_context())

    assert observation.failure == "generic_timeout_error"
    assert observation.failed_operation is Operation.TLS_HANDSHAKE
    assert 450 <= observation.duration_ms < 2000
    assert observation.details.connect_ms is not None


async def test_server_closing_during_the_handshake_is_eof_error(pki: Pki) -> None:
    async with hostile.closing() as server:
        observation = await handshake(server.host, server.port, SITE, pki.check_context())

    assert observation.failure == "eof_error"
    assert observation.failed_operation is Operation.TLS_HANDSHAKE


async def test_non_tls_answer_is_ssl_failed_handshake(pki: Pki) -> None:
    async with hostile.garbage() as server:
        observation = await handshake(server.host, server.port, SITE, pki.check_context())

    assert observation.failure == "ssl_failed_handshake"
    assert observation.failed_operation is Operation.TLS_HANDSHAKE


async def test_refused_port_fails_at_connect_not_at_the_handshake(pki: Pki) -> None:
    async with hostile.refused_port() as server:
        observation = await handshake(server.host, server.port, SITE, pki.check_context())

    assert observation.failure == "connection_refused"
    assert observation.failed_operation is Operation.CONNECT


async def test_h2_offer_does_not_leak_into_the_http_checks_context(pki: Pki) -> None:
    # Both checks share ctx.ssl_context; aiohttp speaks HTTP/1.1 only, so the HTTP check must
    # still offer http/1.1 alone after the TLS check offered h2.
    chosen: list[str | None] = []

    async def page(request: web.Request) -> web.Response:
        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        chosen.append(ssl_object.selected_alpn_protocol() if ssl_object else None)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", page)
    ctx = pki.check_context()
    async with hostile.web_app(app, ssl_context=pki.server(SITE).context) as server:
        tls_observation = await handshake(server.host, server.port, SITE, ctx)
        http_observation = await http.fetch(
            f"https://{SITE}:{server.port}/", ctx, address=server.host
        )

    assert tls_observation.details.alpn == "h2"
    assert http_observation.ok
    assert chosen == ["http/1.1"]


def test_checks_need_neither_trustme_nor_cryptography() -> None:
    # trustme (and the cryptography package under it) is a test dependency only.
    code = (
        "import sys, probe.checks.tcp, probe.checks.tls, probe.checks.http; "
        "print(sorted(m for m in ('trustme', 'cryptography') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        check=True,
    )
    assert result.stdout.strip() == "[]"
