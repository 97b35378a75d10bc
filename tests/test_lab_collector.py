"""Two probes on two lab networks upload to one collector, and `probe analyse` decides what the
censored one could not: the collector runs in the lab's ctrl namespace (uncensored), one probe in
the client namespace behind the censor (Telegram's data centres blackholed), the other in ctrl.
Neither has a test helper, so the censored probe's failed connects have no control and stay
inconclusive; the other network reached the same data centres at the same time, so the pooled
analysis turns them into blocked verdicts citing that network's measurements, and `probe report`
over the collector's database shows both networks.

Each probe's network comes from an IP-to-ASN file and the public address its config names (the
lab's own addresses are shared-address space, which no ASN file holds). Needs root.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from analysis.crossnet import REACHABLE_ELSEWHERE
from probe.cli.app import app
from probe.records import Status
from probe.store import Store
from probe.store.crossnet import cross_verdicts
from probe.store.uploads import add_token
from tests.lab.e2e import ProbeWorkspace, run_probe
from tests.lab.lab import Lab
from tests.lab.scenarios import TELEGRAM_DCS, Scenario
from tests.lab.techniques import IpBlackhole
from tests.servers.mmdb import write_mmdb

pytest_plugins = ("tests.lab.fixtures",)
pytestmark = pytest.mark.lab

# Not the helper's 8080 nor test_lab_infrastructure's 8091: they share this session's lab.
COLLECTOR_PORT = 8093
CENSORED = ("5.160.0.7", 58224, "Iran Telecommunication Company PJS", "IR")
UNCENSORED = ("81.0.0.7", 3320, "Deutsche Telekom AG", "DE")
READY_TIMEOUT = 20.0


def _network(address: str, asn: int, name: str, country: str) -> dict[str, dict[str, object]]:
    return {
        f"{address}/32": {
            "autonomous_system_number": asn,
            "autonomous_system_organization": name,
            "country": {"iso_code": country},
        }
    }


def _wait_ready(lab: Lab, url: str) -> None:
    """Until the collector's health check answers from the client namespace (through the
    censor, as the censored probe will reach it)."""
    check = json.dumps([{"op": "http", "url": f"{url}/v1/health", "timeout": 1.0}])
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        done = lab.run_in_client([sys.executable, "-m", "tests.lab.netcheck"], input=check)
        if done.returncode == 0 and json.loads(done.stdout)[0].get("status") == 200:
            return
        time.sleep(0.2)
    raise RuntimeError(f"the collector at {url} did not answer in {READY_TIMEOUT} s")


ONE_DC = TELEGRAM_DCS[:1]


def test_pooled_uploads_turn_the_censored_probes_no_control_failures_into_blocked(
    lab: Lab, tmp_path: Path
) -> None:
    workspace = ProbeWorkspace.create(tmp_path / "workspace")
    collector_db = tmp_path / "collector.db"
    with Store.open(collector_db) as store:
        censored_token = add_token(store, "volunteer-ir")[1]
        free_token = add_token(store, "volunteer-de")[1]
    mmdb = write_mmdb(tmp_path / "asn.mmdb", {**_network(*CENSORED), **_network(*UNCENSORED)})
    url = f"http://{lab.control_address}:{COLLECTOR_PORT}"
    collector = lab.spawn(
        "ctrl",
        [
            sys.executable,
            "-m",
            "probe",
            "collector",
            "serve",
            "--listen",
            f"{lab.control_address}:{COLLECTOR_PORT}",
            "--db",
            str(collector_db),
        ],
        env=workspace.environment(),
    )
    try:
        _wait_ready(lab, url)
        _pool_and_analyse(lab, workspace, collector_db, mmdb, url, censored_token, free_token)
    finally:
        collector.terminate()  # by PID: the lab (one per session) would only end it at teardown
        collector.wait(timeout=10)


def _pool_and_analyse(
    lab: Lab,
    workspace: ProbeWorkspace,
    collector_db: Path,
    mmdb: Path,
    url: str,
    censored_token: str,
    free_token: str,
) -> None:

    def config(name: str, address: str, token: str) -> Path:
        return workspace.write_config(
            f"{name}.toml",
            extra=(
                f'[network]\nmmdb = ["{mmdb}"]\npublic_addresses = ["{address}"]\n'
                f'[upload]\nurl = "{url}"\ntoken = "{token}"\n'
            ),
        )

    # One data centre null-routed: a lone failure the censored probe cannot decide alone (its
    # group does not fail together: endpoint.lone_failure); the other network reaches it.
    lab.apply(Scenario("one_dc_blackhole", "one Telegram DC null-routed", (IpBlackhole(ONE_DC),)))
    censored = run_probe(
        lab,
        workspace,
        config("censored", CENSORED[0], censored_token),
        "censored",
        platforms=("telegram",),
    )
    free_db = workspace.database("uncensored")
    free = lab.run_in_control(
        [
            sys.executable,
            "-m",
            "probe",
            "run",
            "--config",
            str(config("uncensored", UNCENSORED[0], free_token)),
            "--db",
            str(free_db),
            "--platform",
            "telegram",
            "--i-understand-the-risks",
        ],
        env=workspace.environment(),
        timeout=180,
    )

    assert censored.exit_code == 0, censored.explain()
    assert free.returncode == 0, free.stderr[-2000:]
    assert "upload: uploaded 1 run(s)" in censored.stderr, censored.stderr[-2000:]
    assert "upload: uploaded 1 run(s)" in free.stderr, free.stderr[-2000:]
    assert censored.run is not None and censored.run.network.asn == CENSORED[1]
    undecided = {v.target: v for v in censored.verdicts if v.status is Status.INCONCLUSIVE}
    assert set(undecided) == set(ONE_DC)  # the blackholed data centre, with no control
    assert {v.rule_id for v in undecided.values()} == {"endpoint.lone_failure"}
    with Store.open(free_db) as store:
        free_ids = {m.id for m in store.measurements()}

    analysed = CliRunner().invoke(app, ["analyse", "--db", str(collector_db)])
    assert analysed.exit_code == 0, analysed.output
    assert "1 blocked and 0 down" in analysed.output
    with Store.open(collector_db) as store:
        derived = {item.verdict.target: item for item in cross_verdicts(store)}
        own = {v.target: v for v in store.verdicts(run_id=censored.run.id)}
    assert set(derived) == set(undecided)
    for target, item in derived.items():
        verdict = item.verdict
        assert verdict.status is Status.BLOCKED and verdict.technique == "tcp.timeout"
        assert verdict.rule_id == REACHABLE_ELSEWHERE.rule_id and verdict.asn == CENSORED[1]
        assert item.controls and set(item.controls) <= free_ids
        assert own[target].status is Status.INCONCLUSIVE  # the probe's own verdict is kept

    report = CliRunner().invoke(app, ["report", "--db", str(collector_db)], env={"COLUMNS": "250"})
    assert report.exit_code == 0, report.output
    assert f"AS{CENSORED[1]}" in report.stdout and f"AS{UNCENSORED[1]}" in report.stdout
    assert "2 host(s) on 2 network(s)" in report.stdout
