"""`probe locate`: find the hop where interference starts, with a TTL-limited trigger.

The trigger is what a censor reacts to: a TLS ClientHello with the blocked SNI, an HTTP request
with the blocked Host, or a DNS query for the blocked name. It is sent with IP TTL 1, 2, ... and
the reset or forged answer that first comes back with a router's ICMP time-exceeded shows where
the censor sits (probe.rawnet.locate_interference). Needs root or CAP_NET_RAW.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import socket
import ssl
import sys
from typing import Annotated, Any, Literal

import dns.message
import typer
from rich.table import Table

from probe.cli.base import (
    EXIT_ERROR,
    ProbeCommand,
    consent_or_exit,
    console,
    err,
    user_errors,
)
from probe.cli.common import RisksOption
from probe.cli.terminal import plain
from probe.rawnet import locate_interference, raw_capability


def client_hello(sni: str) -> bytes:
    """The first flight of a real TLS handshake for `sni`, as Python's ssl module sends it."""
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=sni)
    # The ClientHello is written at once; the handshake then waits for the server.
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def http_request(host: str) -> bytes:
    return (
        f"GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: censorprobe-locate\r\n"
        "Accept: */*\r\nConnection: close\r\n\r\n"
    ).encode("ascii")


def _address(target: str) -> str:
    """`target` as an IPv4 address (a name is resolved by the system resolver)."""
    try:
        address = ipaddress.ip_address(target)
    except ValueError:
        try:
            infos = socket.getaddrinfo(target, None, socket.AF_INET, socket.SOCK_STREAM)
        except OSError as exc:
            raise typer.BadParameter(f"cannot resolve {target!r}: {exc}") from None
        return str(infos[0][4][0])
    if address.version != 4:
        raise typer.BadParameter("the TTL-limited probe is IPv4 only")
    return str(address)


def _trigger(
    sni: str | None, host: str | None, dns_name: str | None
) -> tuple[bytes, int, Literal["tcp", "udp"], str]:
    given = [(k, v) for k, v in (("--sni", sni), ("--host", host), ("--dns", dns_name)) if v]
    if len(given) != 1:
        raise typer.BadParameter("give exactly one trigger: --sni NAME, --host NAME or --dns NAME")
    if sni:
        try:
            return client_hello(sni), 443, "tcp", f"TLS ClientHello with SNI {sni}"
        except (UnicodeError, ValueError) as exc:  # the name fails IDNA encoding
            raise typer.BadParameter(f"--sni {sni!r} is not a host name: {exc}") from None
    if host:
        try:
            return http_request(host), 80, "tcp", f"HTTP request with Host {host}"
        except UnicodeEncodeError:
            raise typer.BadParameter("--host must be an ASCII name") from None
    assert dns_name is not None
    try:
        query = dns.message.make_query(dns_name, "A").to_wire()
    except Exception as exc:  # dnspython raises several name errors
        raise typer.BadParameter(f"--dns {dns_name!r} is not a DNS name: {exc}") from None
    return query, 53, "udp", f"DNS A query for {dns_name}"


def _hop_row(hop: dict[str, Any]) -> tuple[str, str, str]:
    router = hop.get("icmp_time_exceeded_from") or "-"
    if hop.get("failure"):
        seen = f"{hop['failure']} ({hop.get('failed_operation')})"
    elif "answers" in hop:
        answers = hop["answers"]
        seen = (
            "; ".join(f"answer {a.get('addresses')} (IP TTL {a.get('ip_ttl')})" for a in answers)
            or "no answer"
        )
    elif hop.get("reset"):
        seen = f"reset (IP TTL {hop.get('reset_ip_ttls')}, SYN-ACK {hop.get('syn_ack_ip_ttl')})"
    elif hop.get("reached_server"):
        seen = "the server's reply"
    else:
        seen = "nothing"
    verdict = "interference" if hop.get("injected") else ""
    return router, seen, verdict


def register(app: typer.Typer) -> None:
    @app.command(cls=ProbeCommand)
    @user_errors
    def locate(
        target: Annotated[
            str, typer.Argument(metavar="ADDRESS", help="The server's IPv4 address (or a name).")
        ],
        sni: Annotated[
            str | None,
            typer.Option(
                metavar="NAME", help="Trigger: a TLS ClientHello with this SNI (port 443)."
            ),
        ] = None,
        host: Annotated[
            str | None,
            typer.Option(metavar="NAME", help="Trigger: an HTTP request with this Host (port 80)."),
        ] = None,
        dns_name: Annotated[
            str | None,
            typer.Option(
                "--dns", metavar="NAME", help="Trigger: a DNS A query for this name (UDP port 53)."
            ),
        ] = None,
        port: Annotated[
            int | None,
            typer.Option(metavar="N", min=1, max=65535, help="Port, instead of the trigger's own."),
        ] = None,
        max_hops: Annotated[
            int, typer.Option(metavar="N", min=1, max=64, help="Highest IP TTL to try.")
        ] = 30,
        hop_timeout: Annotated[
            float,
            typer.Option(metavar="SECONDS", min=0.1, max=30.0, help="Seconds to wait at each hop."),
        ] = 1.0,
        as_json: Annotated[bool, typer.Option("--json", help="Print the details as JSON.")] = False,
        i_understand_the_risks: RisksOption = False,
    ) -> None:
        """Find the hop where a censor interferes, with a TTL-limited trigger (root/CAP_NET_RAW)."""
        payload, default_port, protocol, described = _trigger(sni, host, dns_name)
        capability = raw_capability()
        if not capability.available:
            err.print(f"[red]error:[/red] {plain(capability.note or 'raw sockets unavailable')}")
            raise typer.Exit(EXIT_ERROR)
        address = _address(target)
        consent_or_exit(sys.stdin.isatty(), i_understand_the_risks)
        details = asyncio.run(
            locate_interference(
                address,
                port or default_port,
                payload,
                max_hops,
                protocol=protocol,
                hop_timeout=hop_timeout,
            )
        )
        if as_json:
            print(json.dumps(details, indent=2, default=str))
        else:
            table = Table(title=f"{described} to {address}:{port or default_port}")
            for column in ("hop", "time-exceeded from", "what came back", ""):
                table.add_column(column, overflow="fold")
            for hop in details.get("hops", ()):
                table.add_row(*map(plain, (hop.get("ttl"), *_hop_row(hop))))
            console().print(table)
            console().print(plain(details.get("note") or details.get("failure") or ""))
        if not details.get("available"):
            raise typer.Exit(EXIT_ERROR)
