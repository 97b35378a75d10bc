"""A recording web site on loopback for the HTTP check's tests: a page with a title, redirect
hops, a redirect to anywhere, two sites on one port of two loopback addresses, and the system
resolver replaced by a table the test fills in."""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.servers import hostile

SITE = "site.example"
PAGE = (
    "<!doctype html><html><head><meta charset='utf-8'>"
    "<TITLE id=t>\n  Caf\u00e9 &amp;   Blocked\n</title></head><body>"
    + "<p>hello</p>" * 50
    + "</body></html>"
)


@pytest.fixture(autouse=True)
def system_resolver(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The system resolver, replaced by a table the test fills in: no test may send a DNS query
    to the machine's real resolver, and a name missing from the table fails as NXDOMAIN."""
    names: dict[str, str] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        try:
            ipaddress.ip_address(name)
        except ValueError:
            if name not in names:
                raise socket.gaierror(socket.EAI_NONAME, "no such name in the test") from None
            name = names[name]
        return real(name, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(aiohttp, "DefaultResolver", aiohttp.ThreadedResolver)
    yield names


class Site:
    """A small web application that records what each request looked like on arrival."""

    def __init__(self, name: str = "site") -> None:
        self.name = name
        self.requests: list[dict[str, Any]] = []
        self.app = web.Application()
        self.app.router.add_route("*", "/", self.page)
        self.app.router.add_get("/hop/{n}", self.hop)
        self.app.router.add_get("/away", self.away)
        self.redirect_elsewhere = ""

    def _record(self, request: web.Request) -> None:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        self.requests.append(
            {
                "method": request.method,
                "host": request.headers.get("Host"),
                "path": request.path,
                "local_address": sockname[0] if sockname else None,
                "user_agent": request.headers.get("User-Agent", ""),
            }
        )

    async def page(self, request: web.Request) -> web.Response:
        self._record(request)
        return web.Response(text=PAGE, content_type="text/html", headers={"X-Served-By": self.name})

    async def hop(self, request: web.Request) -> web.Response:
        self._record(request)
        n = int(request.match_info["n"])
        raise web.HTTPFound(f"/hop/{n - 1}" if n > 1 else "/")

    async def away(self, request: web.Request) -> web.Response:
        self._record(request)
        raise web.HTTPMovedPermanently(self.redirect_elsewhere)


@asynccontextmanager
async def same_port_on_two_addresses(
    first: Site, second: Site
) -> AsyncIterator[tuple[hostile.Listener, hostile.Listener]]:
    """`first` on 127.0.0.1 and `second` on 127.0.0.2, on the same port number."""
    for _ in range(20):
        async with AsyncExitStack() as stack:
            one = await stack.enter_async_context(hostile.web_app(first.app))
            try:
                two = await stack.enter_async_context(
                    hostile.web_app(second.app, host="127.0.0.2", port=one.port)
                )
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                continue
            yield one, two
            return
    raise RuntimeError("no port free on both loopback addresses")
