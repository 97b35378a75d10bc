"""Runs and measurements as the store tests (and the store benchmark) write them: a Telegram DC
connect by default, keyword arguments for the scenario. No database here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from probe.model import (
    Details,
    DnsQuery,
    HttpTransaction,
    Layer,
    Measurement,
    NetworkInfo,
    Operation,
    Run,
    TcpConnect,
    TlsHandshake,
    new_run_id,
)
from tests.builders import observation

T0 = datetime(2024, 11, 20, 9, 30, 0, tzinfo=UTC)  # stored to the second
TEHRAN = timezone(timedelta(hours=3, minutes=30))


def make_run(probe_id: str, started_at: datetime = T0, **network: object) -> Run:
    return Run(
        id=new_run_id(),
        probe_id=probe_id,
        started_at=started_at,
        software_version="0.1.0",
        config_digest="sha256:abc",
        network=NetworkInfo(**network),  # type: ignore[arg-type]
    )


def _default_details(layer: Layer, endpoint: str) -> Details:
    """An ordinary record of `layer` (the store keeps whatever the layer's record is)."""
    if layer is Layer.DNS:
        return DnsQuery("t.me", endpoint, "udp", addresses=("149.154.167.99",))
    if layer is Layer.TLS:
        return TlsHandshake("149.154.175.50", 443, "t.me")
    if layer is Layer.HTTP:
        return HttpTransaction(endpoint)
    return TcpConnect("149.154.175.50", 443)


def make_measurement(
    run_id: str,
    *,
    platform: str = "telegram",
    target: str = "dc1",
    layer: Layer = Layer.TCP,
    endpoint: str = "149.154.175.50:443",
    started_at: datetime = T0,
    failure: str | None = None,
    failed_operation: Operation | None = None,
    failure_detail: str | None = None,
    details: Details | None = None,
) -> Measurement:
    return Measurement(
        run_id=run_id,
        platform=platform,
        target=target,
        observation=observation(
            layer,
            endpoint,
            details if details is not None else _default_details(layer, endpoint),
            failure,
            failed_operation,
            failure_detail=failure_detail,
            started_at=started_at,
            duration_ms=12.345,
        ),
    )
