"""Censorship techniques as data, and how they become the censor's configuration.

Each technique is a frozen dataclass naming what it hits: host selectors (a served name, a glob
like `*.twimg.com`, or an IP literal; see AddressPlan.select). `compile_state()` folds any number
of techniques into one CensorState: iptables rules for the censor and for inet, tc shaping, the
ISP resolver's rules, the on-path injector's targets and the uplink's state. The lab then makes
the running namespaces match that state, so techniques compose, and switching them off is
compiling an empty list. Everything here is pure: the lab executes it.

Matching on the wire (iptables `string` match, exact on the encoded form, so that hitting `x.com`
does not hit `netflix.com`):
- SNI: the server_name entry `00 <len16> <name>` inside the ClientHello;
- DNS: the query name in wire format `<len>label...00` (case-insensitive);
- HTTP: the header line `\\r\\nHost: <name>` followed by `\\r\\n` or `:` (case-insensitive).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from tests.lab import plan as lab_plan
from tests.lab.plan import AddressPlan

CLIENT_IFACE = "lan"  # the censor's client-facing link
UPLINK_IFACE = "wan"  # the censor's inet-facing link
ALLOWLIST_CHAIN = "LAB-ALLOWLIST"
SNI_ALLOWLIST_CHAIN = "LAB-SNI-ALLOWLIST"
THROTTLE_KBIT = 64
# How long inet holds real answers back while injection is on, so that the scapy injector (a
# Python process, slower under load than a real middlebox) wins the race: 50 ms lost it now and
# then on a busy 2-core machine.
INJECTION_DNS_DELAY_MS = 150
_UNLIMITED = "10gbit"
_QUANTUM = 60000
# Per throttled address: how many queues its connections are spread over (by the client's port).
_FLOW_BUCKETS = 64


@dataclass
class CensorState:
    """Everything the censor (and inet, for sites that are down) must be doing."""

    filter_input: list[str] = field(default_factory=list)
    filter_forward: list[str] = field(default_factory=list)
    filter_output: list[str] = field(default_factory=list)
    filter_chains: dict[str, list[str]] = field(default_factory=dict)
    nat_prerouting: list[str] = field(default_factory=list)
    inet_input: list[str] = field(default_factory=list)
    throttle_kbit: dict[str, int] = field(default_factory=dict)  # address -> rate
    dns_delay_ms: int = 0
    resolver_answers: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    resolver_nxdomain: set[str] = field(default_factory=set)
    inject_dns: set[str] = field(default_factory=set)
    inject_dns_answer: str = lab_plan.LIE_ADDRESS
    inject_http: set[str] = field(default_factory=set)
    inject_http_ports: set[int] = field(default_factory=set)
    uplink_down: bool = False

    def censor_ruleset(self) -> str:
        """The censor's iptables-restore input (replaces its filter and nat tables whole)."""
        lines = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
        lines += [f":{chain} - [0:0]" for chain in self.filter_chains]
        for chain, rules in self.filter_chains.items():
            lines += [f"-A {chain} {rule}" for rule in rules]
        lines += [f"-A INPUT {rule}" for rule in self.filter_input]
        lines += [f"-A FORWARD {rule}" for rule in self.filter_forward]
        lines += [f"-A OUTPUT {rule}" for rule in self.filter_output]
        lines += ["COMMIT", "*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]"]
        lines += [":OUTPUT ACCEPT [0:0]", ":POSTROUTING ACCEPT [0:0]"]
        lines += [f"-A PREROUTING {rule}" for rule in self.nat_prerouting]
        lines += ["COMMIT", ""]
        return "\n".join(lines)

    def inet_ruleset(self) -> str:
        lines = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
        lines += [f"-A INPUT {rule}" for rule in self.inet_input]
        lines += ["COMMIT", ""]
        return "\n".join(lines)

    def tc_commands(self) -> list[str]:
        """`tc -batch` lines that build the censor's shaping (on links with no qdisc yet).

        Each connection to or from a throttled address is shaped on its own, as the throttlers
        on record do (Russia's of Twitter in 2021 acted per connection, triggered by the SNI
        after the TCP handshake: Xue et al., "Throttling Twitter: An Emerging Censorship
        Technique in Russia", IMC 2021). One queue shared by the address held a new
        connection's SYN-ACK, and a small page, behind 8 s of another connection's transfer,
        so the probe's own transfer made its other measurements of the address time out.

        This kernel has no per-flow qdisc (no sfq, fq or fq_codel), so a u32 hash table on the
        client's port (bits 1-6: Linux picks even, nearly consecutive ports for connect(), so
        the connections of a run land in different buckets) picks one of _FLOW_BUCKETS HTB
        classes per address. A TBF leaf in each does the limiting because TBF splits GSO
        super-packets (veth hands over 64 KB ones) into MTU-sized segments, which keeps a
        64 kbit/s rate smooth instead of one 64 KB burst every 8 seconds."""
        commands: list[str] = []
        if not self.throttle_kbit:
            return commands
        # The client's port in the 32-bit word at offset 20 of the IP header (TCP or UDP, no IP
        # options): the destination port towards the client, the source port towards inet.
        for dev, direction, port_mask in (
            (CLIENT_IFACE, "src", 0x0000007E),
            (UPLINK_IFACE, "dst", 0x007E0000),
        ):
            commands += [
                f"qdisc add dev {dev} root handle 1: htb default 1",
                f"class add dev {dev} parent 1: classid 1:1 htb rate {_UNLIMITED} "
                f"quantum {_QUANTUM}",
            ]
            for i, (address, kbit) in enumerate(sorted(self.throttle_kbit.items())):
                table = f"{0x10 + i:x}"
                commands.append(
                    f"filter add dev {dev} parent 1: prio 1 handle {table}: protocol ip u32 "
                    f"divisor {_FLOW_BUCKETS}"
                )
                for bucket in range(_FLOW_BUCKETS):
                    minor = f"{0x100 + i * _FLOW_BUCKETS + bucket:x}"
                    commands += [
                        f"class add dev {dev} parent 1: classid 1:{minor} htb rate {_UNLIMITED} "
                        f"quantum {_QUANTUM}",
                        f"qdisc add dev {dev} parent 1:{minor} handle {minor}: tbf rate "
                        f"{kbit}kbit burst 3000 limit 65536",
                        f"filter add dev {dev} parent 1: prio 1 protocol ip u32 "
                        f"ht {table}:{bucket:x}: match u32 0 0 flowid 1:{minor}",
                    ]
                commands.append(
                    f"filter add dev {dev} parent 1: prio 1 protocol ip u32 ht 800:: "
                    f"match ip {direction} {address}/32 "
                    f"hashkey mask 0x{port_mask:08x} at 20 link {table}:"
                )
        return commands

    def inet_rules(self) -> str:
        """The inet resolvers' rules file (JSON): how long to hold answers back."""
        return json.dumps({"dns_delay_ms": self.dns_delay_ms})

    def resolver_rules(self) -> str:
        """The ISP resolver's rules file (JSON)."""
        return json.dumps(
            {"answers": self.resolver_answers, "nxdomain": sorted(self.resolver_nxdomain)},
            sort_keys=True,
        )

    def injector_config(self) -> dict[str, object] | None:
        """The on-path injector's configuration, or None when it is not needed."""
        if not self.inject_dns and not self.inject_http:
            return None
        return {
            "iface": CLIENT_IFACE,
            "client_network": lab_plan.CLIENT_NETWORK,
            "dns": {"names": sorted(self.inject_dns), "a": self.inject_dns_answer},
            "http": {"names": sorted(self.inject_http), "ports": sorted(self.inject_http_ports)},
        }


