"""A certificate that does not name an IP-address target is ssl_invalid_hostname, as for names
(OpenSSL reports it as X509_V_ERR_IP_ADDRESS_MISMATCH, not a hostname mismatch); a certificate
that does name the address verifies (the control)."""

from __future__ import annotations

import pytest

from probe.checks.tls import handshake
from tests.servers import hostile
from tests.servers.tls_certs import Pki

# Each check on asyncio's loop and on uvloop (tests/loops.py, probe/eventloop.py).
pytestmark = pytest.mark.both_loops


async def test_certificate_not_naming_the_ip_target_is_ssl_invalid_hostname() -> None:
    pki = Pki()
    async with hostile.tls(pki.wrong_name_server("other.example").context) as server:
        observation = await handshake(server.host, server.port, server.host, pki.check_context())
    assert observation.failure == "ssl_invalid_hostname"
    assert observation.details.verify_failure == "ssl_invalid_hostname"


async def test_certificate_naming_the_ip_target_verifies() -> None:
    pki = Pki()
    async with hostile.tls(pki.server("127.0.0.1").context) as server:
        observation = await handshake(server.host, server.port, server.host, pki.check_context())
    assert observation.ok, observation.failure
