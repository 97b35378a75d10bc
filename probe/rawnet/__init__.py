"""Raw-packet evidence: the IP TTL, IP ID and TCP/UDP header fields of the packets a measurement
received, captured beside the normal checks; the probe's only user of scapy (STYLE.md).

Injected packets are told from genuine ones by their headers: a forged DNS answer or TCP reset
sent by a middlebox nearer than the server usually arrives with an IP TTL (and often an IP ID)
unlike the server's own packets (Anonymous, "Towards a Comprehensive Picture of the Great
Firewall's DNS Censorship", FOCI 2014,
https://www.usenix.org/conference/foci14/workshop-program/presentation/anonymous). Three
captures:

    dns_packet_evidence ..... one DNS A query; every response, with TTL / IP ID / DF / checksum,
                              responses whose TTL differs from the others flagged as injected
    tcp_reset_evidence ...... one TCP connection; every SYN-ACK and RST, RST TTL vs SYN-ACK TTL
    locate_interference ..... the trigger sent with IP TTL 1, 2, ...: ICMP time-exceeded hops and
                              the first hop at which a reset or injected answer comes back

The package, one concept per module:

    capability .... can this process capture packets (root or CAP_NET_RAW, IPv4)?
    capture ....... scapy, imported when a capture starts; the sniffer on the route's interface
    headers ....... what a received packet's header fields and DNS payload say, as details
    evidence ...... dns_packet_evidence and tcp_reset_evidence
    locate ........ locate_interference, the TTL-limited probe (one hop loop for TCP and UDP)

Capturing needs CAP_NET_RAW: without it every function returns {"available": False, "note": ...}
and does not raise. IPv4 only for now (likewise "available": False with a note for IPv6
addresses). Network outcomes are data (OONI failure strings); only bad arguments raise
ValueError. Results never hold the probe's own address. Importing this package does not import
scapy (that takes most of a second); the first capture does.
"""

from probe.rawnet.capability import NEEDS_RAW_NOTE, RawCapability, raw_capability
from probe.rawnet.evidence import dns_packet_evidence, tcp_reset_evidence
from probe.rawnet.locate import locate_interference

__all__ = [
    "NEEDS_RAW_NOTE",
    "RawCapability",
    "dns_packet_evidence",
    "locate_interference",
    "raw_capability",
    "tcp_reset_evidence",
]