def _hex(data: bytes) -> str:
    return f'"|{data.hex()}|"'


def sni_match(name: str) -> str:
    """iptables match for a ClientHello whose server_name is exactly `name`."""
    encoded = name.encode("idna")
    entry = b"\x00" + len(encoded).to_bytes(2, "big") + encoded  # name_type host_name, length
    return f"-m string --algo bm --hex-string {_hex(entry)}"


def qname_match(name: str) -> str:
    """iptables match for a DNS message asking exactly `name`."""
    labels = name.encode().split(b".")
    wire = b"".join(len(label).to_bytes(1, "big") + label for label in labels) + b"\x00"
    return f"-m string --algo bm --icase --hex-string {_hex(wire)}"


def host_matches(name: str) -> list[str]:
    """iptables matches for an HTTP request whose Host header is `name` (with or without port)."""
    head = b"\r\nHost: " + name.encode()
    return [
        f"-m string --algo bm --icase --hex-string {_hex(head + tail)}" for tail in (b"\r\n", b":")
    ]


def _ports(ports: Iterable[int]) -> str:
    return ",".join(str(port) for port in ports)


@dataclass(frozen=True, slots=True)
class Technique:
    """A censorship technique; `hosts` are selectors resolved against the lab's address plan."""

    name: ClassVar[str] = "technique"
    by_address: ClassVar[bool] = False  # acts on addresses (names stand for their address)
    hosts: tuple[str, ...] = ()

    def hits(self, address_plan: AddressPlan) -> tuple[str, ...]:
        """What it hits: host names (and IP literals), or addresses for address-based ones."""
        if self.by_address:
            return address_plan.addresses_for(self.hosts)
        return tuple(h for h in address_plan.select(self.hosts) if h in address_plan.records)

    def apply(self, address_plan: AddressPlan, state: CensorState) -> None:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class DnsLie(Technique):
    """The ISP resolver answers the blockpage address (Iran: 10.10.34.35, AAAA d0::11)."""

    name: ClassVar[str] = "dns_lie"
    address: str = lab_plan.LIE_ADDRESS
    address6: str | None = lab_plan.LIE_ADDRESS6

    def apply(self, address_plan: AddressPlan, state: CensorState) -> None:
        for host in self.hits(address_plan):
            answer = {"A": [self.address]}
            if self.address6:
                answer["AAAA"] = [self.address6]
            state.resolver_answers[host] = answer


