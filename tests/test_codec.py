"""The measurement codec: every record round-trips through JSON, a bad field is a CodecError
naming its path, the JSON keys are the details keys the store has always held, and the data
dictionary (docs/details.md) is the one the records generate."""

from __future__ import annotations

import json
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from probe.codec import (
    CODEC_VERSION,
    CodecError,
    data_dictionary,
    decode_details,
    decode_measurement,
    decode_observation,
    decode_run,
    encode_details,
    encode_measurement,
    encode_observation,
    encode_run,
    split_failure,
)
from probe.model import (
    Details,
    DifferentialKind,
    DnsPerType,
    Layer,
    Measurement,
    Observation,
    RawCapture,
    TcpConnect,
)
from tests.builders import (
    dns,
    http,
    make_run,
    observation,
    protocol_probe,
    tcp,
    tls,
)

DOCS = Path(__file__).resolve().parent.parent / "docs" / "details.md"


def _every_record() -> list[Measurement]:
    return [
        dns(
            "p",
            "t",
            "a.example",
            ["192.0.2.1"],
            resolver="udp://192.0.2.53:53",
            responses=[["192.0.2.1"], ["10.10.34.35"]],
        ),
        tcp("p", "t", "192.0.2.1", 443, "connection_reset"),
        protocol_probe("p", "t", "192.0.2.1", 443, "generic_timeout_error"),
        tls(
            "p",
            "t",
            "192.0.2.1",
            443,
            "example.com",
            "ssl_invalid_hostname",
            differential_kind=DifferentialKind.SNI,
            target_sni="a.example",
        ),
        http(
            "p",
            "t",
            "http://a.example/",
            "192.0.2.1",
            403,
            differential_kind=DifferentialKind.HOST,
            target_host="a.example",
        ),
        Measurement(
            "run-1",
            "p",
            "t",
            observation(
                Layer.TCP,
                "192.0.2.1:443",
                RawCapture(
                    available=True,
                    evidence="tcp_packets",
                    capture=MappingProxyType({"reset_ttls": [64], "segments": [{"ttl": 61}]}),
                ),
            ),
        ),
    ]


@pytest.mark.parametrize("m", _every_record(), ids=lambda m: type(m.observation.details).__name__)
def test_every_record_round_trips_through_json_text(m: Measurement) -> None:
    text = json.dumps(encode_measurement(m))
    assert decode_measurement(json.loads(text)) == m
    obs = m.observation
    assert (
        decode_details(obs.layer, json.loads(json.dumps(encode_details(obs.details))))
        == obs.details
    )


def test_a_run_round_trips_and_names_its_codec_version() -> None:
    run = make_run()
    document = encode_run(run)
    assert document["version"] == CODEC_VERSION
    assert decode_run(json.loads(json.dumps(document))) == run


def test_the_json_keys_are_todays_details_keys() -> None:
    (dns_m,) = [m for m in _every_record() if m.layer is Layer.DNS]
    keys = set(encode_details(dns_m.observation.details))
    assert {
        "query",
        "resolver",
        "transport",
        "rcode",
        "addresses",
        "answers",
        "responses",
        "second_answer",
        "per_type",
        "retried_over_tcp",
    } <= keys
    per_type = encode_details(dns_m.observation.details)["per_type"]
    assert per_type == {"A": None, "AAAA": None}
    # The runner's annotations are left out when unset, as before the records.
    assert "differential_kind" not in keys and "primary" not in keys


def _tcp_document(**details: Any) -> dict[str, Any]:
    obs: Observation[Details] = observation(
        Layer.TCP, "192.0.2.1:443", TcpConnect("192.0.2.1", 443)
    )
    document: dict[str, Any] = json.loads(json.dumps(encode_observation(obs)))
    document["details"].update(details)
    return document


@pytest.mark.parametrize(
    ("document", "path"),
    [
        (_tcp_document(port="443"), "$.details.port: expected an integer"),
        (_tcp_document(address=None), "$.details.address: expected a string"),
        ({**_tcp_document(), "layer": "quic"}, "$.layer: expected one of"),
        ({**_tcp_document(), "started_at": "yesterday"}, "$.started_at"),
        ({**_tcp_document(), "started_at": "2025-03-01T12:00:00"}, "has no time zone"),
        ({**_tcp_document(), "duration_ms": -1}, "$.duration_ms"),
    ],
)
def test_a_bad_field_is_a_codec_error_naming_its_path(document: dict[str, Any], path: str) -> None:
    with pytest.raises(CodecError) as raised:
        decode_observation(document)
    assert path in str(raised.value)


def test_a_nested_bad_field_is_named_down_to_its_index() -> None:
    data = encode_details(_every_record()[0].observation.details)
    data["responses"][1]["rcode"] = 3  # type: ignore[index, call-overload]
    with pytest.raises(CodecError, match=r"\$\.details\.responses\[1\]\.rcode: expected a string"):
        decode_details(Layer.DNS, data)


def test_a_measurement_of_another_codec_version_is_refused() -> None:
    document = encode_measurement(_every_record()[1])
    document["version"] = CODEC_VERSION + 1
    with pytest.raises(CodecError, match=r"\$\.version"):
        decode_measurement(document)


def test_an_unknown_failure_written_with_its_text_is_split_on_read() -> None:
    assert split_failure("unknown_failure: EOF in chunk") == ("unknown_failure", "EOF in chunk")
    assert split_failure("connection_reset") == ("connection_reset", None)
    document = {**_tcp_document(), "failure": "unknown_failure: odd"}
    decoded = decode_observation(document)
    assert (decoded.failure, decoded.failure_detail) == ("unknown_failure", "odd")


def test_dns_per_type_keeps_the_a_and_aaaa_keys() -> None:
    assert decode_details(
        Layer.DNS,
        {
            "query": "q",
            "resolver": "system",
            "transport": "system",
            "per_type": {"A": "dns_no_answer", "AAAA": None},
        },
    ).per_type == DnsPerType("dns_no_answer", None)  # type: ignore[union-attr]


def test_the_data_dictionary_is_the_one_the_records_generate() -> None:
    """docs/details.md is written by `python3 -m probe.codec > docs/details.md`: when a record
    changes, regenerate it (this fails until then, so the documentation cannot drift)."""
    assert DOCS.read_text(encoding="utf-8") == data_dictionary()


def test_every_field_of_every_record_is_documented() -> None:
    rows = [line for line in data_dictionary().splitlines() if line.startswith("| `")]
    assert rows and all(not line.endswith("|  |") for line in rows), [
        line for line in rows if line.endswith("|  |")
    ]
