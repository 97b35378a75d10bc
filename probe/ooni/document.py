"""One OONI measurement document (ooni/spec `data-formats/df-000-base.md`): the envelope's typed
fields, its df-xxx observations, and the identity an import derives from it.

The identity is `measurement_uid` when the document has one (the OONI API and archive assign
it), else a digest of what names the measurement inside its report (report_id, test_name,
input, measurement_start_time): the same document read twice, or re-serialised, gets the same
identity, which is what makes an import idempotent.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from probe.ooni.dataformat import (
    NetworkObservations,
    fail,
    mapping,
    number,
    parse_observations,
    text,
)

# The experiments this importer reads (ooni/spec nettests: ts-017 web_connectivity, ts-018
# whatsapp, ts-019 facebook_messenger, ts-020 telegram, ts-029 signal).
EXPERIMENTS = frozenset(
    {"web_connectivity", "telegram", "whatsapp", "signal", "facebook_messenger"}
)

_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ")
_OONI_TIME = re.compile(r"(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)", re.ASCII)


class UnknownExperiment(ValueError):
    """The document is of an experiment this importer does not read."""

    def __init__(self, test_name: str) -> None:
        super().__init__(f"experiment {test_name!r} is not imported")
        self.test_name = test_name


@dataclass(frozen=True, slots=True)
class OoniDocument:
    """The envelope of one measurement. ASNs are numbers ("AS30722" -> 30722); the start time
    is UTC-aware. `test_keys` is the raw object (experiment keys are read by verdict_keys and
    control); `observations` its df-xxx lists, typed."""

    test_name: str
    test_version: str
    measurement_start_time: datetime
    measurement_uid: str | None
    report_id: str | None
    input: str | None
    probe_asn: int | None
    probe_cc: str | None
    probe_network_name: str | None
    resolver_asn: int | None
    resolver_network_name: str | None
    software_name: str | None
    software_version: str | None
    test_runtime: float | None
    test_keys: Mapping[str, Any]
    observations: NetworkObservations

    @property
    def identity(self) -> str:
        """What names this measurement: its measurement_uid, else a digest (see module doc)."""
        if self.measurement_uid:
            return self.measurement_uid
        key = "\x1f".join(
            (
                self.report_id or "",
                self.test_name,
                self.input or "",
                self.measurement_start_time.isoformat(),
                str(self.probe_asn or ""),
            )
        )
        return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()

    @property
    def software(self) -> str:
        return f"{self.software_name or 'unknown'} {self.software_version or ''}".strip()


def parse_asn(value: str | None, where: str) -> int | None:
    """ "AS30722" -> 30722; "AS0" (OONI's "unknown") -> None."""
    if value is None:
        return None
    digits = value[2:] if value[:2].upper() == "AS" else value
    if not digits.isdigit() or len(digits) > 10:
        raise fail(where, f"not an ASN: {value[:40]!r}")
    asn = int(digits)
    return asn or None


def parse_time(value: str | None, where: str) -> datetime:
    if value is None:
        raise fail(where, "missing")
    fields = _OONI_TIME.fullmatch(value)
    if fields is not None:
        # The first of _TIME_FORMATS, what df-000 writes, read as strptime reads it (which
        # costs more than the rest of the envelope: it looks the locale up on every call).
        try:
            year, month, day, hour, minute, second = map(int, fields.groups())
            return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
        except ValueError:
            pass  # out of range: strptime refuses it too, and says so below
    for pattern in _TIME_FORMATS:
        try:
            return datetime.strptime(value, pattern).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise fail(where, f"not a time in OONI's format: {value[:40]!r}")


def experiment_of(data: Mapping[str, Any]) -> str:
    """The document's test_name (FormatError when absent or not a string)."""
    name = text(data, "test_name", "document", 128)
    if not name:
        raise fail("document.test_name", "missing")
    return name


def parse_document(data: Mapping[str, Any], *, accept_any: bool = False) -> OoniDocument:
    """The typed document; UnknownExperiment for an experiment not read here (unless
    `accept_any`), FormatError (one line naming the field) when a field is missing, of the
    wrong type or out of bounds."""
    test_name = experiment_of(data)
    if test_name not in EXPERIMENTS and not accept_any:
        raise UnknownExperiment(test_name)
    where = "document"
    test_keys = mapping(data, "test_keys", where)
    if test_keys is None:
        raise fail("document.test_keys", "missing")
    raw_input = data.get("input")
    if raw_input is not None and not isinstance(raw_input, str):
        raise fail("document.input", f"expected a string, got {type(raw_input).__name__}")
    return OoniDocument(
        test_name=test_name,
        test_version=text(data, "test_version", where, 64) or "",
        measurement_start_time=parse_time(
            text(data, "measurement_start_time", where, 64), "document.measurement_start_time"
        ),
        measurement_uid=text(data, "measurement_uid", where, 256),
        report_id=text(data, "report_id", where, 256),
        input=text(data, "input", where),
        probe_asn=parse_asn(text(data, "probe_asn", where, 32), "document.probe_asn"),
        probe_cc=text(data, "probe_cc", where, 8),
        probe_network_name=text(data, "probe_network_name", where, 512),
        resolver_asn=parse_asn(text(data, "resolver_asn", where, 32), "document.resolver_asn"),
        resolver_network_name=text(data, "resolver_network_name", where, 512),
        software_name=text(data, "software_name", where, 128),
        software_version=text(data, "software_version", where, 64),
        test_runtime=number(data, "test_runtime", where),
        test_keys=test_keys,
        observations=parse_observations(test_keys),
    )