@dataclass(frozen=True, slots=True)
class DnsOtherSite(Technique):
    """The ISP resolver answers another real site's address (lab_plan.OTHER_SITE_ADDRESS: a
    server with a valid certificate for its own name only), A only."""

    name: ClassVar[str] = "dns_other_site"

    def apply(self, address_plan: AddressPlan, state: CensorState) -> None:
        for host in self.hits(address_plan):
            state.resolver_answers[host] = {"A": [lab_plan.OTHER_SITE_ADDRESS]}


@dataclass(frozen=True, slots=True)
class DnsNxdomain(Technique):
    """The ISP resolver says the name does not exist."""

    name: ClassVar[str] = "dns_nxdomain"

    def apply(self, address_plan: AddressPlan, state: CensorState) -> None:
        state.resolver_nxdomain.update(self.hits(address_plan))


@dataclass(frozen=True, slots=True)
class DnsInjection(Technique):
    """On-path: a forged A answer races ahead of the real one, to any resolver."""

    name: ClassVar[str] = "dns_injection"
    address: str = lab_plan.LIE_ADDRESS
    delay_ms: int = INJECTION_DNS_DELAY_MS

    def apply(self, address_plan: AddressPlan, state: CensorState) -> None:
        state.inject_dns.update(self.hits(address_plan))
        state.inject_dns_answer = self.address
        state.dns_delay_ms = max(state.dns_delay_ms, self.delay_ms)


@dataclass(frozen=True, slots=True)
class DnsDrop(Technique):
    """Queries asking a hit name are dropped on the way to any resolver (the ISP's included)."""

    name: ClassVar[str] = "dns_drop"

    def apply(self, address_plan: AddressPlan, state: CensorState) -> None:
        for host in self.hits(address_plan):
            for proto in ("udp", "tcp"):
                rule = f"-i {CLIENT_IFACE} -p {proto} --dport 53 {qname_match(host)} -j DROP"
                state.filter_forward.append(rule)
                state.filter_input.append(rule)


