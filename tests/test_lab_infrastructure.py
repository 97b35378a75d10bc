"""The censorship lab proves each technique with real packets: small clients (tests/lab/netcheck.py:
plain sockets, ssl, dnspython) run inside the client namespace, behind the censor, and in the
control namespace, which the censor does not see. The probe itself is not used here.

Needs root and `ip netns` (the fixtures skip otherwise, saying why). The unit tests at the end
(address plan, wire-format matches) need neither.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dns.message
import pytest

from probe.addresses import is_ip
from probe.checks.tcp import PROTOCOL_PROBE_PAYLOAD
from probe.model import Target, TargetKind
from tests.lab import plan as lab_plan
from tests.lab.blockpage import BLOCKPAGE_MARKER
from tests.lab.lab import REPO_ROOT, Lab, unavailable_reason
from tests.lab.pki import INTERCEPTION_CA_ORGANIZATION, LAB_CA_ORGANIZATION
from tests.lab.plan import PUBLIC_RESOLVERS, build_plan, default_targets
from tests.lab.scenarios import SCENARIOS, get_scenario
from tests.lab.techniques import DnsLie, SniReset, host_matches, qname_match, sni_match
from tests.lab.topology import NAMESPACE_PATTERN, NETNS_ETC, existing_namespaces

pytest_plugins = ("tests.lab.fixtures",)  # the lab and lab_session fixtures

Check = dict[str, Any]
# Long enough for a namespace round trip on a loaded CI machine, short enough to keep the file
# fast: a blocked operation costs this much.
BLOCKED_TIMEOUT = 1.5


def netcheck(running: Lab, checks: list[Check], *, vantage: str = "client") -> list[Check]:
    """Run checks (see tests/lab/netcheck.py) in the client or the control namespace."""
    run = running.run_in_client if vantage == "client" else running.run_in_control
    done = run([sys.executable, "-m", "tests.lab.netcheck"], input=json.dumps(checks), timeout=60)
    assert done.returncode == 0, done.stderr
    results: list[Check] = json.loads(done.stdout)
    return results


def one(running: Lab, check: Check, *, vantage: str = "client") -> Check:
    return netcheck(running, [check], vantage=vantage)[0]


# -- the clean lab -----------------------------------------------------------------------------


@pytest.mark.lab
def test_clean_lab_serves_every_catalog_endpoint_to_client_and_control(lab: Lab) -> None:
    targets = default_targets()
    checks: list[Check] = []
    for target in targets:
        if not is_ip(target.host):
            checks.append({"op": "resolve", "host": target.host})
        address = lab.address_of(target.host)
        for port in target.ports:
            if target.kind is TargetKind.HTTPS:
                checks.append({"op": "tls", "address": address, "port": port, "sni": target.host})
            elif target.kind is TargetKind.HTTP:
                url = target.url_for_port(port)
                checks.append({"op": "http", "url": url, "method": target.method})
            else:
                checks.append({"op": "connect", "address": address, "port": port})
    for vantage in ("client", "control"):
        results = netcheck(lab, checks, vantage=vantage)
        failures = [
            (check, result)
            for check, result in zip(checks, results, strict=True)
            if "error" in result
            or (check["op"] == "resolve" and result["addresses"] != [lab.address_of(check["host"])])
            or (check["op"] == "http" and result["status"] != 200)
            or (check["op"] == "tls" and LAB_CA_ORGANIZATION not in result["issuer"])
        ]
        assert not failures, f"{vantage}: {failures[:5]}"
    assert len(checks) > 80  # the whole catalog, not a sample


@pytest.mark.lab
def test_clean_lab_serves_big_resource_and_doh(lab: Lab) -> None:
    query = dns.message.make_query("www.facebook.com", "A")
    query.id = 0
    encoded = base64.urlsafe_b64encode(query.to_wire()).decode().rstrip("=")
    big, doh = netcheck(
        lab,
        [
            {"op": "download", "url": "https://i.ytimg.com/big", "seconds": 5},
            {"op": "http", "url": f"https://1.1.1.1/dns-query?dns={encoded}", "binary": True},
        ],
    )
    assert big["bytes"] == 2 * 1024 * 1024
    assert doh["status"] == 200
    answer = dns.message.from_wire(bytes.fromhex(doh["body_hex"]))
    assert [item.to_text() for item in answer.answer[0]] == [lab.address_of("www.facebook.com")]


@pytest.mark.lab
def test_control_vantage_is_reachable_from_the_client_through_the_censor(lab: Lab) -> None:
    # A process the lab started in ctrl, as the control test helper is. Not the helper's own
    # port: the end-to-end tests' helper may still hold it on this session's lab.
    port = 8091
    server = lab.spawn(
        "ctrl",
        [sys.executable, "-m", "http.server", str(port), "--bind", lab.control_address],
    )
    check: Check = {"op": "http", "url": f"http://{lab.control_address}:{port}/"}
    deadline = time.monotonic() + 10
    while "error" in (result := one(lab, check)) and time.monotonic() < deadline:
        time.sleep(0.1)
    server.terminate()
    server.wait(timeout=5)
    assert result["status"] == 200 and result["peer"] == lab.control_address


# -- DNS techniques ----------------------------------------------------------------------------


@pytest.mark.lab
def test_dns_lie_sends_client_to_blockpage_while_control_sees_real_address(lab: Lab) -> None:
    lab.apply(get_scenario("dns_lie"))
    resolved, page, other = netcheck(
        lab,
        [
            {"op": "resolve", "host": "www.facebook.com"},
            {"op": "http", "url": "http://www.facebook.com/"},
            {"op": "resolve", "host": "twitter.com"},
        ],
    )
    assert resolved["addresses"] == [lab_plan.LIE_ADDRESS]
    assert page["peer"] == lab_plan.LIE_ADDRESS
    assert page["status"] == 403 and BLOCKPAGE_MARKER in page["body"]
    assert other["addresses"] == [lab.address_of("twitter.com")]
    control = one(lab, {"op": "resolve", "host": "www.facebook.com"}, vantage="control")
    assert control["addresses"] == [lab.address_of("www.facebook.com")]


@pytest.mark.lab
def test_dns_nxdomain_comes_from_the_isp_resolver_only(lab: Lab) -> None:
    lab.apply(get_scenario("dns_nxdomain"))
    system, isp, public = netcheck(
        lab,
        [
            {"op": "resolve", "host": "www.youtube.com"},
            {"op": "dns", "server": lab.isp_resolver, "name": "www.youtube.com", "window": 0},
            {"op": "dns", "server": "8.8.8.8", "name": "www.youtube.com", "window": 0},
        ],
    )
    assert system["error"].startswith("gaierror")
    assert isp["responses"][0]["rcode"] == "NXDOMAIN"
    assert public["responses"][0]["addresses"] == [lab.address_of("www.youtube.com")]


@pytest.mark.lab
def test_dns_injection_delivers_forged_answer_first_and_real_answer_second(lab: Lab) -> None:
    lab.apply(get_scenario("dns_injection"))
    real = lab.address_of("twitter.com")
    public, isp, untouched = netcheck(
        lab,
        [
            {"op": "dns", "server": "8.8.8.8", "name": "twitter.com", "window": 1.0},
            {"op": "dns", "server": lab.isp_resolver, "name": "twitter.com", "window": 1.0},
            {"op": "dns", "server": "8.8.8.8", "name": "www.facebook.com", "window": 0.3},
        ],
    )
    for seen in (public, isp):
        answers = [response["addresses"] for response in seen["responses"]]
        assert answers == [[lab_plan.LIE_ADDRESS], [real]], seen
        forged, genuine = seen["responses"]
        assert forged["ip_ttl"] != genuine["ip_ttl"]  # the injector's TTL gives it away
    assert [r["addresses"] for r in untouched["responses"]] == [
        [lab.address_of("www.facebook.com")]
    ]


@pytest.mark.lab
def test_dns_drop_silences_queries_for_hit_names_on_every_resolver(lab: Lab) -> None:
    lab.apply(get_scenario("dns_drop"))
    hit = "e1.whatsapp.net"
    public, isp, other = netcheck(
        lab,
        [
            {"op": "dns", "server": "8.8.8.8", "name": hit, "timeout": BLOCKED_TIMEOUT},
            {"op": "dns", "server": lab.isp_resolver, "name": hit, "timeout": BLOCKED_TIMEOUT},
            {"op": "dns", "server": "8.8.8.8", "name": "www.facebook.com", "window": 0},
        ],
    )
    assert public["responses"] == [] and isp["responses"] == []
    assert other["responses"][0]["addresses"] == [lab.address_of("www.facebook.com")]
    control = one(
        lab, {"op": "dns", "server": "8.8.8.8", "name": hit, "window": 0}, vantage="control"
    )
    assert control["responses"][0]["addresses"] == [lab.address_of(hit)]


# -- IP and TCP techniques ---------------------------------------------------------------------


@pytest.mark.lab
def test_ip_blackhole_makes_every_dc_connect_time_out_without_rst(lab: Lab) -> None:
    lab.apply(get_scenario("ip_blackhole"))
    dcs = [t.host for t in default_targets() if t.platform == "telegram" and t.group == "dc"]
    checks: list[Check] = [
        {"op": "connect", "address": dc, "port": 80, "timeout": BLOCKED_TIMEOUT} for dc in dcs
    ]
    checks.append({"op": "connect", "address": lab.address_of("telegram.org"), "port": 443})
    *blackholed, web = netcheck(lab, checks)
    assert [r.get("error") for r in blackholed] == ["timeout"] * len(dcs)
    assert web["connected"]
    control = netcheck(lab, checks[:1], vantage="control")
    assert control[0]["connected"]


@pytest.mark.lab
def test_tcp_reset_refuses_the_connection(lab: Lab) -> None:
    lab.apply(get_scenario("tcp_reset"))
    address = lab.address_of("e1.whatsapp.net")
    reset, other = netcheck(
        lab,
        [
            {"op": "connect", "address": address, "port": 5222},
            {"op": "connect", "address": lab.address_of("www.facebook.com"), "port": 443},
        ],
    )
    assert reset["error"] == "ECONNREFUSED"
    assert other["connected"]
    assert one(lab, {"op": "connect", "address": address, "port": 5222}, vantage="control")[
        "connected"
    ]


# -- TLS techniques ----------------------------------------------------------------------------


@pytest.mark.lab
def test_sni_reset_resets_the_handshake_after_connect_and_spares_other_sni(lab: Lab) -> None:
    lab.apply(get_scenario("sni_reset"))
    address = lab.address_of("twitter.com")
    blocked, harmless = netcheck(
        lab,
        [
            {"op": "tls", "address": address, "port": 443, "sni": "twitter.com"},
            {"op": "tls", "address": address, "port": 443, "sni": "www.wikipedia.org"},
        ],
    )
    assert blocked["connected"] and not blocked["handshake"]
    assert blocked["error"] == "ECONNRESET"
    assert harmless["handshake"]  # same address, other SNI: the A/B test that proves SNI filtering


@pytest.mark.lab
def test_sni_drop_stalls_the_handshake(lab: Lab) -> None:
    lab.apply(get_scenario("sni_drop"))
    address = lab.address_of("www.instagram.com")
    blocked, harmless = netcheck(
        lab,
        [
            {
                "op": "tls",
                "address": address,
                "port": 443,
                "sni": "www.instagram.com",
                "timeout": BLOCKED_TIMEOUT,
            },
            {"op": "tls", "address": address, "port": 443, "sni": "www.wikipedia.org"},
        ],
    )
    assert blocked["connected"] and blocked["error"] == "timeout"
    assert harmless["handshake"]


@pytest.mark.lab
def test_tls_interception_presents_a_certificate_from_an_untrusted_ca(lab: Lab) -> None:
    lab.apply(get_scenario("tls_interception"))
    address = lab.address_of("www.facebook.com")
    check: Check = {"op": "tls", "address": address, "port": 443, "sni": "www.facebook.com"}
    verified, unverified = netcheck(lab, [check, {**check, "verify": False}])
    assert verified["connected"] and not verified["handshake"]
    assert verified["error"].startswith("certificate:")
    assert INTERCEPTION_CA_ORGANIZATION in unverified["issuer"]
    control = one(lab, check, vantage="control")
    assert control["handshake"] and LAB_CA_ORGANIZATION in control["issuer"]


# -- HTTP techniques ---------------------------------------------------------------------------


@pytest.mark.lab
def test_http_blockpage_is_injected_with_the_real_server_address(lab: Lab) -> None:
    lab.apply(get_scenario("http_blockpage"))
    address = lab.address_of("www.facebook.com")
    blocked, other_host = netcheck(
        lab,
        [
            {"op": "http", "url": "http://www.facebook.com/"},
            # Same server, harmless Host: the request goes through.
            {"op": "http", "url": "http://www.wikipedia.org/", "address": address},
        ],
    )
    assert blocked["peer"] == address  # not 10.10.34.x: the page came "from" Facebook's address
    assert blocked["status"] == 403 and BLOCKPAGE_MARKER in blocked["body"]
    assert other_host["status"] == 200
    control = one(lab, {"op": "http", "url": "http://www.facebook.com/"}, vantage="control")
    assert control["status"] == 200 and "www.facebook.com" in control["body"]


@pytest.mark.lab
def test_http_reset_resets_the_request(lab: Lab) -> None:
    lab.apply(get_scenario("http_reset"))
    blocked, other = netcheck(
        lab,
        [
            {"op": "http", "url": "http://www.instagram.com/"},
            {"op": "http", "url": "http://www.facebook.com/"},
        ],
    )
    assert blocked["error"] == "ECONNRESET"
    assert other["status"] == 200


# -- throttling --------------------------------------------------------------------------------


@pytest.mark.lab
def test_throttle_collapses_throughput_to_about_64_kbit(lab: Lab) -> None:
    lab.apply(get_scenario("throttle"))
    # Plain HTTP: over TLS the reader gets whole 16 KB records, 2 s apiece at 64 kbit/s, which
    # makes a 3 s sample too coarse to check the rate.
    throttled, fast = netcheck(
        lab,
        [
            {"op": "download", "url": "http://redirector.googlevideo.com/big", "seconds": 3},
            {"op": "download", "url": "http://www.youtube.com/big", "seconds": 3},
        ],
    )
    assert 40 <= throttled["kbps"] <= 100, throttled
    assert fast["bytes"] >= 2 * 1024 * 1024
    assert fast["kbps"] > 10 * throttled["kbps"]  # OONI's "extreme" throttling: 10x or worse


@pytest.mark.lab
def test_throttle_shapes_each_connection_apart_so_a_new_one_is_not_queued_behind_a_transfer(
    lab: Lab,
) -> None:
    lab.apply(get_scenario("throttle"))
    # A second connection to the throttled address opens and fetches a page of a few KB while a
    # transfer fills its own queue (64 KB, 8 s at 64 kbit/s): one queue for the address held the
    # SYN-ACK and the page behind the transfer, and both timed out.
    page = "http://redirector.googlevideo.com/"
    transfer, beside = netcheck(
        lab,
        [
            {"op": "download", "url": "http://redirector.googlevideo.com/big", "seconds": 5},
            {"op": "http", "url": page, "after": 2.5, "timeout": 3},
        ],
    )
    assert beside.get("status") == 200 and beside["body_length"] > 1024, beside
    assert 20 <= transfer["kbps"] <= 100, transfer
    assert transfer["bytes"] >= 16 * 1024, transfer  # the transfer had its queue full by then


# -- Iran's protocol allowlist -----------------------------------------------------------------


@pytest.mark.lab
def test_protocol_allowlist_drops_flows_whose_first_data_is_not_a_known_protocol(lab: Lab) -> None:
    address = lab.address_of("web.telegram.org")
    # The probe's own fixed payload: random bytes are sometimes a plausible SSLv2-style record
    # header that makes the TLS server wait for more, instead of answering at once.
    payload = PROTOCOL_PROBE_PAYLOAD.hex()
    junk: Check = {"op": "send", "address": address, "port": 443, "data_hex": payload}
    before = one(lab, junk)
    assert before.get("reply") is not None  # the TLS server answers junk (alert or close)
    lab.apply(get_scenario("protocol_allowlist"))
    dropped, tls, http, dns = netcheck(
        lab,
        [
            {**junk, "wait": BLOCKED_TIMEOUT},
            {"op": "tls", "address": address, "port": 443, "sni": "web.telegram.org"},
            {"op": "http", "url": "http://149.154.175.50:443/", "method": "POST"},
            {"op": "dns", "server": "8.8.8.8", "name": "web.telegram.org", "window": 0},
        ],
    )
    assert dropped["connected"] and dropped["error"] == "timeout"
    assert tls["handshake"]
    assert http["status"] == 200
    assert dns["responses"][0]["addresses"] == [address]


# -- what is not censorship --------------------------------------------------------------------


@pytest.mark.lab
def test_site_down_fails_from_the_control_too(lab: Lab) -> None:
    lab.apply(get_scenario("site_down"))
    check: Check = {"op": "connect", "address": lab.address_of("chat.signal.org"), "port": 443}
    assert one(lab, check)["error"] == "ECONNREFUSED"
    assert one(lab, check, vantage="control")["error"] == "ECONNREFUSED"


@pytest.mark.lab
def test_cdn_answer_differs_from_control_yet_completes_a_valid_handshake(lab: Lab) -> None:
    lab.apply(get_scenario("cdn"))
    name = "www.facebook.com"
    resolved = one(lab, {"op": "resolve", "host": name})
    assert resolved["addresses"] == [lab.cdn_address_of(name)] != [lab.address_of(name)]
    control = one(lab, {"op": "resolve", "host": name}, vantage="control")
    assert control["addresses"] == [lab.address_of(name)]
    tls = one(lab, {"op": "tls", "address": lab.cdn_address_of(name), "port": 443, "sni": name})
    assert tls["handshake"] and LAB_CA_ORGANIZATION in tls["issuer"]


@pytest.mark.lab
def test_dead_uplink_fails_everything_until_cleared(lab: Lab) -> None:
    address = lab.address_of("www.google.com")
    checks: list[Check] = [
        {"op": "resolve", "host": "www.google.com"},
        {"op": "connect", "address": address, "port": 443, "timeout": BLOCKED_TIMEOUT},
    ]
    lab.apply(get_scenario("dead_uplink"))
    resolved, connected = netcheck(lab, checks)
    assert "error" in resolved and "error" in connected
    assert all("error" not in r for r in netcheck(lab, checks, vantage="control"))
    lab.clear()
    resolved, connected = netcheck(lab, checks)
    assert resolved["addresses"] == [address] and connected["connected"]


# -- composition -------------------------------------------------------------------------------


@pytest.mark.lab
def test_iran_mix_applies_all_its_techniques_at_once(lab: Lab) -> None:
    lab.apply(get_scenario("iran_mix"))
    telegram, dc, twitter, facebook, video = netcheck(
        lab,
        [
            {"op": "resolve", "host": "web.telegram.org"},
            {"op": "connect", "address": "149.154.167.51", "port": 443, "timeout": 1.0},
            {"op": "tls", "address": lab.address_of("x.com"), "port": 443, "sni": "x.com"},
            {"op": "http", "url": "http://www.facebook.com/"},
            {"op": "download", "url": "http://redirector.googlevideo.com/big", "seconds": 1.5},
        ],
    )
    assert telegram["addresses"] == [lab_plan.LIE_ADDRESS]
    assert dc["error"] == "timeout"
    assert twitter["error"] == "ECONNRESET"
    assert facebook["status"] == 403
    assert video["kbps"] < 128


@pytest.mark.lab
def test_scenarios_compose_and_clear_restores_the_clean_network(lab: Lab) -> None:
    checks: list[Check] = [
        {"op": "resolve", "host": "www.instagram.com"},
        {"op": "tls", "address": lab.address_of("t.co"), "port": 443, "sni": "t.co"},
    ]
    lab.apply(get_scenario("dns_lie"), get_scenario("sni_reset"))
    lied, reset = netcheck(lab, checks)
    assert lied["addresses"] == [lab_plan.LIE_ADDRESS] and reset["error"] == "ECONNRESET"
    lab.apply(DnsLie(("t.co",)), SniReset(("www.instagram.com",)))  # ad-hoc techniques
    resolved, handshake = netcheck(lab, checks)
    assert resolved["addresses"] == [lab.address_of("www.instagram.com")] and handshake["handshake"]
    lab.clear()
    resolved, handshake = netcheck(lab, checks)
    assert resolved["addresses"] == [lab.address_of("www.instagram.com")] and handshake["handshake"]


# -- life cycle --------------------------------------------------------------------------------

_SMALL_CATALOG = [Target("example", "site", TargetKind.HTTPS, "www.example.org", (443,))]


def _lab_leftovers(prefix: str, workdir: Path) -> list[str]:
    leftovers = sorted(name for name in existing_namespaces() if name.startswith(prefix))
    leftovers += [str(p) for p in NETNS_ETC.glob(f"{prefix}-*")] if NETNS_ETC.exists() else []
    return leftovers + ([str(workdir)] if workdir.exists() else [])


@pytest.mark.lab
def test_teardown_removes_everything_even_when_the_body_raises(lab_session: Lab) -> None:
    started = time.monotonic()
    with (
        pytest.raises(RuntimeError, match="test body failed"),
        Lab.create(_SMALL_CATALOG) as doomed,
    ):
        prefix, workdir = doomed.prefix, doomed.workdir
        assert set(doomed.namespaces) <= existing_namespaces()
        assert (NETNS_ETC / doomed.client_ns / "resolv.conf").exists()
        raise RuntimeError("test body failed")
    assert _lab_leftovers(prefix, workdir) == []
    assert doomed.bring_up_seconds is not None and doomed.teardown_seconds is not None
    assert time.monotonic() - started < 15
    assert set(lab_session.namespaces) <= existing_namespaces()  # the other lab is untouched


@pytest.mark.lab
def test_a_ctrl_c_raised_inside_the_test_process_leaves_the_session_lab_up(lab: Lab) -> None:
    """Ctrl-C in a pytest session is pytest's to unwind: a test that raises SIGINT in its own
    process (as the event-loop tests do) must not tear down the lab every later test uses, even
    after another lab, one that does tear down on Ctrl-C, came and went beside it (its handler
    stayed installed while the session's lab lived: CI, stop 25)."""
    with Lab.create(_SMALL_CATALOG):
        pass
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
        time.sleep(5)  # the handler runs between bytecodes; never reached
    assert set(lab.namespaces) <= existing_namespaces()
    done = lab.run_in_client(["ip", "-o", "link", "show"], timeout=30)
    assert done.returncode == 0, done.stderr


def _lab_namespaces() -> set[str]:
    """Namespaces of labs like ours (other tools' namespaces may come and go meanwhile)."""
    return {name for name in existing_namespaces() if NAMESPACE_PATTERN.match(name)}


def _lab_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tests.lab", *args]


@pytest.mark.lab
def test_cli_runs_a_command_in_the_client_under_a_scenario(lab_session: Lab) -> None:
    before = _lab_namespaces()
    done = subprocess.run(
        _lab_command(
            "--scenario",
            "dns_lie",
            "--",
            sys.executable,
            "-c",
            "import os, socket; print(socket.gethostbyname('www.facebook.com'), "
            "os.environ['SSL_CERT_FILE'])",
        ),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    address, ca_file = done.stdout.split()
    assert address == lab_plan.LIE_ADDRESS and ca_file.endswith(".pem")
    prefix = done.stderr.split()[1]  # "lab cplXXXXXX up in ..."
    assert NAMESPACE_PATTERN.match(f"{prefix}-client") and "torn down" in done.stderr
    assert not {name for name in _lab_namespaces() - before if name.startswith(prefix)}


@pytest.mark.lab
def test_cli_tears_the_lab_down_on_sigterm(lab_session: Lab) -> None:
    before = _lab_namespaces()
    process = subprocess.Popen(
        _lab_command("--", "sleep", "60"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )
    try:
        assert process.stderr is not None
        # The CLI says "lab <prefix> up in ..." once the command is about to start.
        with selectors.DefaultSelector() as selector:
            selector.register(process.stderr, selectors.EVENT_READ)
            assert selector.select(timeout=20), "the lab never came up"
        banner = process.stderr.readline()
        assert banner.startswith("lab cpl"), banner
        prefix = banner.split()[1]
        assert {name for name in _lab_namespaces() - before if name.startswith(prefix)}
        time.sleep(0.3)  # let it reach the command
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGTERM
    assert not {name for name in _lab_namespaces() if name.startswith(prefix)}
    assert not [p for p in _etc_entries() if p.name.startswith(prefix)]


def _etc_entries() -> list[Path]:
    return list(NETNS_ETC.iterdir()) if NETNS_ETC.exists() else []


def test_cli_lists_every_scenario_with_what_it_hits() -> None:
    done = subprocess.run(
        _lab_command("--list"), capture_output=True, text=True, timeout=60, cwd=REPO_ROOT
    )
    assert done.returncode == 0, done.stderr
    for name in SCENARIOS:
        assert f"\n{name}: " in f"\n{done.stdout}"
    assert "149.154.175.50" in done.stdout  # the blackholed DCs are named


# -- without root: the plan and the wire-format matches ----------------------------------------


def test_address_plan_is_deterministic_public_and_keeps_literal_addresses() -> None:
    targets = default_targets()
    first, second = build_plan(targets), build_plan(list(reversed(targets)))
    assert first.hosts == second.hosts and first.cdn == second.cdn
    sites = [address for name, address in first.hosts.items() if name not in PUBLIC_RESOLVERS]
    assert len(set(sites)) == len(sites)  # one address per name: techniques hit names exactly
    for address in first.inet_addresses:
        assert ipaddress.ip_address(address).is_global, address
    assert ipaddress.ip_address(first.address_of("www.facebook.com")) in ipaddress.ip_network(
        "157.240.0.0/16"
    )  # AS32934, as the real one
    assert "149.154.175.50" in first.ip_targets
    grown = build_plan(targets, extra_hosts=["new.example.net"])
    assert grown.address_of("new.example.net") in grown.inet_addresses


def test_wire_matches_are_exact_encodings() -> None:
    x_com = sni_match("x.com").split('"|')[1].rstrip('|"')
    assert x_com == "000005" + b"x.com".hex()
    # A ClientHello for netflix.com holds "x.com" but not with x.com's length prefix: no match.
    assert x_com not in (b"\x00\x00\x0bnetflix.com").hex()
    assert "|03777777" in qname_match("www.facebook.com")
    assert all("486f73743a20" in match.lower() for match in host_matches("t.co"))


def test_lab_says_why_it_cannot_run_without_root_or_iptables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert "needs root" in (unavailable_reason() or "")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    real_which = shutil.which
    monkeypatch.setattr(
        shutil, "which", lambda tool: None if tool == "iptables-restore" else real_which(tool)
    )
    assert "apt-get install iptables" in (unavailable_reason() or "")
