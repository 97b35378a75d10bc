"""Adversarial echo suite: a hostile server, resolver or censor that echoes the volunteer's
address back in a place the scrubber must know to look (a certificate's names, a DNS CNAME, a
redirect's query string, a body cut at the stored prefix, HTML character references) never gets
it into the database or an export, nor a size of what held it (a protocol probe's answer). Each
case has its negative control: the same echo of another address stays, so the test proves the
scrubber matched the address, not the place."""

from __future__ import annotations

import asyncio
import io
import ipaddress
from pathlib import Path

import pytest
from aiohttp import web

from analysis.export import write_measurements_jsonl
from probe.checks import CheckContext, Timeouts
from probe.checks.dns import resolve
from probe.checks.http import fetch
from probe.checks.tcp import protocol_probe
from probe.checks.tls import handshake
from probe.model import Measurement, Observation
from probe.privacy import SCRUBBED, Scrubber, ScrubbingSink
from probe.resolvers import parse_resolver
from probe.store import Store
from tests.servers import hostile
from tests.servers.dns_server import Behaviour, FakeNameserver
from tests.servers.tls_certs import Pki
from tests.store_rows import make_run

OWN_V4 = ipaddress.IPv4Address("5.160.12.34")
OTHER_V4 = ipaddress.IPv4Address("5.160.12.35")  # the next address: another volunteer


def _forms(address: ipaddress.IPv4Address) -> tuple[str, ...]:
    """What a reader of the data would search for: the address dotted and as an rDNS name."""
    return (str(address), str(address).replace(".", "-"))


def _stored(tmp_path: Path, observation: Observation) -> str:  # type: ignore[type-arg]
    """The database files and the JSON Lines export after `observation` went through the
    run's scrubbing sink (the scrubber knows OWN_V4 only), as one text."""
    path = tmp_path / "echo.db"
    with Store.open(path) as store:
        run = make_run(store.probe_id())
        store.start_run(run)
        ScrubbingSink(store, Scrubber([OWN_V4])).save_measurements(
            [Measurement(run.id, "p", "t", observation)]
        )
        out = io.StringIO()
        write_measurements_jsonl(store, out)
    files = b"".join(p.read_bytes() for p in tmp_path.glob("echo.db*"))
    return files.decode("latin-1") + out.getvalue()


# -- a certificate naming the volunteer ----------------------------------------------------------


async def _certificate_naming(address: ipaddress.IPv4Address, tmp_path: Path) -> str:
    # An interception box can mint a leaf naming the client it intercepts; the probe records the
    # chain's names (subject, SANs) as evidence.
    pki = Pki()
    names = ("127.0.0.1", str(address), f"{str(address).replace('.', '-')}.dyn.example.ir")
    async with hostile.tls(pki.server(*names).context) as server:
        observation = await handshake(server.host, server.port, server.host, pki.check_context())
    assert observation.ok, observation.failure
    sans = " ".join(" ".join(c.sans) for c in observation.details.certificates)
    assert all(form in sans for form in _forms(address))  # the check did record them
    return _stored(tmp_path, observation)


async def test_an_address_in_a_certificates_names_is_not_stored(tmp_path: Path) -> None:
    stored = await _certificate_naming(OWN_V4, tmp_path)
    assert [form for form in _forms(OWN_V4) if form in stored] == []
    assert SCRUBBED in stored


async def test_another_address_in_a_certificates_names_is_stored(tmp_path: Path) -> None:
    stored = await _certificate_naming(OTHER_V4, tmp_path)
    assert all(form in stored for form in _forms(OTHER_V4))


# -- a resolver echoing the volunteer in a CNAME -------------------------------------------------

_DNS_CTX = CheckContext(timeouts=Timeouts(dns=2.0), dns_second_answer_window=0.05)


async def _cname_naming(address: ipaddress.IPv4Address, tmp_path: Path) -> str:
    # "whoami" services answer with a CNAME that spells the asker's address.
    cname = f"{str(address).replace('.', '-')}.whoami.example."
    zone = {"whoami.example": Behaviour.answer(a=["192.0.2.7"], cname=cname)}
    async with FakeNameserver(zone) as ns:
        observation = await resolve("whoami.example", parse_resolver(ns.udp_spec), _DNS_CTX)
    assert observation.ok and observation.details.addresses == ("192.0.2.7",)
    assert any(cname.rstrip(".") in a.value for a in observation.details.answers)
    return _stored(tmp_path, observation)


async def test_an_address_echoed_in_a_dns_cname_is_not_stored(tmp_path: Path) -> None:
    stored = await _cname_naming(OWN_V4, tmp_path)
    assert [form for form in _forms(OWN_V4) if form in stored] == []
    assert "whoami.example" in stored and "192.0.2.7" in stored  # the measurement stays


async def test_another_address_echoed_in_a_dns_cname_is_stored(tmp_path: Path) -> None:
    stored = await _cname_naming(OTHER_V4, tmp_path)
    assert str(OTHER_V4).replace(".", "-") in stored


# -- a redirect carrying the volunteer in its query string ---------------------------------------