@dataclass(frozen=True, slots=True)
class IpBlackhole(Technique):
    """Null-routing: every packet to or from the address is dropped (connect times out)."""

    name: ClassVar[str] = "ip_blackhole"
    by_address: ClassVar[bool] = True

    def apply(self, address_plan: AddressPlan, state: CensorState) -> None:
        for address in self.hits(address_plan):
            state.filter_forward += [f"-d {address} -j DROP", f"-s {address} -j DROP"]


@dataclass(frozen=True, slots=True)
class TcpReset(Technique):
    """A RST answers the SYN (the client sees the connection refused)."""

    name: ClassVar[str] = "tcp_reset"
    by_address: ClassVar[bool] = True

    def apply(self, address_plan: AddressPlan, state: CensorState) -> None:
        for address in self.hits(address_plan):
            state.filter_forward.append(
                f"-i {CLIENT_IFACE} -d {address} -p tcp --syn -j REJECT --reject-with tcp-reset"
            )


@dataclass(frozen=True, slots=True)
class SniReset(Technique):
    """A ClientHello carrying a hit SNI is dropped and answered with a RST."""

    name: ClassVar[str] = "sni_reset"
    ports: tuple[int, ...] = (443,)

    def apply(self, address_plan: AddressPlan, state: CensorState) -> None:
        for host in self.hits(address_plan):
            state.filter_forward.append(
                f"-i {CLIENT_IFACE} -p tcp -m multiport --dports {_ports(self.ports)} "
                f"{sni_match(host)} -j REJECT --reject-with tcp-reset"
            )


@dataclass(frozen=True, slots=True)
class SniDrop(Technique):
    """A ClientHello carrying a hit SNI is dropped (the handshake stalls)."""

    name: ClassVar[str] = "sni_drop"
    ports: tuple[int, ...] = (443,)

    def apply(self, address_plan: AddressPlan, state: CensorState) -> None:
        for host in self.hits(address_plan):
            state.filter_forward.append(
                f"-i {CLIENT_IFACE} -p tcp -m multiport --dports {_ports(self.ports)} "
                f"{sni_match(host)} -j DROP"
            )


@dataclass(frozen=True, slots=True)
class HttpBlockpage(Technique):
    """The request with a hit Host is dropped; the blockpage is injected as the server."""

    name: ClassVar[str] = "http_blockpage"
    ports: tuple[int, ...] = (80,)

    def apply(self, address_plan: AddressPlan, state: CensorState) -> None:
        hits = self.hits(address_plan)
        for host in hits:
            for match in host_matches(host):
                state.filter_forward.append(
                    f"-i {CLIENT_IFACE} -p tcp -m multiport --dports {_ports(self.ports)} "
                    f"{match} -j DROP"
                )
        state.inject_http.update(hits)
        state.inject_http_ports.update(self.ports)


@dataclass(frozen=True, slots=True)
class HttpReset(Technique):
    """The request with a hit Host is dropped and answered with a RST."""

    name: ClassVar[str] = "http_reset"
    ports: tuple[int, ...] = (80,)

    def apply(self, address_plan: AddressPlan, state: CensorState) -> None:
        for host in self.hits(address_plan):
            for match in host_matches(host):
                state.filter_forward.append(
                    f"-i {CLIENT_IFACE} -p tcp -m multiport --dports {_ports(self.ports)} "
                    f"{match} -j REJECT --reject-with tcp-reset"
                )


@dataclass(frozen=True, slots=True)
class SynDrop(Technique):
    """The first SYN of every connection to the address is dropped and its retransmission
    passes, so every connect completes only after the client's first SYN retransmission (1 s,
    RFC 6298's initial RTO): intermittent interference that a single connect reads as a slow
    success. Deterministic, so a test of it is not flaky: hashlimit keyed on the connection's
    4-tuple lets one SYN a minute per connection match (and be dropped); the retransmission,
    same 4-tuple, is over that limit and passes (iptables-extensions(8), hashlimit)."""

    name: ClassVar[str] = "syn_drop"
    by_address: ClassVar[bool] = True

    def apply(self, address_plan: AddressPlan, state: CensorState) -> None:
        for address in self.hits(address_plan):
            state.filter_forward.append(
                f"-i {CLIENT_IFACE} -d {address} -p tcp --syn -m hashlimit --hashlimit-upto "
                "1/minute --hashlimit-burst 1 --hashlimit-mode srcip,srcport,dstip,dstport "
                "--hashlimit-name lab-syn-drop -j DROP"
            )


