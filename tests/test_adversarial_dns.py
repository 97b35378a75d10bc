"""Adversarial DNS suite: a flood of replies after the first answer is recorded up to a cap per
query, and the measurement says the cap was hit; an ordinary injection (two replies) is recorded
whole (the control)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import dns.message
import dns.rrset

from probe.checks import CheckContext, Timeouts
from probe.checks.dns import MAX_RECORDED_REPLIES, resolve
from probe.codec import encode_details
from probe.resolvers import parse_resolver
from tests.servers.dns_server import Behaviour, FakeNameserver

CTX = CheckContext(timeouts=Timeouts(dns=2.0), dns_second_answer_window=0.5)


class _Flood(asyncio.DatagramProtocol):
    """Answers every query, then sends `copies` more replies to it (forged and garbage)."""

    def __init__(self, copies: int) -> None:
        self.copies = copies
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        query = dns.message.from_wire(data)
        reply = dns.message.make_response(query)
        name = query.question[0].name
        rdtype = query.question[0].rdtype
        if rdtype == 1:
            reply.answer.append(dns.rrset.from_text(name, 60, "IN", "A", "192.0.2.7"))
        wire = reply.to_wire()
        self.transport.sendto(wire, addr)
        for i in range(self.copies):
            self.transport.sendto(wire if i % 2 else b"\x00garbage" * 8, addr)


@asynccontextmanager
async def flooding_resolver(copies: int) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Flood(copies), local_addr=("127.0.0.1", 0)
    )
    try:
        yield f"udp://127.0.0.1:{transport.get_extra_info('sockname')[1]}"
    finally:
        transport.close()


async def test_a_reply_flood_is_recorded_up_to_the_cap_and_says_so() -> None:
    async with flooding_resolver(3000) as spec:
        observation = await resolve("flood.example", parse_resolver(spec), CTX)
    details = observation.details
    assert observation.ok and details.addresses == ("192.0.2.7",)
    recorded = len(details.responses) + len(details.aaaa_responses)
    recorded += len(details.unexpected_responses)
    assert recorded <= 2 * MAX_RECORDED_REPLIES
    assert details.replies_capped is True
    assert len(json.dumps(encode_details(details))) < 20_000  # was 400-600 KB for one query


async def test_an_ordinary_injection_is_recorded_whole_without_the_cap() -> None:
    zone = {"blocked.example": Behaviour.inject(forged=["10.10.34.35"], a=["192.0.2.7"])}
    async with FakeNameserver(zone) as ns:
        observation = await resolve("blocked.example", parse_resolver(ns.udp_spec), CTX)
    details = observation.details
    assert details.second_answer and len(details.responses) == 2
    assert details.replies_capped is None