async def _redirect_naming(address: ipaddress.IPv4Address, tmp_path: Path) -> str:
    # A blocking box that redirects to its blockpage with the client in the query string.
    async def away(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"/blocked?client={address}&rdns={str(address).replace('.', '-')}")

    async def blocked(request: web.Request) -> web.Response:
        return web.Response(text="<title>Blocked</title>", content_type="text/html")

    application = web.Application()
    application.router.add_get("/", away)
    application.router.add_get("/blocked", blocked)
    async with hostile.web_app(application) as server:
        observation = await fetch(server.url, Pki().check_context())
    assert observation.ok and observation.details.status == 200
    assert str(address) in (observation.details.final_url or "")
    return _stored(tmp_path, observation)


async def test_an_address_in_a_redirects_query_string_is_not_stored(tmp_path: Path) -> None:
    stored = await _redirect_naming(OWN_V4, tmp_path)
    assert [form for form in _forms(OWN_V4) if form in stored] == []
    assert "/blocked?client=" in stored  # the redirect itself stays


async def test_another_address_in_a_redirects_query_string_is_stored(tmp_path: Path) -> None:
    stored = await _redirect_naming(OTHER_V4, tmp_path)
    assert all(form in stored for form in _forms(OTHER_V4))


# -- a body whose stored prefix ends inside the address ------------------------------------------

_PREFIX = 2048


def _page_cut_at_the_prefix(address: ipaddress.IPv4Address) -> bytes:
    """A page whose address starts a few bytes before the stored prefix ends, so the prefix holds
    only its first octets: "5.160.1" narrows a volunteer to a /20 or so."""
    text = str(address)
    head = "<html><body>Your IP: "
    padding = "x" * (_PREFIX - len(head) - len(text) + 4)
    return f"{head}{padding}{text}</body></html>".encode()


async def _prefix_of(address: ipaddress.IPv4Address, tmp_path: Path) -> tuple[str, str]:
    async def page(_request: web.Request) -> web.Response:
        return web.Response(body=_page_cut_at_the_prefix(address), content_type="text/html")

    application = web.Application()
    application.router.add_get("/", page)
    ctx = CheckContext(
        ssl_context=Pki().client_context(), body_prefix_bytes=_PREFIX, scrubber=Scrubber([OWN_V4])
    )
    async with hostile.web_app(application) as server:
        observation = await fetch(server.url, ctx)
    assert observation.ok
    return observation.details.body_prefix, _stored(tmp_path, observation)


async def test_an_address_cut_by_the_stored_body_prefix_leaves_none_of_it(tmp_path: Path) -> None:
    prefix, stored = await _prefix_of(OWN_V4, tmp_path)
    cut = str(OWN_V4)[:-4]  # what the raw prefix would end with
    assert not prefix.endswith(cut)
    assert cut not in stored
    assert prefix.startswith("<html><body>Your IP: xxx")


async def test_another_address_cut_by_the_stored_body_prefix_is_cut_as_it_was(
    tmp_path: Path,
) -> None:
    prefix, _ = await _prefix_of(OTHER_V4, tmp_path)
    assert prefix.endswith(str(OTHER_V4)[:-4])
    assert len(prefix.encode()) == _PREFIX


# -- HTML character references -------------------------------------------------------------------


def _references(address: ipaddress.IPv4Address) -> dict[str, str]:
    text = str(address)
    return {
        "decimal references": "".join(f"&#{ord(c)};" for c in text),
        "hex references": "".join(f"&#x{ord(c):x};" for c in text),
        "references for the dots only": text.replace(".", "&#46;"),
        "named references for the dots": text.replace(".", "&period;"),
    }


@pytest.mark.parametrize("form", sorted(_references(OWN_V4)))
def test_an_address_written_as_html_character_references_is_scrubbed(form: str) -> None:
    spelled = _references(OWN_V4)[form]
    scrubbed = Scrubber([OWN_V4]).text(f"<span>{spelled}</span>")
    assert scrubbed == f"<span>{SCRUBBED}</span>"


@pytest.mark.parametrize("form", sorted(_references(OTHER_V4)))
def test_another_address_written_as_html_character_references_stays(form: str) -> None:
    spelled = _references(OTHER_V4)[form]
    assert Scrubber([OWN_V4]).text(f"<span>{spelled}</span>") == f"<span>{spelled}</span>"


# -- a protocol probe's answer sized as stored ---------------------------------------------------


async def _answer_size(address: ipaddress.IPv4Address) -> tuple[int, int]:
    """The protocol probe's stored response_bytes for a server answering the unknown bytes with
    an error page that quotes the client, and the raw answer's size."""
    answer = f"HTTP/1.1 400 Bad Request\r\n\r\nBad request from {address}\r\n".encode()

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(4096)
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(reply, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    ctx = CheckContext(scrubber=Scrubber([OWN_V4]))
    try:
        observation = await protocol_probe("127.0.0.1", port, ctx)
    finally:
        server.close()
        await server.wait_closed()
    assert observation.ok, observation.failure
    return observation.details.response_bytes, len(answer)


async def test_a_protocol_answer_echoing_the_address_is_sized_as_stored() -> None:
    stored, raw = await _answer_size(OWN_V4)
    assert stored == raw - len(str(OWN_V4)) + len(SCRUBBED)


async def test_a_protocol_answer_echoing_another_address_keeps_its_size() -> None:
    stored, raw = await _answer_size(OTHER_V4)
    assert stored == raw
