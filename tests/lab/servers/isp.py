"""The ISP's services, one process in the censor namespace: the recursive resolver the client's
resolv.conf points at (it forwards to the honest resolvers in inet, unless its rules say to lie,
answer NXDOMAIN or hand out a CDN's other address), the national blockpage on 10.10.34.34-36:80,
and the intercepting TLS server the censor DNATs port 443 to (a certificate from an untrusted CA).

The resolver re-reads its rules file whenever it changes (the lab replaces it atomically), so
`lab.apply()` takes effect for the very next query.

Run by the lab: `python3 -m tests.lab.servers.isp CONFIG.json`.
"""

from __future__ import annotations

import asyncio
import html
import logging
import signal
import ssl
import sys
from typing import Any

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.rcode
from aiohttp import web

from tests.lab.blockpage import BLOCKPAGE_BODY, BLOCKPAGE_STATUS
from tests.lab.servers.common import RulesFile, announce_ready, load_config, prepare_process
from tests.lab.servers.dnsserver import answer_from, qname, rcode_response, start_dns_server

UPSTREAM_TIMEOUT = 2.0
log = logging.getLogger("lab.isp")


class IspResolver:
    """The recursive resolver: rules first ({"answers": {name: {"A": [...]}}, "nxdomain": [...]}),
    otherwise the honest answer from upstream."""

    def __init__(self, rules: RulesFile, upstream: str) -> None:
        self._rules = rules
        self._upstream = upstream

    async def __call__(self, query: dns.message.Message, peer: str) -> dns.message.Message:
        rules = self._rules.current()
        name = qname(query)
        answers = rules.get("answers", {})
        if name is not None and name in rules.get("nxdomain", ()):
            return rcode_response(query, dns.rcode.NXDOMAIN)
        if name is not None and name in answers:
            return answer_from(query, {name: answers[name]}, authoritative=False)
        try:
            response = await dns.asyncquery.udp(query, self._upstream, timeout=UPSTREAM_TIMEOUT)
        except (dns.exception.DNSException, OSError) as exc:
            log.info("upstream failed for %s: %r", name, exc)
            return rcode_response(query, dns.rcode.SERVFAIL)
        response.flags &= ~dns.flags.AA
        return response


async def blockpage(request: web.Request) -> web.Response:
    return web.Response(
        status=BLOCKPAGE_STATUS,
        body=BLOCKPAGE_BODY,
        content_type="text/html",
        headers={"Connection": "close"},
    )


async def intercepted(request: web.Request) -> web.Response:
    host = html.escape((request.host or "").rsplit(":", 1)[0])
    body = f"<html><head><title>{host}</title></head><body>{host}</body></html>\n"
    return web.Response(text=body, content_type="text/html")


async def serve(config: dict[str, Any]) -> None:
    resolver = IspResolver(RulesFile(config["rules_file"]), config["upstream"])
    keep = await start_dns_server(config["resolver"], resolver)

    block_app = web.Application()
    block_app.router.add_route("*", "/{tail:.*}", blockpage)
    block_runner = web.AppRunner(
        block_app, access_log=None, handle_signals=False, shutdown_timeout=0.2
    )
    await block_runner.setup()
    for address in config["blockpage_addresses"]:
        await web.TCPSite(block_runner, host=address, port=80).start()

    interception = config["interception"]
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(interception["chain"])
    mitm_app = web.Application()
    mitm_app.router.add_route("*", "/{tail:.*}", intercepted)
    mitm_runner = web.AppRunner(
        mitm_app, access_log=None, handle_signals=False, shutdown_timeout=0.2
    )
    await mitm_runner.setup()
    await web.TCPSite(
        mitm_runner, host=interception["address"], port=interception["port"], ssl_context=tls
    ).start()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    announce_ready()
    await stop.wait()
    del keep
    await block_runner.cleanup()
    await mitm_runner.cleanup()


def main() -> None:
    prepare_process()
    asyncio.run(serve(load_config(sys.argv[1])))


if __name__ == "__main__":
    main()
