"""The "internet" of the lab, one process in the inet namespace: honest public resolvers
(authoritative for every name the lab serves; UDP/TCP 53 and DoH at /dns-query on 443), and the
web: every catalog host name answered over HTTP on 80 and HTTPS on 443 with the lab CA's
certificate, the Telegram data centres' plain HTTP on 80 and 443, silent TCP listeners (WhatsApp's
5222), another real site with a certificate for its own name only, and a 2 MiB resource on every
site at /big and at the paths of the catalog's transfer targets, for throughput tests.

Run by the lab: `python3 -m tests.lab.servers.inet CONFIG.json`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import html
import ipaddress
import logging
import signal
import ssl
import sys
from typing import Any

import dns.exception
import dns.message
from aiohttp import web

from tests.lab.servers.common import RulesFile, announce_ready, load_config, prepare_process
from tests.lab.servers.dnsserver import Records, answer_from, start_dns_server

DOH_PATH = "/dns-query"
DOH_CONTENT_TYPE = "application/dns-message"
SERVER_HEADER = "censorprobe-lab"
_BULK_PIECE = 4096
_SILENT_IDLE_TIMEOUT = 30.0
log = logging.getLogger("lab.inet")


def site_page(host: str) -> bytes:
    """A site's home page: its name in the title, a few KB of text that depends on the name."""
    name = html.escape(host)
    paragraphs = "".join(
        f"<p>{name} section {i}: lab content served from the inet namespace.</p>\n"
        for i in range(24 + len(host) % 7)
    )
    return (
        '<!doctype html>\n<html><head><meta charset="utf-8">'
        f"<title>{name} - censorprobe lab site</title></head>\n"
        f"<body><h1>Welcome to {name}</h1>\n{paragraphs}</body></html>\n"
    ).encode()


def request_host(request: web.Request) -> str:
    host = request.host or ""
    if host.startswith("["):
        return host[1 : host.find("]")].lower()
    return host.rsplit(":", 1)[0].lower() if host.count(":") == 1 else host.lower()


class Web:
    """The request handler every HTTP(S) listener shares."""

    def __init__(
        self, records: Records, resolvers: set[str], big: bytes, bulk_paths: set[str]
    ) -> None:
        self._records = records
        self._resolvers = resolvers
        self._big = big
        self._bulk_paths = bulk_paths

    async def handle(self, request: web.Request) -> web.StreamResponse:
        headers = {"Server": SERVER_HEADER, "Cache-Control": "no-store"}
        if request.method == "POST":
            await request.read()
        local = request.transport.get_extra_info("sockname") if request.transport else None
        local_address = local[0] if local else None
        if request.path == DOH_PATH and local_address in self._resolvers:
            return await self._doh(request, headers)
        if request.path in self._bulk_paths:
            return await self._bulk(request, headers)
        return web.Response(
            body=site_page(request_host(request) or str(local_address)),
            content_type="text/html",
            charset="utf-8",
            headers=headers,
        )

    async def _bulk(self, request: web.Request, headers: dict[str, str]) -> web.StreamResponse:
        """The large resource, written in small pieces (each its own TLS record), as a CDN's
        dynamic record sizing does: a shaped path then delivers a steady trickle, not one 16 KB
        record every two seconds at 64 kbit/s."""
        response = web.StreamResponse(headers=headers)
        response.content_type = "application/octet-stream"
        response.content_length = len(self._big)
        await response.prepare(request)
        view = memoryview(self._big)
        for start in range(0, len(view), _BULK_PIECE):
            await response.write(view[start : start + _BULK_PIECE].tobytes())
        await response.write_eof()
        return response

    async def _doh(self, request: web.Request, headers: dict[str, str]) -> web.Response:
        if request.method == "POST":
            wire = await request.read()
        else:
            encoded = request.query.get("dns", "")
            try:
                wire = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
            except (binascii.Error, ValueError):
                return web.Response(status=400, headers=headers)
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return web.Response(status=400, headers=headers)
        response = answer_from(query, self._records, authoritative=False)
        return web.Response(body=response.to_wire(), content_type=DOH_CONTENT_TYPE, headers=headers)


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept, read whatever comes, answer nothing (a chat server waiting for its protocol)."""
    try:
        async with asyncio.timeout(_SILENT_IDLE_TIMEOUT):
            while await reader.read(65536):
                pass
    except (TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def serve(config: dict[str, Any]) -> None:
    records: Records = {name: {"A": list(addrs)} for name, addrs in config["records"].items()}
    resolvers = set(config["resolvers"])
    keep: list[object] = []

    rules = RulesFile(config["rules_file"])
    exempt = ipaddress.ip_network(config["delay_exempt_network"])

    async def honest(query: dns.message.Message, peer: str) -> dns.message.Message:
        # The real internet is farther than the censor: while an on-path injector is on, answers
        # to the censored side are held back so that its forgery reliably arrives first.
        delay_ms = float(rules.current().get("dns_delay_ms", 0))
        if delay_ms and ipaddress.ip_address(peer) not in exempt:
            await asyncio.sleep(delay_ms / 1000)
        return answer_from(query, records)

    for address in sorted(resolvers):
        keep.extend(await start_dns_server(address, honest))

    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(config["server_chain"])
    tls.set_alpn_protocols(["http/1.1"])
    app = web.Application(client_max_size=4 << 20)
    handler = Web(
        records,
        resolvers,
        (b"censorprobe lab bulk data\n" * 100_000)[: config["big_bytes"]],
        set(config["bulk_paths"]),
    )
    app.router.add_route("*", "/{tail:.*}", handler.handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.2)
    await runner.setup()
    for address, port, service in config["listeners"]:
        if service == "tcp":
            keep.append(await asyncio.start_server(_silent, host=address, port=port))
        else:
            site = web.TCPSite(
                runner, host=address, port=port, ssl_context=tls if service == "https" else None
            )
            await site.start()
    # Another real site: its own certificate, for its own name only, on 443 (nothing on 80).
    other_address, other_chain = config["other_site"]
    other_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    other_tls.load_cert_chain(other_chain)
    other_tls.set_alpn_protocols(["http/1.1"])
    await web.TCPSite(runner, host=other_address, port=443, ssl_context=other_tls).start()
    log.info("inet serving %d listeners", len(config["listeners"]))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    announce_ready()
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    prepare_process()
    asyncio.run(serve(load_config(sys.argv[1])))


if __name__ == "__main__":
    main()
