"""OONI documents as typed records: df-002 queries, df-005 tcp_connect, df-006 tls_handshakes,
df-001 requests (base64 bodies, headers as lists or maps), the envelope, hostile fields."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from probe.ooni.dataformat import FormatError, binary, parse_headers, parse_transaction
from probe.ooni.document import OoniDocument, UnknownExperiment, parse_document


def _load(ooni_dir: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ooni_dir / name).read_text())
    return data


def _doc(ooni_dir: Path, name: str) -> OoniDocument:
    return parse_document(_load(ooni_dir, name))


def test_every_shared_document_parses_with_its_envelope(ooni_dir: Path) -> None:
    for path in sorted(ooni_dir.glob("*.json")):
        doc = parse_document(json.loads(path.read_text()))
        test, cc, _ = path.stem.split("__")
        assert doc.test_name == test
        assert doc.probe_cc == cc
        assert doc.probe_asn is not None and doc.probe_asn > 0
        assert doc.measurement_start_time.tzinfo is not None


def test_envelope_fields_are_typed(ooni_dir: Path) -> None:
    doc = _doc(ooni_dir, "web_connectivity__IR__cCbffjGasS4tFgb2.json")
    assert doc.probe_asn == 197207
    assert doc.resolver_asn == 3356
    assert doc.probe_network_name == "Mobile Communication Company of Iran PLC"
    assert doc.software == "ooniprobe-android 3.7.0"
    assert doc.test_version == "0.4.1"
    assert doc.measurement_start_time.isoformat() == "2022-08-15T19:01:30+00:00"
    assert doc.report_id == "20220815T190043Z_webconnectivity_IR_197207_n1_cCbffjGasS4tFgb2"
    query = doc.observations.queries[0]
    assert (query.hostname, query.engine, query.addresses) == (
        "www.facebook.com",
        "system",
        ("10.10.34.36",),
    )
    connect = doc.observations.tcp_connect[0]
    assert (connect.ip, connect.port, connect.success, connect.failure) == (
        "10.10.34.36",
        443,
        False,
        "generic_timeout_error",
    )


def test_identity_is_the_measurement_uid_or_a_digest_stable_across_reserialisation(
    ooni_dir: Path,
) -> None:
    with_uid = _doc(ooni_dir, "web_connectivity__IE__ritWNm1FDBJJCm0S.json")
    assert with_uid.identity == with_uid.measurement_uid
    data = _load(ooni_dir, "signal__AM__2Tjx8RckKKKGB5Fv.json")
    compact = parse_document(json.loads(json.dumps(data, separators=(",", ":"))))
    pretty = parse_document(json.loads(json.dumps(data, indent=4, sort_keys=True)))
    assert compact.identity == pretty.identity
    assert compact.identity.startswith("sha256:")
    other = dict(data, measurement_start_time="2022-10-27 00:03:17")
    assert parse_document(other).identity != compact.identity


def test_base64_bodies_decode_and_missing_padding_is_tolerated(ooni_dir: Path) -> None:
    doc = _doc(ooni_dir, "web_connectivity__MY__OyczQMxcMAzMgBQ0.json")
    response = doc.observations.requests[0].response
    assert response is not None
    # {"format": "base64", "data": "aGk"}: "hi" with its padding missing.
    assert response.body == b"hi"
    with pytest.raises(FormatError, match="invalid base64"):
        binary({"format": "base64", "data": "!!!"}, "x")


def test_base64_header_values_decode_in_a_header_map(ooni_dir: Path) -> None:
    doc = _doc(ooni_dir, "web_connectivity__AU__ZbmZ2ATan0U4fo03.json")
    response = doc.observations.requests[0].response
    assert response is not None and response.code == 307
    location = dict(response.headers)["Location"]
    assert location.startswith("http://192.168.22.1/UserCheck/PortalMain?IID=")


def test_headers_list_keeps_duplicates_and_order_over_the_map() -> None:
    obj = {
        "headers_list": [["Set-Cookie", "a=1"], ["Set-Cookie", "b=2"], ["Server", "x"]],
        "headers": {"Set-Cookie": "b=2", "Server": "x"},
    }
    assert parse_headers(obj, "r") == (
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
        ("Server", "x"),
    )
    assert parse_headers({"headers": {"Vary": ["a", "b"]}}, "r") == (("Vary", "a"), ("Vary", "b"))


def test_failure_strings_are_kept_exactly_and_legacy_false_means_none(ooni_dir: Path) -> None:
    doc = _doc(ooni_dir, "web_connectivity__IT__DqzadSTn2oMyzawZ.json")
    assert doc.observations.requests[0].failure == (
        "ssl_error: error:14007086:SSL routines:CONNECT_CR_CERT:certificate verify failed"
    )
    legacy = _doc(ooni_dir, "facebook_messenger__IT__OOc2k6mbJ0a4w32u.json")
    assert legacy.observations.tcp_connect
    assert all(c.failure is None and c.success for c in legacy.observations.tcp_connect)


def test_tls_handshakes_carry_der_certificates_leaf_first(ooni_dir: Path) -> None:
    doc = _doc(ooni_dir, "telegram__RU__qnYloXASGMUg2G9O.json")
    handshake = doc.observations.tls_handshakes[0]
    assert (handshake.server_name, handshake.tls_version, handshake.negotiated_protocol) == (
        "web.telegram.org",
        "TLSv1.3",
        "h2",
    )
    leaf = x509.load_der_x509_certificate(handshake.peer_certificates[0])
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "web.telegram.org" in names.get_values_for_type(x509.DNSName) or any(
        n.startswith("*.") for n in names.get_values_for_type(x509.DNSName)
    )


def test_no_response_line_is_no_response(ooni_dir: Path) -> None:
    doc = _doc(ooni_dir, "web_connectivity__IR__cCbffjGasS4tFgb2.json")
    transaction = doc.observations.requests[0]
    assert transaction.response is None
    assert transaction.failure == "generic_timeout_error"
    assert transaction.request.url == "https://www.facebook.com/"


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"tcp_connect": [{"ip": "1.2.3.4", "port": "80", "status": {}}]}, "tcp_connect[0].port"),
        ({"tcp_connect": [{"ip": "1.2.3.4", "port": True, "status": {}}]}, "tcp_connect[0].port"),
        ({"queries": {"hostname": "x"}}, "test_keys.queries: expected a list"),
        ({"queries": [{"hostname": "x" * 5000}]}, "queries[0].hostname: longer than 1024"),
        ({"requests": [{"failure": 3}]}, "requests[0].failure: expected a string"),
        ({"requests": [{"request": {"headers_list": [["a"]]}}]}, "headers_list[0]"),
        ({"tls_handshakes": [{"peer_certificates": [{"format": "hex"}]}]}, "peer_certificates"),
        ({"queries": [{}] * 5000}, "more than 4096 entries"),
    ],
)
def test_a_hostile_field_is_a_one_line_error_naming_its_path(
    ooni_dir: Path, patch: dict[str, Any], message: str
) -> None:
    data = _load(ooni_dir, "signal__IT__Q02UUAiiHlVU0VE6.json")
    data["test_keys"].update(patch)
    with pytest.raises(FormatError, match=message.replace("[", r"\[").replace("]", r"\]")) as info:
        parse_document(data)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("probe_asn", "ASX", "probe_asn: not an ASN"),
        ("measurement_start_time", "yesterday", "not a time"),
        ("measurement_start_time", None, "measurement_start_time: missing"),
        ("test_keys", [], "test_keys: expected an object"),
        ("input", ["a"], "input: expected a string"),
    ],
)
def test_a_broken_envelope_is_a_format_error(
    ooni_dir: Path, field: str, value: Any, message: str
) -> None:
    data = _load(ooni_dir, "telegram__US__HKJ2sF9m0lP7JMsW.json")
    data[field] = value
    with pytest.raises(FormatError, match=message):
        parse_document(data)


def test_an_unknown_experiment_is_told_apart_from_a_broken_document() -> None:
    with pytest.raises(UnknownExperiment) as info:
        parse_document({"test_name": "ndt", "test_keys": {}})
    assert info.value.test_name == "ndt"
    with pytest.raises(FormatError, match="test_name: missing"):
        parse_document({"test_keys": {}})


def test_a_request_body_that_is_a_number_is_rejected() -> None:
    with pytest.raises(FormatError, match=r"requests\[0\].request.body"):
        parse_transaction({"request": {"body": 12}}, "test_keys.requests[0]")
