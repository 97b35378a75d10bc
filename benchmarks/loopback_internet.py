"""A loopback "internet" for the benchmarks, run as its own process so that the probe's CPU time
is measured apart from the servers'. On addresses of 127.0.0.0/8, at the catalog's own port
numbers (so that the runner's port-dependent steps, such as its protocol probes on 80 and 443,
run as they would in the field):

    web addresses        HTTPS on the HTTPS ports (443; a trustme certificate for *.bench.test)
                         and plain HTTP on every other port the catalog names (80, 5222)
    plain addresses      plain HTTP on all those ports (Telegram's data centres speak HTTP on 443)
    blackhole addresses  a listener on 443 (or each of "blackhole_ports") whose full accept queue
                         makes the kernel drop every SYN (tests/servers/hostile.py, blackhole()):
                         connects time out
    stall addresses      a listener on the HTTPS ports that accepts and never answers: a TLS
                         handshake (or a request) times out, as where a censor drops the
                         ClientHello

and three resolvers for one zone of benchmark names: a fake nameserver (tests/servers/
dns_server.py) with a 4 MiB receive buffer that keeps up with the probe's bursts ("dns"), the same
with the kernel's default buffer, which a burst of a few hundred queries overflows ("burst_limited_
dns", like a home router's DNS forwarder at its limit), and a UDP port that never answers
("silent_dns", the resolver of a dead uplink).

    python3 -m benchmarks.loopback_internet SPEC.json

SPEC.json: {"web": [addresses], "plain": [addresses], "blackhole": [addresses], "tls_ports":
[ports], "plain_ports": [ports], "zone": {name: address}, "ca_file": where to write the CA
certificate}; optional: "blackhole_ports" (default [443]), "stall": [addresses], "tls_names":
[more names the web servers' certificate is valid for, beyond *.bench.test].
When every listener is up, one JSON line goes to stdout: {"dns", "burst_limited_dns",
"silent_dns"} (resolver specs); the process then serves until SIGTERM or SIGINT. Every socket is
bound to a loopback address; ports below 1024 need root (or CAP_NET_BIND_SERVICE).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import resource
import signal
import socket
import ssl
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.servers.dns_server import Behaviour, FakeNameserver
from tests.servers.tls_certs import Pki

HTTPS_PORT = 443
PAGE = b"<html><head><title>Bench Platform</title></head><body>hello</body></html>"
# The backlog of the serving sockets: every probe connection in flight must fit in the accept
# queue, or the kernel drops SYNs and the benchmark measures a retransmission timer instead.
SERVE_BACKLOG = 4096
# The nameserver's UDP receive buffer. The probe sends the A and AAAA queries of hundreds of
# targets at once and never retransmits; with Linux's default 208 KiB (rmem_default) a burst of a
# few hundred datagrams overflows it (UdpRcvbufErrors) and the benchmark would time DNS timeouts.
# Capped by net.core.rmem_max.
DNS_RECEIVE_BUFFER = 4 * 1024 * 1024


def _require_loopback(address: str) -> str:
    """Refuse anything outside 127.0.0.0/8: the benchmark must never listen on a real network."""
    if not ipaddress.ip_address(address).is_loopback:
        raise ValueError(f"{address} is not a loopback address")
    return address


def _web_app() -> web.Application:
    async def page(request: web.Request) -> web.Response:
        # Read what the client sent (a POST body, if any) so that closing never resets it.
        await request.read()
        return web.Response(body=PAGE, content_type="text/html")

    application = web.Application()
    application.router.add_route("*", "/{tail:.*}", page)
    return application


def _listening_socket(address: str, port: int, backlog: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((_require_loopback(address), port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise RuntimeError(f"cannot listen on {address}:{port}: {exc.strerror}") from exc
    sock.setblocking(False)
    return sock


@contextlib.contextmanager
def _blackholes(addresses: Sequence[str], ports: Sequence[int]) -> Iterator[None]:
    """Listeners with backlog 0 whose one accept slot is taken by a connection never accepted:
    Linux drops every further SYN (tcp_abort_on_overflow=0), so a connect waits for its timeout."""
    sockets: list[socket.socket] = []
    try:
        for address in addresses:
            for port in ports:
                listener = _listening_socket(address, port, 0)
                sockets.append(listener)
                sockets.append(socket.create_connection((address, port), timeout=1.0))
        yield
    finally:
        for sock in sockets:
            sock.close()


async def _stalls(addresses: Sequence[str], ports: Sequence[int]) -> list[asyncio.Server]:
    """Listeners that accept and read, and never answer, until the client gives up."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while await reader.read(65536):
                pass
        writer.close()

    servers = []
    for address in addresses:
        for port in ports:
            sock = _listening_socket(_require_loopback(address), port, SERVE_BACKLOG)
            servers.append(await asyncio.start_server(hold, sock=sock, backlog=SERVE_BACKLOG))
    return servers


