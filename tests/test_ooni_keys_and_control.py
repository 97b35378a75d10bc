"""OONI's own verdict keys per experiment, the web_connectivity test-helper control as our
ControlEvidence, and the routing of a document's observations to our targets."""

from __future__ import annotations

import json
from pathlib import Path

from probe.model import TargetKind
from probe.ooni.control import control_evidence
from probe.ooni.document import OoniDocument, parse_document
from probe.ooni.targets import route
from probe.ooni.verdict_keys import TELEGRAM_DCS, Combine, OoniOutcome, ooni_keys


def _doc(ooni_dir: Path, name: str) -> OoniDocument:
    return parse_document(json.loads((ooni_dir / name).read_text()))


def _keys(ooni_dir: Path, name: str) -> dict[str, str]:
    return {k.key: k.outcome.value for k in ooni_keys(_doc(ooni_dir, name))}


def test_web_connectivity_blocking_and_accessible_become_one_outcome(ooni_dir: Path) -> None:
    assert _keys(ooni_dir, "web_connectivity__IR__cCbffjGasS4tFgb2.json") == {"blocking": "blocked"}
    assert _keys(ooni_dir, "web_connectivity__US__KWJqHUAPqMdtf2Up.json") == {"blocking": "ok"}
    # blocking false, accessible false: ts-017's "the site is down".
    assert _keys(ooni_dir, "web_connectivity__RU__I0rABGogC4OLATJx.json") == {"blocking": "down"}
    # blocking null (the control failed): OONI does not know.
    assert _keys(ooni_dir, "web_connectivity__AE__ocKS0RbSg8GE1oLa.json") == {"blocking": "unknown"}
    (key,) = ooni_keys(_doc(ooni_dir, "web_connectivity__IR__cCbffjGasS4tFgb2.json"))
    assert key.value == '{"blocking": "dns", "accessible": false}'


def test_platform_experiments_expose_each_verdict_key_with_its_scope(ooni_dir: Path) -> None:
    assert _keys(ooni_dir, "telegram__RU__qnYloXASGMUg2G9O.json") == {
        "telegram_tcp_blocking": "ok",
        "telegram_http_blocking": "ok",
        "telegram_web_status": "blocked",
    }
    assert _keys(ooni_dir, "whatsapp__JP__aL6HH9GHYc1YbILm.json") == {
        "whatsapp_endpoints_status": "ok",
        "registration_server_status": "blocked",
        "whatsapp_web_status": "blocked",
    }
    assert _keys(ooni_dir, "signal__AM__2Tjx8RckKKKGB5Fv.json") == {
        "signal_backend_status": "blocked"
    }
    facebook = _keys(ooni_dir, "facebook_messenger__RU__fqDY31xiRoWEdKd4.json")
    assert facebook["facebook_dns_blocking"] == "blocked"
    assert facebook["facebook_b_api_dns_consistent"] == "blocked"
    assert facebook["facebook_b_api_reachable"] == "unknown"
    assert len(facebook) == 16
    tcp = next(
        k
        for k in ooni_keys(_doc(ooni_dir, "telegram__RU__qnYloXASGMUg2G9O.json"))
        if k.key == "telegram_tcp_blocking"
    )
    assert tcp.scope.hosts == TELEGRAM_DCS
    assert tcp.scope.combine is Combine.ALL
    assert tcp.scope.techniques == ("tcp.",)


def test_every_shared_document_has_ooni_keys(ooni_dir: Path) -> None:
    for path in sorted(ooni_dir.glob("*.json")):
        keys = ooni_keys(parse_document(json.loads(path.read_text())))
        assert keys, path.name
        assert all(k.outcome in OoniOutcome for k in keys)


