"""What a received packet's header fields (IP TTL, IP ID, DF) and DNS payload say, as the
details the captures record; no scapy import here (the packets come in already parsed)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype

Details = dict[str, Any]

# The initial TTLs operating systems and middleboxes use; the smallest one at or above an
# observed TTL is the likely initial value, which gives the sender's distance in hops.
INITIAL_TTLS = (32, 64, 128, 255)


def ip_fields(ip: Any) -> Details:
    ttl = int(ip.ttl)
    return {
        "ip_ttl": ttl,
        "ip_id": int(ip.id),
        "df": bool(int(ip.flags) & 0x2),
        "hops_from_ttl": hops_from_ttl(ttl),
    }


def hops_from_ttl(ttl: int) -> int:
    """The sender's distance in hops (1 = the next router), assuming a common initial TTL."""
    initial = next((value for value in INITIAL_TTLS if ttl <= value), 255)
    return initial - ttl + 1


def ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def dns_summary(wire: bytes) -> Details:
    """Rcode and answers of a DNS message, or why it does not parse."""
    try:
        message = dns.message.from_wire(wire)
    except dns.exception.DNSException as exc:
        return {"rcode": None, "answers": [], "addresses": [], "parse_error": type(exc).__name__}
    answers: list[Details] = []
    addresses: list[str] = []
    for rrset in message.answer:
        for rdata in rrset:
            answers.append(
                {
                    "name": rrset.name.to_text(),
                    "type": dns.rdatatype.to_text(rrset.rdtype),
                    "ttl": rrset.ttl,
                    "data": rdata.to_text(),
                }
            )
            if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                addresses.append(rdata.to_text())
    return {"rcode": dns.rcode.to_text(message.rcode()), "answers": answers, "addresses": addresses}


def reference_ttl(ttls: Sequence[int]) -> int:
    """The TTL taken to be the genuine sender's: the most common one, ties going to the latest
    arrival (an injector races the real answer and usually wins, so the real one comes last)."""
    counts = Counter(ttls)
    best = max(counts.values())
    return next(ttl for ttl in reversed(ttls) if counts[ttl] == best)
