"""The censor's on-path injector (scapy), run in the censor namespace while DNS injection or HTTP
blockpage injection is on. It watches the client-facing link and, spoofing the server:

- DNS: for an A query naming a hit host (to any resolver), races a forged answer (10.10.34.35)
  to the client. The real query goes on; the lab delays upstream DNS so the forged answer wins,
  and the real one still arrives second, as on-path injectors behave (FOCI 2014, "Towards a
  Comprehensive Picture of the Great Firewall's DNS Censorship").
- HTTP: for a request whose Host is a hit host (the censor's firewall drops that request), writes
  Iran's 403 blockpage into the connection with the server's address, sequence numbers that
  continue the stream, and FIN.

Forged packets leave with IP TTL 52 and scapy's fixed IP ID 1, unlike the real servers' packets:
the evidence field injectors leave.

Run by the lab: `python3 -m tests.lab.servers.onpath CONFIG.json`.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import sys
from typing import Any

import dns.exception
import dns.message
import dns.rdatatype
import dns.rrset
from scapy.layers.inet import IP, TCP, UDP
from scapy.packet import Raw

from tests.lab.blockpage import blockpage_response
from tests.lab.servers.common import announce_ready, load_config, prepare_process
from tests.lab.servers.dnsserver import qname

ETH_P_IP = 0x0800
ETH_HEADER = 14
PACKET_OUTGOING = 4
PROTO_TCP = 6
PROTO_UDP = 17
# Neither 64 (the ISP resolver, next door) nor 63 (inet, one hop away): a TTL the real path never
# produces, as injectors' forgeries often show.
FORGED_TTL = 52
FORGED_ANSWER_TTL = 60
log = logging.getLogger("lab.onpath")


class Injector:
    def __init__(self, config: dict[str, Any]) -> None:
        self.dns_names = frozenset(n.lower() for n in config["dns"]["names"])
        self.dns_answer = str(config["dns"]["a"])
        self.http_names = frozenset(n.lower() for n in config["http"]["names"])
        self.http_ports = frozenset(int(p) for p in config["http"]["ports"])
        self.client_network = ipaddress.ip_network(config["client_network"])
        self.raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)

    def packet(self, frame: bytes) -> None:
        ip = frame[ETH_HEADER:]
        if len(ip) < 20 or ip[0] >> 4 != 4:
            return
        header = (ip[0] & 0x0F) * 4
        total = int.from_bytes(ip[2:4], "big")
        ip = ip[:total]
        if ipaddress.ip_address(ip[12:16]) not in self.client_network:
            return
        proto = ip[9]
        dport = int.from_bytes(ip[header + 2 : header + 4], "big")
        if proto == PROTO_UDP and dport == 53 and self.dns_names:
            self.dns(IP(ip))
        elif proto == PROTO_TCP and dport in self.http_ports and self.http_names:
            data_offset = (ip[header + 12] >> 4) * 4
            if len(ip) > header + data_offset:
                self.http(IP(ip), ip[header + data_offset :])

    def dns(self, packet: Any) -> None:
        try:
            query = dns.message.from_wire(bytes(packet[UDP].payload))
        except dns.exception.DNSException:
            return
        name = qname(query)
        if name not in self.dns_names or query.question[0].rdtype != dns.rdatatype.A:
            return
        forged = dns.message.make_response(query)
        forged.answer.append(
            dns.rrset.from_text_list(
                query.question[0].name, FORGED_ANSWER_TTL, "IN", "A", [self.dns_answer]
            )
        )
        reply = (
            IP(src=packet[IP].dst, dst=packet[IP].src, ttl=FORGED_TTL)
            / UDP(sport=packet[UDP].dport, dport=packet[UDP].sport)
            / Raw(forged.to_wire())
        )
        self.raw.sendto(bytes(reply), (packet[IP].src, 0))
        log.info("forged A %s for %s -> %s", self.dns_answer, name, packet[IP].src)

    def http(self, packet: Any, payload: bytes) -> None:
        host = None
        for line in payload.split(b"\r\n")[1:]:
            if not line:
                break
            if line[:5].lower() == b"host:":
                host = line[5:].strip().decode("ascii", "replace").lower()
                break
        if host is None:
            return
        if host.rsplit(":", 1)[0] not in self.http_names:
            return
        tcp = packet[TCP]
        reply = (
            IP(src=packet[IP].dst, dst=packet[IP].src, ttl=FORGED_TTL)
            / TCP(
                sport=tcp.dport,
                dport=tcp.sport,
                flags="FPA",
                seq=tcp.ack,
                ack=(tcp.seq + len(payload)) & 0xFFFFFFFF,
                window=65535,
            )
            / Raw(blockpage_response())
        )
        self.raw.sendto(bytes(reply), (packet[IP].src, 0))
        log.info("injected blockpage for %s -> %s", host, packet[IP].src)


def main() -> None:
    prepare_process()
    config = load_config(sys.argv[1])
    injector = Injector(config)
    sniffer = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
    sniffer.bind((config["iface"], 0))
    sniffer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    announce_ready()
    while True:
        frame, address = sniffer.recvfrom(65535)
        if address[2] == PACKET_OUTGOING:
            continue
        try:
            injector.packet(frame)
        except Exception:  # one odd packet must not end the censor
            log.exception("while handling a packet")


if __name__ == "__main__":
    main()