@contextlib.contextmanager
def _silent_resolver() -> Iterator[str]:
    """A UDP port that receives queries and never answers (nor sends ICMP): the resolver of a
    network whose uplink is dead. Its datagrams pile up unread until the socket is closed."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("127.0.0.1", 0))
        yield f"udp://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def _enlarge_receive_buffer(ns: FakeNameserver) -> None:
    # FakeNameserver has no option for its buffer size: reach its UDP transport's socket.
    transport = getattr(ns, "_udp", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        raise RuntimeError("FakeNameserver has no UDP socket to enlarge")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, DNS_RECEIVE_BUFFER)


def _listeners(spec: dict[str, Any], tls: ssl.SSLContext) -> list[tuple[socket.socket, Any]]:
    """(socket, ssl context or None) for every web and plain address and port."""
    tls_ports = [int(p) for p in spec["tls_ports"]]
    plain_ports = [int(p) for p in spec["plain_ports"] if int(p) not in tls_ports]
    found: list[tuple[socket.socket, Any]] = []
    try:
        for address in spec["web"]:
            for port in (*tls_ports, *plain_ports):
                sock = _listening_socket(address, port, SERVE_BACKLOG)
                found.append((sock, tls if port in tls_ports else None))
        for address in spec["plain"]:
            for port in (*tls_ports, *plain_ports):
                found.append((_listening_socket(address, port, SERVE_BACKLOG), None))
    except BaseException:
        for sock, _ in found:
            sock.close()
        raise
    return found


async def serve(spec: dict[str, Any]) -> None:
    """Serve `spec` until SIGTERM or SIGINT; print the ready line once listening."""
    zone = {name: Behaviour.answer(a=[_require_loopback(a)]) for name, a in spec["zone"].items()}
    pki = Pki()
    pki.ca.cert_pem.write_to_path(spec["ca_file"])
    identity = pki.server("*.bench.test", "bench.test", *spec.get("tls_names", ()))
    runner = web.AppRunner(_web_app(), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        for sock, ssl_context in _listeners(spec, identity.context):
            site = web.SockSite(runner, sock, ssl_context=ssl_context, backlog=SERVE_BACKLOG)
            await site.start()
        with (
            FakeNameserver(zone) as ns,
            FakeNameserver(zone) as burst_limited_ns,
            _blackholes(
                [_require_loopback(a) for a in spec["blackhole"]],
                [int(p) for p in spec.get("blackhole_ports", [HTTPS_PORT])],
            ),
            _silent_resolver() as silent_dns,
        ):
            _enlarge_receive_buffer(ns)
            stalls = await _stalls(spec.get("stall", []), [int(p) for p in spec["tls_ports"]])
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, stop.set)
            line = {
                "dns": ns.udp_spec,
                "burst_limited_dns": burst_limited_ns.udp_spec,
                "silent_dns": silent_dns,
            }
            sys.stdout.write(json.dumps(line) + "\n")
            sys.stdout.flush()
            await stop.wait()
            for server in stalls:
                server.close()
    finally:
        await runner.cleanup()


def _raise_file_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        sys.exit("usage: python3 -m benchmarks.loopback_internet SPEC.json")
    spec = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    _raise_file_limit()
    try:
        asyncio.run(serve(spec))
    except RuntimeError as exc:
        sys.exit(f"loopback internet: {exc}")


if __name__ == "__main__":
    main()
