"""A small synthetic dataset stored the way `probe run` leaves it: the report, export and merge
tests read it through the CLI."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

from probe.model import Layer, NetworkInfo, Operation, Run
from probe.records import Confidence, Status, Verdict
from probe.store import Store
from tests.store_rows import make_measurement, make_run
from tests.synthetic import TELEGRAM_DCS, Censorship, Network, SyntheticSpec

START = datetime(2024, 3, 1, tzinfo=UTC)
TELEGRAM = (*TELEGRAM_DCS[:3], "web.telegram.org")
TWITTER = ("twitter.com", "x.com")
AS_NAMES = {44244: "Irancell", 3320: "DTAG", 58224: "TCI"}


def day(number: float) -> datetime:
    return START + timedelta(hours=round(number * 24))


def small_spec() -> SyntheticSpec:
    """Three days of hourly runs: Irancell (2 probes) blocks Telegram by TCP timeouts on day 2
    and Twitter by DNS from midday on day 2 on; DTAG (1 probe) blocks nothing."""
    return SyntheticSpec(
        start=START,
        days=3,
        networks=(Network(44244, "IR", hosts=2), Network(3320, "DE", hosts=1)),
        platforms=(("telegram", TELEGRAM), ("twitter", TWITTER)),
        censorship=(
            Censorship((44244,), "telegram", "tcp.timeout", day(1), day(2)),
            Censorship((44244,), "twitter", "dns.bogon", day(1.5), None),
        ),
    )


def store_verdicts(
    store: Store, verdicts: Iterable[Verdict], as_names: Mapping[int, str] = AS_NAMES
) -> int:
    """Save verdicts as `probe run` leaves them: a run record (with the probe's network), then
    the run's verdicts. The synthetic generator yields each run's verdicts together."""
    runs = 0
    for run_id, group in itertools.groupby(verdicts, key=lambda v: v.run_id):
        of_run = list(group)
        first = of_run[0]
        network = NetworkInfo(
            asn=first.asn,
            as_name=as_names.get(first.asn or 0),
            country=first.country,
            source="helper",
        )
        store.start_run(
            Run(
                id=run_id,
                probe_id=first.probe_id,
                started_at=first.measured_at,
                software_version="0.1.0",
                config_digest="synthetic",
                network=network,
            )
        )
        store.save_verdicts(run_id, of_run)
        runs += 1
    return runs


def store_dns_blocked_verdict(db: Path, unrelated_failure: str) -> None:
    """One run on TCI (AS58224): web.telegram.org blocked by dns.nxdomain, resting on the system
    resolver's NXDOMAIN (the verdict's one evidence id) beside a failed connect of the same
    target that is not part of its evidence (`unrelated_failure`)."""
    with Store.open(db) as store:
        run = make_run(store.probe_id(), asn=58224, as_name="TCI", country="IR")
        store.start_run(run)
        dns = make_measurement(
            run.id,
            target="web.telegram.org",
            layer=Layer.DNS,
            endpoint="system",
            failure="dns_nxdomain_error",
            failed_operation=Operation.RESOLVE,
        )
        unrelated = make_measurement(run.id, target="web.telegram.org", failure=unrelated_failure)
        store.save_measurements([dns, unrelated])
        verdict = web_telegram_verdict(
            run,
            Status.BLOCKED,
            technique="dns.nxdomain",
            confidence=Confidence.ANOMALY,
            rule_id="dns.nxdomain",
            evidence=(dns.id,),
            detail="the resolver denies the name; the control resolves it",
        )
        store.save_verdicts(run.id, [verdict])


def web_telegram_verdict(
    run: Run,
    status: Status,
    *,
    technique: str | None = None,
    confidence: Confidence | None = None,
    rule_id: str,
    evidence: tuple[str, ...] = (),
    detail: str,
) -> Verdict:
    """The verdict on web.telegram.org of `run`, measured from the run's network."""
    return Verdict(
        run_id=run.id,
        probe_id=run.probe_id,
        measured_at=run.started_at,
        asn=run.network.asn,
        country=run.network.country,
        platform="telegram",
        target="web.telegram.org",
        status=status,
        technique=technique,
        confidence=confidence,
        rule_id=rule_id,
        rules_version="1",
        evidence=evidence,
        detail=detail,
    )
