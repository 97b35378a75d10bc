"""The queries of the cross-network analysis (analysis.crossnet) and its derived verdicts' table.

`probe analyse` reads the verdicts one probe could not decide, the measurements behind them, and
measurements of the same target and layer taken on other networks within a time window; it writes
`cross_verdicts`, beside (never over) the probes' own verdicts.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, false, func, inspect, select

from probe.model import Connectivity, Layer, Measurement
from probe.records import CrossVerdict, Status, Verdict
from probe.store import schema
from probe.store.database import (
    Store,
    _measurement_from_row,
    _verdict_from_row,
    _verdict_row,
)


@dataclass(frozen=True, slots=True)
class PeerMeasurement:
    """A measurement from another network, with the network it was taken on."""

    measurement: Measurement
    asn: int


def undecided_verdicts(
    store: Store,
    rule_ids: Collection[str],
    since: datetime | None = None,
    until: datetime | None = None,
) -> Iterator[Verdict]:
    """Inconclusive verdicts decided by one of `rule_ids`, in [since, until), in time order."""
    table = schema.verdicts
    stmt = select(table).where(
        table.c.status == str(Status.INCONCLUSIVE), table.c.rule_id.in_(sorted(rule_ids))
    )
    if since is not None:
        stmt = stmt.where(table.c.measured_at >= since)
    if until is not None:
        stmt = stmt.where(table.c.measured_at < until)
    stmt = stmt.order_by(table.c.measured_at, table.c.run_id, table.c.platform, table.c.target)
    for row in store._stream(stmt):
        yield _verdict_from_row(row)


def target_measurements(store: Store, run_id: str, platform: str, target: str) -> list[Measurement]:
    table = schema.measurements
    stmt = (
        select(table)
        .where(table.c.run_id == run_id, table.c.platform == platform, table.c.target == target)
        .order_by(table.c.started_at, table.c.id)
    )
    with store._transaction() as conn:
        return [_measurement_from_row(row) for row in conn.execute(stmt)]


def peer_measurements(
    store: Store,
    *,
    platform: str,
    target: str,
    layer: Layer,
    since: datetime,
    until: datetime,
    other_than_asn: int,
    limit: int = 500,
) -> list[PeerMeasurement]:
    """Measurements of (platform, target, layer) started in [since, until) in runs on a known
    network other than `other_than_asn`, not through a VPN, with working connectivity."""
    m, runs = schema.measurements, schema.runs
    columns = [m.c[name] for name in (c.name for c in m.columns)]
    stmt = (
        select(*columns, runs.c.asn)
        .join(runs, runs.c.id == m.c.run_id)
        .where(
            m.c.platform == platform,
            m.c.target == target,
            m.c.layer == str(layer),
            m.c.started_at >= since,
            m.c.started_at < until,
            runs.c.asn.is_not(None),
            runs.c.asn != other_than_asn,
            func.coalesce(runs.c.vpn_suspected, false()) == false(),
            runs.c.connectivity != str(Connectivity.NONE),
        )
        .order_by(m.c.started_at, m.c.id)
        .limit(limit)
    )
    width = len(columns)
    with store._transaction() as conn:
        rows = conn.execute(stmt).all()
    # _measurement_from_row reads the measurement columns by position: the first `width`.
    return [
        PeerMeasurement(_measurement_from_row(cast(Row[Any], row[:width])), int(row[width]))
        for row in rows
    ]


def save_cross_verdicts(store: Store, derived: Sequence[CrossVerdict]) -> None:
    """Replace the derived verdicts of these (run, platform, target)s with these."""
    table = schema.cross_verdicts
    rows = []
    for item in derived:
        row = _verdict_row(item.verdict)
        row["controls"] = json.dumps(list(item.controls))
        rows.append(row)
    with store._transaction(write=True) as conn:
        for row in rows:
            conn.execute(
                table.delete().where(
                    table.c.run_id == row["run_id"],
                    table.c.platform == row["platform"],
                    table.c.target == row["target"],
                )
            )
        if rows:
            conn.execute(table.insert(), rows)


def cross_verdicts(
    store: Store, since: datetime | None = None, until: datetime | None = None
) -> list[CrossVerdict]:
    table = schema.cross_verdicts
    stmt = select(table)
    if since is not None:
        stmt = stmt.where(table.c.measured_at >= since)
    if until is not None:
        stmt = stmt.where(table.c.measured_at < until)
    stmt = stmt.order_by(table.c.measured_at, table.c.run_id, table.c.platform, table.c.target)
    with store._transaction() as conn:
        return [
            CrossVerdict(_verdict_from_row(row), tuple(json.loads(row._mapping["controls"])))
            for row in conn.execute(stmt)
        ]


def derived_verdicts(
    store: Store, since: datetime | None = None, until: datetime | None = None
) -> list[Verdict]:
    """The cross-network verdicts of runs measured in [since, until), for the report and the
    events to read instead of the probe's own; none in a database from before they existed
    (a reader does not migrate it)."""
    with store._transaction() as conn:
        if not inspect(conn).has_table(schema.cross_verdicts.name):
            return []
    return [item.verdict for item in cross_verdicts(store, since, until)]