@dataclass(frozen=True, slots=True)
class Throttle(Technique):
    """Traffic from and to the address is shaped to `kbit` (default 64 kbit/s)."""

    name: ClassVar[str] = "throttle"
    by_address: ClassVar[bool] = True
    kbit: int = THROTTLE_KBIT

    def apply(self, address_plan: AddressPlan, state: CensorState) -> None:
        for address in self.hits(address_plan):
            state.throttle_kbit[address] = self.kbit


@dataclass(frozen=True, slots=True)
class TlsInterception(Technique):
    """Port 443 of the address is DNATed to the censor's TLS server (an untrusted CA)."""

    name: ClassVar[str] = "tls_interception"
    by_address: ClassVar[bool] = True

    def apply(self, address_plan: AddressPlan, state: CensorState) -> None:
        target = f"{lab_plan.CENSOR_CLIENT_SIDE}:{lab_plan.INTERCEPTION_PORT}"
        for address in self.hits(address_plan):
            state.nat_prerouting.append(
                f"-i {CLIENT_IFACE} -d {address} -p tcp --dport 443 -j DNAT --to-destination "
                f"{target}"
            )


# u32 programs (iptables-extensions(8)): "0>>22&0x3C@" skips the IP header, "12>>26&0x3C@"
# the TCP header; what follows reads the first payload bytes. Reading past the end never matches.
_TCP_PAYLOAD = "0>>22&0x3C@12>>26&0x3C@"
_TLS_RECORD = f"{_TCP_PAYLOAD}0>>16=0x1600:0x1603"  # handshake record, SSL3/TLS1.x
_HTTP_METHOD = (
    f"{_TCP_PAYLOAD}0=0x47455420,0x504f5354,0x48454144,0x50555420,"  # GET POST HEAD PUT
    "0x44454c45,0x4f505449,0x434f4e4e,0x50415443"  # DELETE OPTIONS CONNECT PATCH
)
_DNS_OVER_TCP = f"{_TCP_PAYLOAD}4>>24&0xF8=0"  # after the length: QR=0, opcode QUERY
_HAS_PAYLOAD = f"{_TCP_PAYLOAD}0=0:0xFFFFFFFF"
_DNS_OVER_UDP = "0>>22&0x3C@8>>8&0xF8=0"
_GOOD, _BAD, _MASK = "0x1", "0x2", "0x3"


@dataclass(frozen=True, slots=True)
class ProtocolAllowlist(Technique):
    """Iran's protocol filter: on these ports, a TCP flow whose first data is not TLS or HTTP (or
    DNS on 53) is marked, and every later packet of it, both ways, is dropped; UDP 53 packets
    that are not DNS queries are dropped."""

    name: ClassVar[str] = "protocol_allowlist"
    ports: tuple[int, ...] = (53, 80, 443)

    def hits(self, address_plan: AddressPlan) -> tuple[str, ...]:
        return tuple(f"port {port}" for port in self.ports)

    def apply(self, address_plan: AddressPlan, state: CensorState) -> None:
        chain = ALLOWLIST_CHAIN
        good = f"-j CONNMARK --set-xmark {_GOOD}/{_MASK}"
        state.filter_chains[chain] = [
            f"-m connmark --mark {_BAD}/{_MASK} -j DROP",
            f"-m connmark --mark {_GOOD}/{_MASK} -j RETURN",
            f'-i {CLIENT_IFACE} -m u32 --u32 "{_TLS_RECORD}" {good}',
            f'-i {CLIENT_IFACE} -m u32 --u32 "{_HTTP_METHOD}" {good}',
            f'-i {CLIENT_IFACE} -p tcp --dport 53 -m u32 --u32 "{_DNS_OVER_TCP}" {good}',
            f'-i {CLIENT_IFACE} -m connmark --mark 0x0/{_MASK} -m u32 --u32 "{_HAS_PAYLOAD}" '
            f"-j CONNMARK --set-xmark {_BAD}/{_MASK}",
        ]
        ports = _ports(self.ports)
        state.filter_forward.append(f"-p tcp -m multiport --ports {ports} -j {chain}")
        state.filter_input.append(
            f"-i {CLIENT_IFACE} -p tcp -m multiport --dports {ports} -j {chain}"
        )
        state.filter_output.append(
            f"-o {CLIENT_IFACE} -p tcp -m multiport --sports {ports} -j {chain}"
        )
        if 53 in self.ports:
            not_dns = (
                f'-i {CLIENT_IFACE} -p udp --dport 53 -m u32 ! --u32 "{_DNS_OVER_UDP}" -j DROP'
            )
            state.filter_forward.append(not_dns)
            state.filter_input.append(not_dns)


