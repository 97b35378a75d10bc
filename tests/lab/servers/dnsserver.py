"""A small dnspython DNS server (UDP and TCP on port 53) and the authoritative answer logic the
lab's resolvers share: `answer_from(records)` builds the reply the honest resolvers give, the
ISP resolver uses it for its lies, and the DoH endpoint serves it over HTTPS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import cast

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

# name -> {"A": [...], "AAAA": [...]}; a name absent from the table does not exist.
Records = Mapping[str, Mapping[str, Sequence[str]]]
# A handler gets the query and the asker's address; it returns the response, or None to stay
# silent (a dropped query).
Handler = Callable[[dns.message.Message, str], Awaitable[dns.message.Message | None]]

ANSWER_TTL = 300
_TCP_IDLE_TIMEOUT = 10.0
log = logging.getLogger("lab.dns")


def qname(query: dns.message.Message) -> str | None:
    """The first question's name, lower case, without the final dot."""
    if not query.question:
        return None
    return str(query.question[0].name.to_text(omit_final_dot=True)).lower()


def answer_from(
    query: dns.message.Message, records: Records, *, authoritative: bool = True
) -> dns.message.Message:
    """The reply a server holding `records` gives: the matching rdatas, NOERROR with no answer
    for a type the name lacks, NXDOMAIN for an unknown name."""
    response = dns.message.make_response(query)
    response.flags |= dns.flags.RA
    if authoritative:
        response.flags |= dns.flags.AA
    name = qname(query)
    if name is None:
        response.set_rcode(dns.rcode.FORMERR)
        return response
    entry = records.get(name)
    if entry is None:
        response.set_rcode(dns.rcode.NXDOMAIN)
        return response
    question = query.question[0]
    values = entry.get(dns.rdatatype.to_text(question.rdtype), ())
    if values:
        response.answer.append(
            dns.rrset.from_text_list(
                question.name, ANSWER_TTL, "IN", dns.rdatatype.to_text(question.rdtype), values
            )
        )
    return response


def rcode_response(query: dns.message.Message, rcode: dns.rcode.Rcode) -> dns.message.Message:
    response = dns.message.make_response(query)
    response.flags |= dns.flags.RA
    response.set_rcode(rcode)
    return response


class _UdpServer(asyncio.DatagramProtocol):
    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, int]) -> None:
        task = asyncio.get_running_loop().create_task(self._answer(data, addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, data: bytes, addr: tuple[str | int, int]) -> None:
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return
        response = await self._handler(query, str(addr[0]))
        if response is not None and self._transport is not None:
            self._transport.sendto(response.to_wire(), addr)


async def _serve_tcp(
    handler: Handler, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    peer = str(writer.get_extra_info("peername")[0])
    try:
        while True:
            async with asyncio.timeout(_TCP_IDLE_TIMEOUT):
                (length,) = struct.unpack("!H", await reader.readexactly(2))
                data = await reader.readexactly(length)
            try:
                query = dns.message.from_wire(data)
            except dns.exception.DNSException:
                return
            response = await handler(query, peer)
            if response is None:
                continue
            wire = response.to_wire()
            writer.write(struct.pack("!H", len(wire)) + wire)
            await writer.drain()
    except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def start_dns_server(address: str, handler: Handler, port: int = 53) -> list[object]:
    """Listen on UDP and TCP `address:port`; returns the transports/servers to keep alive."""
    loop = asyncio.get_running_loop()
    udp, _ = await loop.create_datagram_endpoint(
        lambda: _UdpServer(handler), local_addr=(address, port)
    )
    tcp = await asyncio.start_server(
        lambda r, w: _serve_tcp(handler, r, w), host=address, port=port
    )
    log.info("dns on %s:%d", address, port)
    return [udp, tcp]
