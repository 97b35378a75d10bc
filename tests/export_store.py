"""A store with one of everything an export carries, for the export tests: two runs on two
networks on two days (one VPN-suspected), a blocked Telegram DC with its A/B half, protocol probe
and packet capture beside it, a test-list URL with its category, verdicts written by rules
version 2025.10 (which a float would read as 2025.1), and hostile text in a page title."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

from analysis.export import MEASUREMENT_COLUMNS, compact_json, inert_cell
from probe.codec import measurement_row
from probe.model import (
    Connectivity,
    Details,
    DifferentialKind,
    HttpTransaction,
    Layer,
    Measurement,
    MeasurementRow,
    NetworkInfo,
    Observation,
    Operation,
    ProtocolProbe,
    RawCapture,
    Run,
    TcpConnect,
    TlsHandshake,
)
from probe.records import Confidence, Status, Verdict
from probe.store import Store
from tests.builders import observation

DAY1 = datetime(2025, 3, 1, 21, 30, 0, 250000, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)
RULES_VERSION = "2025.10"
NEWS_URL = "https://news.example/"
TEST_LIST = (
    "url,category_code,category_description,date_added,source,notes\n"
    f"{NEWS_URL},NEWS,News Media,2024-01-01,citizenlab,\n"
)
HOSTILE_TITLE = '=HYPERLINK("http://x") , "quoted"\n next line'


@dataclass(frozen=True, slots=True)
class ExportData:
    """What was stored, to compare the exports with."""

    db: Path
    test_list: Path
    iran: Run
    germany: Run
    primary: tuple[Measurement, ...]  # role primary
    secondary: tuple[Measurement, ...]  # the A/B half, protocol probe and capture
    verdicts: tuple[Verdict, ...]


def _observation(
    layer: Layer,
    endpoint: str,
    when: datetime,
    details: Details,
    failure: str | None = None,
    operation: Operation | None = None,
) -> Observation[Details]:
    return observation(
        layer, endpoint, details, failure, operation, started_at=when, duration_ms=20.5
    )


def build_export_store(folder: Path) -> ExportData:
    """Write the store and the test list into `folder`."""
    test_list = folder / "news.csv"
    test_list.write_text(TEST_LIST, encoding="utf-8")
    db = folder / "probe.db"
    with Store.open(db) as store:
        probe_id = store.probe_id()
        iran = Run(
            id="a" * 32,
            probe_id=probe_id,
            started_at=DAY1.replace(microsecond=0),
            software_version="0.1.0",
            config_digest="sha256:1234",
            network=NetworkInfo(
                asn=58224, as_name="TCI", country="IR", vpn_suspected=False, source="helper"
            ),
            finished_at=DAY1 + timedelta(minutes=2),
            connectivity=Connectivity.OK,
        )
        germany = Run(
            id="b" * 32,
            probe_id=probe_id,
            started_at=DAY2.replace(microsecond=0),
            software_version="0.1.0",
            config_digest="sha256:5678",
            network=NetworkInfo(asn=3320, as_name="DTAG", country="DE", vpn_suspected=True),
            finished_at=None,
            connectivity=Connectivity.OK,
            interrupted=True,
        )
        address = "149.154.175.50"
        dc = f"{address}:443"
        own = Measurement(
            iran.id,
            "telegram",
            "dc1",
            _observation(
                Layer.TCP,
                dc,
                DAY1,
                TcpConnect(address, 443),
                "generic_timeout_error",
                Operation.CONNECT,
            ),
            id="m-own",
        )
        ab_half = Measurement(
            iran.id,
            "telegram",
            "dc1",
            _observation(
                Layer.TLS,
                dc,
                DAY1 + timedelta(seconds=1),
                TlsHandshake(address, 443, "example.com", differential_kind=DifferentialKind.SNI),
            ),
            id="m-ab",
        )
        probe = Measurement(
            iran.id,
            "telegram",
            "dc1",
            _observation(
                Layer.TCP,
                dc,
                DAY1 + timedelta(seconds=2),
                ProtocolProbe(address, 443, payload_bytes=64),
                "eof_error",
                Operation.READ,
            ),
            id="m-probe",
        )
        capture = Measurement(
            iran.id,
            "telegram",
            "dc1",
            _observation(
                Layer.TCP,
                dc,
                DAY1 + timedelta(seconds=3),
                RawCapture(available=True, capture=MappingProxyType({"reset_ttls": [64]})),
            ),
            id="m-raw",
        )
        news = Measurement(
            germany.id,
            "testlist",
            NEWS_URL,
            _observation(
                Layer.HTTP,
                NEWS_URL,
                DAY2,
                HttpTransaction(NEWS_URL, status=200, body_length=512, title=HOSTILE_TITLE),
            ),
            id="m-news",
        )
        verdicts = (
            Verdict(
                iran.id, probe_id, iran.started_at, 58224, "IR", "telegram", "dc1",
                Status.BLOCKED, "tcp.timeout", Confidence.ANOMALY, "tcp.timeout",
                RULES_VERSION, ("m-own",), "connect timed out here, not at the control",
            ),
            Verdict(
                germany.id, probe_id, germany.started_at, 3320, "DE", "testlist", NEWS_URL,
                Status.OK, None, None, "ok", RULES_VERSION, ("m-news",), HOSTILE_TITLE,
            ),
        )  # fmt: skip
        for run in (iran, germany):
            store.start_run(run)
        store.save_measurements([own, ab_half, probe, capture, news])
        store.save_verdicts(iran.id, [verdicts[0]])
        store.save_verdicts(germany.id, [verdicts[1]])
    return ExportData(
        db, test_list, iran, germany, (own, news), (ab_half, probe, capture), verdicts
    )


def reference_csv(rows: list[list[Any]]) -> str:
    """The measurements CSV as the straightforward writer makes it, from rows of cell values
    whose last item is the details: the csv module on every cell through inert_cell, then the
    details JSON as one quoted cell (what the export's own writer must match byte for byte)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="")
    writer.writerow(MEASUREMENT_COLUMNS)
    out.write("\n")
    for values in rows:
        details = values.pop()
        writer.writerow([inert_cell(v) for v in values])
        out.write(',"' + compact_json(details).replace('"', '""') + '"\n')
    return out.getvalue()


class ThroughRecords:
    """The store read the way the export read it before: every row decoded into a Measurement,
    then made a row (probe.codec.measurement_row)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def measurement_rows(
        self,
        run_id: str | None = None,
        platform: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[MeasurementRow]:
        for measurement in self.store.measurements(run_id, platform, since, until):
            yield measurement_row(measurement)

    def get_run(self, run_id: str) -> Run | None:
        return self.store.get_run(run_id)