# A ClientHello: a TLS handshake record (0x16 0x03 0x0X) whose handshake type (byte 5) is 1.
_CLIENT_HELLO = f"{_TLS_RECORD}&&{_TCP_PAYLOAD}4>>16&0xFF=0x01"


@dataclass(frozen=True, slots=True)
class SniAllowlist(Technique):
    """An SNI allowlist: on port 443 a ClientHello passes only when its server_name is one of
    `hosts`; any other (another name, or none) is answered with a RST. The public resolvers'
    addresses are exempt, so DoH by address keeps working (a real allowlist keeps its own
    exceptions). It hits every served name it does not list."""

    name: ClassVar[str] = "sni_allowlist"

    def hits(self, address_plan: AddressPlan) -> tuple[str, ...]:
        allowed = set(address_plan.select(self.hosts))
        return tuple(n for n in address_plan.names if n not in allowed)

    def apply(self, address_plan: AddressPlan, state: CensorState) -> None:
        chain = SNI_ALLOWLIST_CHAIN
        rules = [f"-d {address} -j RETURN" for address in address_plan.resolvers]
        rules += [f"{sni_match(host)} -j RETURN" for host in address_plan.select(self.hosts)]
        rules.append("-p tcp -j REJECT --reject-with tcp-reset")
        state.filter_chains[chain] = rules
        state.filter_forward.append(
            f'-i {CLIENT_IFACE} -p tcp --dport 443 -m u32 --u32 "{_CLIENT_HELLO}" -j {chain}'
        )


@dataclass(frozen=True, slots=True)
class SiteDown(Technique):
    """Not censorship: the site's server is gone (its ports closed in inet, for everyone)."""

    name: ClassVar[str] = "site_down"
    by_address: ClassVar[bool] = True

    def apply(self, address_plan: AddressPlan, state: CensorState) -> None:
        for address in self.hits(address_plan):
            state.inet_input += [
                f"-d {address} -p tcp -j REJECT --reject-with tcp-reset",
                f"-d {address} -p udp -j REJECT --reject-with icmp-port-unreachable",
            ]


@dataclass(frozen=True, slots=True)
class Cdn(Technique):
    """Not censorship: the ISP resolver gets a different, legitimate address (a CDN node that
    serves the same name with a valid certificate)."""

    name: ClassVar[str] = "cdn"

    def apply(self, address_plan: AddressPlan, state: CensorState) -> None:
        for host in self.hits(address_plan):
            state.resolver_answers[host] = {"A": [address_plan.cdn_address_of(host)]}


@dataclass(frozen=True, slots=True)
class DeadUplink(Technique):
    """Not censorship: the client's link to its ISP is down (no carrier)."""

    name: ClassVar[str] = "dead_uplink"

    def hits(self, address_plan: AddressPlan) -> tuple[str, ...]:
        return ("everything",)

    def apply(self, address_plan: AddressPlan, state: CensorState) -> None:
        state.uplink_down = True


def compile_state(techniques: Sequence[Technique], address_plan: AddressPlan) -> CensorState:
    """Fold techniques, in order, into one state (later ones win where they overlap)."""
    state = CensorState()
    for technique in techniques:
        technique.apply(address_plan, state)
    return state
