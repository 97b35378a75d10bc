"""Network identity: ASN/country from the helper's view and from offline MaxMind DB files, unknown
when neither knows, and VPN/proxy flags (from fake /proc files and from real network namespaces).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from probe.config import ConfigError
from probe.netid.helper_view import HelperView
from probe.netid.identify import identify_network, resolver_addresses
from probe.netid.local import Interface, LocalNetwork, read_local_network
from probe.netid.mmdb import AsnDatabase, AsnRecord
from probe.resolvers import parse_resolver
from tests.servers.mmdb import write_mmdb

REPO = Path(__file__).resolve().parent.parent

# Real allocations, so that they count as public addresses: TCI (AS58224) and MCI (AS197207)
# in Iran, a Dutch hosting network for the "VPN exit", Google's resolver.
HOME_V4 = "5.160.12.34"
HOME_V6 = "2a01:5ec0:1234:5678::abcd"
VPN_EXIT = "185.107.56.9"


@pytest.fixture
def asn_db(tmp_path: Path) -> Path:
    return write_mmdb(
        tmp_path / "GeoLite2-ASN.mmdb",
        {
            "5.160.0.0/16": {
                "autonomous_system_number": 58224,
                "autonomous_system_organization": "Iran Telecommunication Company PJS",
            },
            "2a01:5ec0::/32": {
                "autonomous_system_number": 58224,
                "autonomous_system_organization": "Iran Telecommunication Company PJS",
            },
            "185.107.56.0/22": {
                "autonomous_system_number": 43350,
                "autonomous_system_organization": "NForce Entertainment B.V.",
            },
            "8.8.8.0/24": {
                "autonomous_system_number": 15169,
                "autonomous_system_organization": "GOOGLE",
            },
            "217.218.155.0/24": {
                "autonomous_system_number": 12880,
                "autonomous_system_organization": "Iran Information Technology Company PJSC",
            },
        },
    )


@pytest.fixture
def country_db(tmp_path: Path) -> Path:
    return write_mmdb(
        tmp_path / "GeoLite2-Country.mmdb",
        {
            "5.160.0.0/16": {"country": {"iso_code": "IR", "names": {"en": "Iran"}}},
            "2a01:5ec0::/32": {"country": {"iso_code": "IR", "names": {"en": "Iran"}}},
            "185.107.56.0/22": {"country": {"iso_code": "NL", "names": {"en": "Netherlands"}}},
            "217.218.155.0/24": {"country": {"iso_code": "IR", "names": {"en": "Iran"}}},
        },
        database_type="GeoLite2-Country",
    )


@pytest.fixture
def database(asn_db: Path, country_db: Path) -> Iterator[AsnDatabase]:
    with AsnDatabase([asn_db, country_db]) as db:
        yield db


# -- the offline database ------------------------------------------------------------------------


def test_geolite2_asn_and_country_files_are_read_together(database: AsnDatabase) -> None:
    iran = AsnRecord(58224, "Iran Telecommunication Company PJS", "IR")
    assert database.lookup(HOME_V4) == iran
    assert database.lookup(HOME_V6) == iran
    assert database.lookup(VPN_EXIT) == AsnRecord(43350, "NForce Entertainment B.V.", "NL")


def test_address_missing_from_the_database_is_unknown_not_guessed(database: AsnDatabase) -> None:
    assert database.lookup("1.1.1.1") == AsnRecord(None, None, None)
    assert database.lookup("8.8.8.8") == AsnRecord(15169, "GOOGLE", None)  # no country file row


def test_ipinfo_layout_is_read_too(tmp_path: Path) -> None:
    path = write_mmdb(
        tmp_path / "country_asn.mmdb",
        {"5.160.0.0/16": {"asn": "AS58224", "as_name": "TCI", "country": "IR"}},
        database_type="ipinfo country_asn.mmdb",
    )
    with AsnDatabase([path]) as db:
        assert db.lookup(HOME_V4) == AsnRecord(58224, "TCI", "IR")


def test_missing_or_foreign_database_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        AsnDatabase([tmp_path / "GeoLite2-ASN.mmdb"])
    bogus = tmp_path / "not.mmdb"
    bogus.write_text("hello")
    with pytest.raises(ConfigError, match=r"not a MaxMind DB \(.mmdb\) file"):
        AsnDatabase([bogus])


# -- identity --------------------------------------------------------------------------------------


def test_nothing_known_gives_an_unknown_network() -> None:
    identity = identify_network()
    network = identity.network
    assert (network.asn, network.as_name, network.country) == (None, None, None)
    assert (network.resolver_asn, network.resolver_country) == (None, None)
    assert network.source == "unknown"
    assert network.vpn_suspected is None
    assert identity.own_addresses == frozenset()


def test_helper_view_names_the_network_and_never_stores_the_address() -> None:
    helper = HelperView.from_document(
        {
            "client_address": HOME_V4,
            "client_asn": 58224,
            "client_as_name": "Iran Telecommunication Company PJS",
            "client_country": "ir",
            "resolver_address": "217.218.155.155",
            "resolver_asn": 58224,
            "resolver_as_name": "Iran Telecommunication Company PJS",
            "resolver_country": "IR",
        }
    )
    identity = identify_network(helper=helper, local=LocalNetwork(routes_known=True))
    network = identity.network
    assert (network.asn, network.country, network.resolver_asn) == (58224, "IR", 58224)
    assert network.source == "helper"
    assert network.vpn_suspected is False
    assert identity.own_addresses == {HOME_V4}
    assert HOME_V4 not in repr(network)


def test_malformed_helper_fields_count_as_unknown() -> None:
    helper = HelperView.from_document(
        {"client_address": "not-an-ip", "client_asn": "many", "client_country": "Iran"}
    )
    assert helper == HelperView()
    assert HelperView.from_document({"client_asn": True}).client_asn is None
    assert HelperView.from_document({"client_asn": "AS58224"}).client_asn == 58224


def test_database_fills_what_the_helper_left_out(database: AsnDatabase) -> None:
    helper = HelperView(client_address=HOME_V4, client_asn=58224)
    network = identify_network(helper=helper, database=database).network
    assert (network.asn, network.as_name, network.country) == (
        58224,
        "Iran Telecommunication Company PJS",
        "IR",
    )
    assert network.source == "helper+mmdb"


def test_database_row_of_another_as_is_not_mixed_into_the_helpers_answer(
    database: AsnDatabase,
) -> None:
    helper = HelperView(client_address=HOME_V4, client_asn=197207)
    network = identify_network(helper=helper, database=database).network
    assert (network.asn, network.as_name, network.country) == (197207, None, None)
    assert network.source == "helper"


def test_configured_address_is_looked_up_offline_without_a_helper(database: AsnDatabase) -> None:
    identity = identify_network(
        database=database,
        configured_addresses=[HOME_V4],
        resolvers=["217.218.155.155"],
        local=LocalNetwork(routes_known=True),
    )
    network = identity.network
    assert (network.asn, network.country) == (58224, "IR")
    assert (network.resolver_asn, network.resolver_country) == (12880, "IR")
    assert network.source == "mmdb"
    assert network.vpn_suspected is False
    assert identity.own_addresses == {HOME_V4}


def test_only_public_interface_addresses_are_added_for_scrubbing() -> None:
    local = LocalNetwork(
        interfaces=(
            Interface("lo", False, ("127.0.0.1", "::1")),
            Interface("eth0", False, ("192.168.1.23", HOME_V6, "fe80::1", "100.64.3.4")),
        ),
        routes_known=True,
    )
    assert identify_network(local=local).own_addresses == {HOME_V6}


def test_resolver_addresses_come_from_config_and_resolv_conf_without_querying(
    tmp_path: Path,
) -> None:
    resolv_conf = tmp_path / "resolv.conf"
    resolv_conf.write_text("# generated\nnameserver 217.218.155.155\nnameserver fe80::1%eth0\n")
    specs = [parse_resolver("system"), parse_resolver("udp://8.8.8.8:53")]
    found = resolver_addresses(specs, resolv_conf)
    assert found == ["217.218.155.155", "fe80::1", "8.8.8.8"]


# -- VPN and proxy flags ---------------------------------------------------------------------------


def test_proxy_variable_flags_the_run_without_revealing_its_value() -> None:
    local = LocalNetwork(proxy_variables=("HTTPS_PROXY",), routes_known=True)
    identity = identify_network(local=local)
    assert identity.network.vpn_suspected is True
    assert identity.vpn_reasons == ("the proxy variable HTTPS_PROXY is set",)


@pytest.mark.parametrize(
    ("routes", "tunnel"),
    [
        ((("0.0.0.0/0", "wg0"),), "wg0"),
        ((("0.0.0.0/1", "tun0"), ("128.0.0.0/1", "tun0"), ("0.0.0.0/0", "eth0")), "tun0"),
        ((("::/0", "nordlynx"),), "nordlynx"),
    ],
)
def test_default_route_through_a_tunnel_flags_a_vpn(
    routes: tuple[tuple[str, str], ...], tunnel: str
) -> None:
    local = LocalNetwork(wide_routes=routes, routes_known=True)
    identity = identify_network(local=local)
    assert identity.network.vpn_suspected is True
    assert identity.vpn_reasons == (
        f"Internet traffic leaves through {tunnel}, a tunnel (VPN) interface",
    )


def test_pppoe_uplink_is_not_mistaken_for_a_vpn() -> None:
    local = LocalNetwork(wide_routes=(("0.0.0.0/0", "ppp0"),), routes_known=True)
    identity = identify_network(local=local)
    assert identity.network.vpn_suspected is False
    assert identity.vpn_reasons == ()


def test_helper_seeing_another_as_than_this_machines_address_flags_a_vpn(
    database: AsnDatabase,
) -> None:
    helper = HelperView(client_address=VPN_EXIT, client_asn=43350, client_country="NL")
    local = LocalNetwork(interfaces=(Interface("eth0", False, (HOME_V4,)),), routes_known=True)
    identity = identify_network(helper=helper, database=database, local=local)
    assert identity.network.vpn_suspected is True
    assert identity.vpn_reasons == (
        "the test helper sees this probe in AS43350, "
        "but this machine's own public address is in AS58224",
    )
    # Both addresses are scrubbed: the exit's and the machine's own.
    assert identity.own_addresses == {VPN_EXIT, HOME_V4}


def test_resolver_abroad_flags_a_vpn_but_a_public_resolver_does_not() -> None:
    local = LocalNetwork(routes_known=True)
    leaked = HelperView(
        client_asn=43350, client_country="NL", resolver_asn=58224, resolver_country="IR"
    )
    assert identify_network(helper=leaked, local=local).vpn_reasons == (
        "the test helper sees this probe in AS43350, but its resolver is in AS58224",
    )
    google = HelperView(
        client_asn=58224, client_country="IR", resolver_asn=15169, resolver_country="US"
    )
    assert identify_network(helper=google, local=local).network.vpn_suspected is False


def test_upstream_resolver_in_the_same_country_is_not_a_vpn() -> None:
    # A small Iranian ISP using TCI's resolvers: another AS, same country.
    helper = HelperView(
        client_asn=197207, client_country="IR", resolver_asn=58224, resolver_country="IR"
    )
    identity = identify_network(helper=helper, local=LocalNetwork(routes_known=True))
    assert identity.network.vpn_suspected is False


# -- reading this machine's network ------------------------------------------------------------


def _fake_proc_and_sys(tmp_path: Path) -> tuple[Path, Path]:
    proc, sys_net = tmp_path / "proc", tmp_path / "sys"
    (proc / "net").mkdir(parents=True)
    header = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT"
    (proc / "net" / "route").write_text(
        f"{header}\n"
        "eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
        "eth0\t0001A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n"
        "corp7\t00000000\t00000000\t0001\t0\t0\t0\t00000080\t0\t0\t0\n"
        "corp7\t00000080\t00000000\t0001\t0\t0\t0\t00000080\t0\t0\t0\n"
    )
    zeros = "0" * 32
    (proc / "net" / "ipv6_route").write_text(
        f"{zeros} 00 {zeros} 00 {zeros} ffffffff 00000001 00000000 00200200       lo\n"
        f"20010db8000000000000000000000000 20 {zeros} 00 {zeros} 00000100 00000001 00000000"
        " 00000001     eth0\n"
    )
    (proc / "net" / "if_inet6").write_text(
        "2a015ec012345678000000000000abcd 02 40 00 00     eth0\n"
        "00000000000000000000000000000001 01 80 10 80       lo\n"
    )
    for name, files in {
        "eth0": {"type": "1\n", "uevent": "INTERFACE=eth0\nIFINDEX=2\n"},
        "lo": {"type": "772\n"},
        "corp7": {"type": "65534\n", "tun_flags": "0x1001\n"},
        "wwan0": {"type": "65534\n", "uevent": "DEVTYPE=wwan\nINTERFACE=wwan0\n"},
        "wgx": {"type": "65534\n", "uevent": "DEVTYPE=wireguard\nINTERFACE=wgx\n"},
    }.items():
        (sys_net / name).mkdir(parents=True)
        for file, text in files.items():
            (sys_net / name / file).write_text(text)
    return proc, sys_net


def test_openvpn_split_routes_on_a_tun_device_are_read_from_proc(tmp_path: Path) -> None:
    proc, sys_net = _fake_proc_and_sys(tmp_path)
    local = read_local_network(
        {"http_proxy": "http://u:secret@10.0.0.1:3128"},
        proc=proc,
        sys_class_net=sys_net,
        ipv4_address={"eth0": "192.168.1.23", "corp7": "10.8.0.2"}.get,
        egress_sources=lambda: ["10.8.0.2"],
    )
    assert local.routes_known
    assert set(local.wide_routes) == {
        ("0.0.0.0/0", "eth0"),
        ("0.0.0.0/1", "corp7"),
        ("128.0.0.0/1", "corp7"),
    }  # the unreachable IPv6 default on lo (RTF_REJECT) is not a route
    tunnels = {i.name for i in local.interfaces if i.tunnel}
    assert tunnels == {"corp7", "wgx"}  # an LTE modem in raw-IP mode is no tunnel
    assert local.interface("eth0") == Interface("eth0", False, ("192.168.1.23", HOME_V6))
    assert local.egress == ("corp7",)
    assert local.proxy_variables == ("http_proxy",)
    reasons = identify_network(local=local).vpn_reasons
    assert reasons == (
        "the proxy variable http_proxy is set",
        "Internet traffic leaves through corp7, a tunnel (VPN) interface",
    )
    assert all("secret" not in reason for reason in reasons)


# -- the same, against a real kernel in network namespaces that the test creates ----------------

_READ_IN_NAMESPACE = """
import json
from probe.netid.identify import identify_network
from probe.netid.local import read_local_network
local = read_local_network(env={})
identity = identify_network(local=local)
print(json.dumps({"egress": local.egress, "reasons": identity.vpn_reasons,
                  "vpn": identity.network.vpn_suspected}))
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def namespace() -> Iterator[str]:
    """A fresh network namespace with a veth pair as its ordinary uplink and a tun device whose
    name (eth7) hides what it is."""
    name = f"cpnetid-{secrets.token_hex(3)}"
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        _ip("-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
        _ip("-n", name, "tuntap", "add", "eth7", "mode", "tun")
        for device in ("eth0", "peer0", "eth7"):
            _ip("-n", name, "link", "set", device, "up")
        _ip("-n", name, "addr", "add", "192.0.2.10/24", "dev", "eth0")
        _ip("-n", name, "addr", "add", "10.8.0.2/24", "dev", "eth7")
        _ip("-n", name, "route", "add", "default", "via", "192.0.2.1", "dev", "eth0")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


def _read_in(namespace: str) -> dict[str, object]:
    done = subprocess.run(
        ["ip", "netns", "exec", namespace, sys.executable, "-c", _READ_IN_NAMESPACE],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


@pytest.mark.lab
def test_ordinary_uplink_in_a_real_namespace_is_not_a_vpn(namespace: str) -> None:
    seen = _read_in(namespace)
    assert seen == {"egress": ["eth0"], "reasons": [], "vpn": False}


@pytest.mark.lab
def test_tun_default_route_in_a_real_namespace_flags_a_vpn(namespace: str) -> None:
    _ip("-n", namespace, "route", "replace", "default", "dev", "eth7")
    seen = _read_in(namespace)
    assert seen["vpn"] is True
    assert seen["reasons"] == ["Internet traffic leaves through eth7, a tunnel (VPN) interface"]


@pytest.mark.lab
def test_policy_routed_tunnel_like_wg_quick_is_caught_by_the_route_lookup(namespace: str) -> None:
    # wg-quick leaves the main table's default alone and routes everything through another
    # table: only the kernel's route lookup shows where traffic really goes.
    _ip("-n", namespace, "route", "add", "default", "dev", "eth7", "table", "51820")
    _ip("-n", namespace, "rule", "add", "priority", "100", "lookup", "51820")
    seen = _read_in(namespace)
    assert seen["egress"] == ["eth7"]
    assert seen["reasons"] == ["Internet traffic leaves through eth7, a tunnel (VPN) interface"]
