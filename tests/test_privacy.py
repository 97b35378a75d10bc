"""The probe's own address never reaches the database or an export, in any textual form."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType

import pytest

from analysis.export import write_measurements_csv
from probe.model import (
    DifferentialKind,
    HttpTransaction,
    Layer,
    Measurement,
    Observation,
    Operation,
    RawCapture,
    Redirect,
    Run,
)
from probe.privacy import SCRUBBED, Scrubber, ScrubbingSink
from probe.store import Store

OWN_V4 = "5.160.12.34"
OWN_V6 = "2a01:5ec0:1234:5678::abcd"
TELEGRAM_DC = "149.154.167.51"  # a target's address: measurement data, must survive

# Every form in which the own address turns up in what servers and errors say.
OWN_FORMS = (
    OWN_V4,
    "5-160-12-34",  # rDNS names: 5-160-12-34.dyn.example.ir
    "34.12.160.5",  # in-addr.arpa order
    "005.160.012.034",
    "::ffff:5.160.12.34",
    "::ffff:5a0:c22",  # IPv4-mapped, hex
    "2002:5a0:c22::1",  # 6to4
    OWN_V6,
    "2A01:5EC0:1234:5678:0:0:0:ABCD",
    "2a01:5ec0:1234:5678:9f1e:11ff:fe22:3344",  # another address in the same /64
)


def _measurement(run_id: str) -> Measurement:
    body = (
        "<html><head><title>Access denied</title></head><body>"
        f"Your address {OWN_V4} ({OWN_V6}) is not allowed. "
        f'<iframe src="http://10.10.34.34/?ip={OWN_V4}"></iframe>'
        f"Host: 5-160-12-34.dyn.example.ir / 34.12.160.5.in-addr.arpa</body></html>"
    )
    observation = Observation(
        layer=Layer.HTTP,
        endpoint=f"http://{TELEGRAM_DC}/",
        started_at=datetime(2024, 11, 20, 9, 30, tzinfo=UTC),
        duration_ms=12.5,
        failure="unknown_failure",
        failure_detail=f"bind {OWN_V4}:51234 -> {TELEGRAM_DC}:80: [{OWN_V6}]",
        failed_operation=Operation.HTTP_ROUND_TRIP,
        details=HttpTransaction(
            f"http://{TELEGRAM_DC}/",
            status=403,
            body_prefix=body,
            headers=(
                ("X-Forwarded-For", f"{OWN_V4}, {TELEGRAM_DC}"),
                ("Location", f"http://[{OWN_V6}]:8080/blocked?from=%5B{OWN_V6}%5D"),
            ),
            redirects=(
                Redirect(f"http://{OWN_V4}/", 302, f"http://{TELEGRAM_DC}/"),
                Redirect(f"http://{TELEGRAM_DC}/", 302, "/blocked"),
            ),
        ),
    )
    return Measurement(run_id, "telegram", "dc2", observation)


@pytest.mark.parametrize("form", OWN_FORMS)
def test_every_form_of_the_own_address_is_scrubbed(form: str) -> None:
    scrubber = Scrubber([OWN_V4, OWN_V6])
    assert scrubber.text(f"seen: {form}.") == f"seen: {SCRUBBED}."
    assert scrubber.text(f"http://[{form}]:443/") == f"http://[{SCRUBBED}]:443/"


@pytest.mark.parametrize(
    "other",
    [
        "15.160.12.34",
        "5.160.12.35",
        "5.160.12.3",
        "2a01:5ec0:1234:5679::abcd",  # the next /64: another subscriber
        TELEGRAM_DC,
        "12:30:45",
        "version 5.160.12",
    ],
)
def test_other_addresses_and_numbers_are_left_alone(other: str) -> None:
    scrubber = Scrubber([OWN_V4, OWN_V6])
    assert scrubber.text(f"seen: {other}") == f"seen: {other}"


def test_scrubbed_measurement_keeps_the_measurement_data() -> None:
    scrubbed = Scrubber([OWN_V4, OWN_V6]).scrub_measurement(_measurement("r1"))
    observation = scrubbed.observation
    assert observation.failure == "unknown_failure"
    assert observation.failure_detail == (
        f"bind {SCRUBBED}:51234 -> {TELEGRAM_DC}:80: [{SCRUBBED}]"
    )
    assert observation.endpoint == f"http://{TELEGRAM_DC}/"
    details = observation.details
    assert isinstance(details, HttpTransaction)
    assert details.status == 403
    headers = dict(details.headers)
    assert headers["X-Forwarded-For"] == f"{SCRUBBED}, {TELEGRAM_DC}"
    assert headers["Location"] == f"http://[{SCRUBBED}]:8080/blocked?from=%5B{SCRUBBED}%5D"
    assert details.redirects[0] == Redirect(f"http://{SCRUBBED}/", 302, f"http://{TELEGRAM_DC}/")
    assert "http://10.10.34.34/" in details.body_prefix  # the blockpage stays


def test_a_raw_capture_is_scrubbed_keys_included_and_keeps_its_record_type() -> None:
    capture = RawCapture(
        available=True,
        note=f"reset from {OWN_V4}",
        capture=MappingProxyType({OWN_V4: "an address as a key", "ttls": [64, 61]}),
    )
    scrubbed = Scrubber([OWN_V4]).value(capture)
    assert isinstance(scrubbed, RawCapture)
    assert scrubbed.differential_kind is DifferentialKind.RAW
    assert scrubbed.note == f"reset from {SCRUBBED}"
    assert dict(scrubbed.capture) == {SCRUBBED: "an address as a key", "ttls": [64, 61]}


def test_scrubber_repr_does_not_reveal_the_addresses() -> None:
    assert OWN_V4 not in repr(Scrubber([OWN_V4]))


def test_unparsable_own_address_is_a_configuration_error() -> None:
    with pytest.raises(ValueError):
        Scrubber(["5.160.12"])


def _forms_in(data: bytes) -> list[str]:
    text = data.decode("latin-1").lower()
    return [form for form in (OWN_V4, "5-160-12-34", OWN_V6, "2a01:5ec0:1234:5678") if form in text]


def _save(path: Path, scrubber: Scrubber | None) -> Store:
    store = Store.open(path)
    run = Run("r1", store.probe_id(), datetime(2024, 11, 20, 9, 30, tzinfo=UTC), "0.1.0", "x")
    store.start_run(run)
    sink = store if scrubber is None else ScrubbingSink(store, scrubber)
    sink.save_measurements([_measurement(run.id)])
    return store


def _database_bytes(path: Path) -> bytes:
    # The database and its write-ahead log: a value may sit in either.
    return b"".join(p.read_bytes() for p in path.parent.glob(f"{path.name}*"))


def test_own_address_from_blockpage_and_error_never_reaches_database_or_csv(
    tmp_path: Path,
) -> None:
    path = tmp_path / "measurements.db"
    store = _save(path, Scrubber([OWN_V4, OWN_V6]))
    try:
        csv_text = io.StringIO()
        assert write_measurements_csv(store, csv_text) == 1
        stored = list(store.measurements())
    finally:
        store.close()
    assert _forms_in(_database_bytes(path)) == []
    assert _forms_in(csv_text.getvalue().encode()) == []
    assert TELEGRAM_DC in csv_text.getvalue()
    details = stored[0].observation.details
    assert isinstance(details, HttpTransaction) and details.status == 403


def test_without_the_scrubber_the_address_would_be_stored(tmp_path: Path) -> None:
    # The control for the test above: the planted address does reach the files unscrubbed, so
    # finding none there means the scrubber removed it.
    path = tmp_path / "unscrubbed.db"
    _save(path, None).close()
    assert _forms_in(_database_bytes(path)) == [
        OWN_V4,
        "5-160-12-34",
        OWN_V6,
        "2a01:5ec0:1234:5678",
    ]
