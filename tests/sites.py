"""The loopback 'internet' the CLI tests run the probe against: names in a fake resolver, an
HTTPS site with a test CA, a refused port, and a config.toml pointing at them (a module-scoped
`site` fixture, imported by the test modules that use it)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from tests.servers import hostile
from tests.servers.background import background
from tests.servers.dns_server import Behaviour, FakeNameserver
from tests.servers.tls_certs import Pki

PAGE = "<html><head><title>Loopback Platform</title></head><body>hello</body></html>"


def _web_app() -> web.Application:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    application = web.Application()
    application.router.add_route("*", "/{tail:.*}", page)
    return application


@dataclass
class Site:
    """A loopback 'internet': names in a fake resolver, an HTTPS site, a refused port."""

    config: Path
    ns: FakeNameserver
    https_port: int
    refused_port: int
    tmp: Path


def write_site_config(
    tmp: Path, ns: FakeNameserver, ca_pem: Path, https_port: int, refused_port: int, control: str
) -> Path:
    catalog = tmp / "catalog"
    catalog.mkdir(exist_ok=True)
    (catalog / "lo.toml").write_text(
        f"""platform = "lo"
[[targets]]
url = "https://ok.lo.test:{https_port}/"
[[targets]]
kind = "tcp"
host = "refused.lo.test"
ports = [{refused_port}]
[[targets]]
kind = "dns"
host = "nx.lo.test"
[[targets]]
kind = "http"
host = "127.0.0.1"
ports = [{https_port - 0}]
method = "POST"
name = "plain-post"
"""
    )
    (catalog / "controls.toml").write_text(
        f'platform = "control"\ncontrol = true\n[[targets]]\nurl = "{control}"\n'
    )
    config = tmp / "config.toml"
    config.write_text(
        f"""[probe]
platforms = ["lo"]
[timeouts]
dns = 1.0
connect = 1.0
tls = 1.0
http = 2.0
[dns]
resolvers = ["{ns.udp_spec}"]
second_answer_window = 0.05
[tls]
ca_file = "{ca_pem}"
[catalog]
dir = "{catalog}"
"""
    )
    return config


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("site")
    pki = Pki()
    ca_pem = tmp / "ca.pem"
    pki.ca.cert_pem.write_to_path(str(ca_pem))
    identity = pki.server("ok.lo.test", "control.lo.test")
    zone = {
        "ok.lo.test": Behaviour.answer(a=["127.0.0.1"]),
        "control.lo.test": Behaviour.answer(a=["127.0.0.1"]),
        "refused.lo.test": Behaviour.answer(a=["127.0.0.1"]),
        "nx.lo.test": Behaviour.nxdomain(),
    }
    with (
        FakeNameserver(zone) as ns,
        background(
            lambda: hostile.web_app(_web_app(), ssl_context=identity.context),
            hostile.refused_port,
        ) as (https, reset),
    ):
        control = f"https://control.lo.test:{https.port}/"
        config = write_site_config(tmp, ns, ca_pem, https.port, reset.port, control)
        yield Site(config, ns, https.port, reset.port, tmp)