def test_the_helper_control_becomes_control_evidence(ooni_dir: Path) -> None:
    doc = _doc(ooni_dir, "web_connectivity__IR__cCbffjGasS4tFgb2.json")
    evidence = control_evidence(doc, "facebook", "https://www.facebook.com/")
    assert [d.addresses for d in evidence.dns] == [
        ("157.240.192.35", "2a03:2880:f137:182:face:b00c:0:25de")
    ]
    assert [(c.address, c.port, c.failure) for c in evidence.tcp] == [
        ("10.10.34.36", 443, "generic_timeout_error")
    ]
    assert [(h.status, h.body_length, h.url) for h in evidence.http] == [
        (200, 70958, "https://www.facebook.com/")
    ]
    assert evidence.covers("facebook", "https://www.facebook.com/")


def test_the_helper_lists_cnames_among_addresses_and_only_addresses_are_kept(
    ooni_dir: Path,
) -> None:
    doc = _doc(ooni_dir, "web_connectivity__AU__ZbmZ2ATan0U4fo03.json")
    evidence = control_evidence(doc, "testlist", "http://www.feminist.org")
    assert [d.addresses for d in evidence.dns] == [("192.124.249.6",)]


def test_web_connectivity_0_5_control_has_tls_handshakes(ooni_dir: Path) -> None:
    doc = _doc(ooni_dir, "web_connectivity__IT__RrhDWX53xCEpRH8Q.json")
    evidence = control_evidence(doc, "testlist", "https://nexa.polito.it/")
    assert [(t.address, t.port, t.sni, t.verified) for t in evidence.tls] == [
        ("130.192.16.171", 443, "nexa.polito.it", True)
    ]


def test_a_failed_control_is_no_control(ooni_dir: Path) -> None:
    for name in (
        "web_connectivity__AE__ocKS0RbSg8GE1oLa.json",  # control_failure: json_parse_error
        "web_connectivity__TM__K12GviVnQLLRnJoU.json",  # control_failure: connection_refused
    ):
        assert control_evidence(_doc(ooni_dir, name), "testlist", "x").empty


def test_telegram_observations_route_to_the_catalogs_data_centre_targets(ooni_dir: Path) -> None:
    routed = {
        r.target.name: r for r in route(_doc(ooni_dir, "telegram__US__HKJ2sF9m0lP7JMsW.json"))
    }
    dcs = {name: r for name, r in routed.items() if r.target.group == "dc"}
    assert set(dcs) == TELEGRAM_DCS
    for r in dcs.values():
        assert r.target.source == "catalog" and r.target.kind is TargetKind.HTTP
        assert sorted(c.port for c in r.tcp_connect) == [80, 443]
        assert {t.request.method for t in r.requests} == {"POST"}
    web = routed["https://web.telegram.org/"]
    assert web.tls_handshakes and web.requests and web.queries


def test_web_connectivity_is_one_target_and_a_catalog_url_keeps_its_platform(
    ooni_dir: Path,
) -> None:
    (only,) = route(_doc(ooni_dir, "web_connectivity__IR__cCbffjGasS4tFgb2.json"))
    assert (only.target.platform, only.target.name) == ("facebook", "https://www.facebook.com/")
    assert len(only.queries) == 1 and len(only.tcp_connect) == 1 and len(only.requests) == 1
    (other,) = route(_doc(ooni_dir, "web_connectivity__RU__I0rABGogC4OLATJx.json"))
    assert (other.target.platform, other.target.name, other.target.source) == (
        "testlist",
        "http://www.pokerroom.com/",
        "ooni",
    )


def test_whatsapp_endpoints_share_addresses_and_each_gets_its_connects(ooni_dir: Path) -> None:
    routed = route(_doc(ooni_dir, "whatsapp__US__JPLapx8JfJ0J4nf4.json"))
    endpoints = [r for r in routed if r.target.group == "chat"]
    assert len(endpoints) == 16
    assert all(r.tcp_connect and r.queries for r in endpoints)
    assert all({c.port for c in r.tcp_connect} <= {443, 5222} for r in endpoints)
