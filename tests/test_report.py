"""`probe report` on real SQLite stores filled with synthetic verdicts whose events are known:
what a researcher sees per platform (current state, latest verdict per target, events), the
filters, the [events] settings, and databases that hold measurements only."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from analysis.report.build import build_report
from analysis.summaries import summarise
from probe.config import DetectorParams
from probe.records import Status, Verdict
from probe.store import Store
from tests.cli import invoke
from tests.store_rows import make_measurement, make_run
from tests.stored_verdicts import (
    TELEGRAM,
    small_spec,
    store_dns_blocked_verdict,
    store_verdicts,
)
from tests.synthetic import (
    SyntheticDataset,
    generate,
    score,
)


@pytest.fixture(scope="module")
def dataset() -> SyntheticDataset:
    return generate(small_spec(), seed=11)


@pytest.fixture(scope="module")
def db(dataset: SyntheticDataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "probe.db"
    with Store.open(path) as store:
        store_verdicts(store, dataset.verdicts)
    return path


def section(out: str, title: str) -> str:
    """The terminal output from the line holding `title` (a table's title) to the next line
    that is not part of a table."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if title in line)
    end = start + 1
    while end < len(lines) and any(c in lines[end] for c in "│┃┏┡└"):
        end += 1
    return "\n".join(lines[start:end])


def test_report_shows_state_latest_verdicts_and_events_per_platform(db: Path) -> None:
    code, out, err = invoke("report", "--db", str(db))
    assert code == 0, err
    assert "from 3 host(s) on 2 network(s); 2 event(s)" in out

    state = section(out, "twitter: current state")
    irancell = next(line for line in state.splitlines() if "AS44244" in line)
    assert "Irancell (IR)" in irancell and "blocked" in irancell and "2/2" in irancell
    assert "dns.bogon" in irancell
    dtag = next(line for line in state.splitlines() if "AS3320" in line)
    assert " ok " in dtag and "0/2" in dtag

    events = section(out, "telegram: events")
    (row,) = [line for line in events.splitlines() if "tcp.timeout" in line]
    assert "blocking" in row and "AS44244" in row
    assert "2024-03-02 00:00" in row and "2024-03-03 00:00" in row
    assert "149.154.175.50" in events and "web.telegram.org" in events

    events = section(out, "twitter: events")
    (row,) = [line for line in events.splitlines() if "dns.bogon" in line]
    assert "2024-03-02 12:00" in row and "ongoing" in row
    assert row.split("│")[-3].strip() == "2"  # both Irancell probes agree

    latest = section(out, "telegram: latest verdict per target")
    assert latest.count("AS44244") == len(TELEGRAM) and latest.count("AS3320") == len(TELEGRAM)


def test_events_match_the_ground_truth_of_the_dataset(db: Path, dataset: SyntheticDataset) -> None:
    with Store.open(db) as store:
        report = build_report(store)
    result = score(dataset.truth, list(report.events))
    assert not result.missed and not result.spurious
    assert report.verdicts == len(dataset.verdicts)
    assert report.hosts == 3 and report.networks == (3320, 44244)


def test_network_filter_keeps_only_that_network(db: Path) -> None:
    code, out, err = invoke("report", "--db", str(db), "--network", "AS3320")
    assert code == 0, err
    assert "from 1 host(s) on 1 network(s); 0 event(s)" in out
    assert "AS44244" not in out and "Irancell" not in out
    assert "telegram: no events in the period." in out
    code, out, _ = invoke("report", "--db", str(db), "-n", "44244", "--platform", "twitter")
    assert "twitter: events" in out and "telegram" not in out


def test_since_and_until_bound_the_events_and_the_state(db: Path) -> None:
    code, out, err = invoke(
        "report", "--db", str(db), "--since", "2024-03-02T06:00", "--until", "2024-03-02T18:00Z"
    )
    assert code == 0, err
    assert "Verdicts 2024-03-02 06:00 to 2024-03-02 18:00 UTC" in out
    state = section(out, "twitter: current state")
    assert "2024-03-02 17:" in state  # the newest run before --until, not the last of the data


def test_detector_settings_come_from_the_events_table(db: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    # A huge expected detection delay: no change is ever significant enough to be an event.
    config.write_text("[events]\nedd = 1000\n")
    code, out, err = invoke("report", "--db", str(db), "--config", str(config))
    assert code == 0, err
    assert "0 event(s)" in out


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("[events]\nmu0 = 0.9\n", "need 0 <= mu0 < mu1 <= 1"),
        ("[events]\nthreshold = 3\n", "unknown setting(s) threshold"),
        ('[events]\nedd = "ten"\n', "edd must be a number"),
    ],
)
def test_bad_events_settings_are_one_line_and_exit_1(
    db: Path, tmp_path: Path, table: str, message: str
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(table)
    # Refused when the config is read: even a command that detects no events stops on it.
    for command in (
        ("report",),
        ("export", "--what", "events", "--csv", str(tmp_path / "e")),
        ("export", "--what", "measurements", "--csv", str(tmp_path / "m")),
    ):
        code, _, err = invoke(*command, "--db", str(db), "--config", str(config))
        assert code == 1
        assert message in err and str(config) in err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bad_network_is_refused(db: Path) -> None:
    code, _, err = invoke("report", "--db", str(db), "--network", "Irancell")
    assert code != 0 and "not an AS number" in err


def test_latest_verdict_lists_the_failures_it_rests_on(tmp_path: Path) -> None:
    store_dns_blocked_verdict(tmp_path / "p.db", unrelated_failure="connection_refused")
    code, out, err = invoke("report", "--db", str(tmp_path / "p.db"))
    assert code == 0, err
    (row,) = [line for line in out.splitlines() if "web.telegram.org" in line and "│" in line]
    assert "blocked" in row and "dns.nxdomain" in row and "dns_nxdomain_error" in row
    assert "connection_refused" not in row  # not part of the verdict's evidence
    assert "the resolver denies the name" in row


def test_database_with_measurements_only_shows_the_latest_status(tmp_path: Path) -> None:
    """Databases from before verdicts existed: the table `probe report` always showed."""
    with Store.open(tmp_path / "old.db") as store:
        run = make_run(store.probe_id())
        store.start_run(run)
        store.save_measurements(
            [
                make_measurement(run.id, failure="connection_refused"),
                make_measurement(run.id, target="dc2", endpoint="149.154.167.51:443"),
            ]
        )
    code, out, err = invoke("report", "--db", str(tmp_path / "old.db"))
    assert code == 0, err
    assert "No verdicts stored for this period" in out
    assert "Latest status per platform and endpoint" in out
    assert "connection_refused" in out and "149.154.167.51:443" in out


def test_empty_database_says_to_run_first(tmp_path: Path) -> None:
    Store.open(tmp_path / "new.db").close()
    code, out, _ = invoke("report", "--db", str(tmp_path / "new.db"))
    assert code == 0 and "No measurements yet" in out


def test_state_without_stored_summaries_is_summarised_from_the_verdicts(db: Path) -> None:
    """The fixture stores verdicts only (no platform summaries): the state still shows."""
    with Store.open(db) as store:
        report = build_report(store, platforms=["telegram"], params=DetectorParams())
    (telegram,) = report.platforms
    states = {state.asn: state for state in telegram.states}
    assert states[44244].summary.total == len(TELEGRAM)
    assert states[44244].hosts == 2 and states[3320].hosts == 1
    assert states[44244].as_name == "Irancell"


def test_new_commands_have_help() -> None:
    for command in ("report", "export", "merge"):
        code, out, _ = invoke(command, "--help")
        assert code == 0 and "Usage" in out
    _, out, _ = invoke("report", "--help")
    assert "--html" in out and "--network" in out and "--since" in out


def test_importing_the_report_package_loads_no_rich() -> None:
    # Terminal rendering lives in probe.cli.render: analysis stays usable without rich.
    code = (
        "import sys\nimport analysis.report.build, analysis.report.page\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'rich'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


def test_a_platform_mostly_inconclusive_reads_inconclusive_in_the_terminal_and_the_html(
    tmp_path: Path,
) -> None:
    # youtube ok 1 of 4, 3 inconclusive: printed green as "ok" before; nothing says it is ok.
    verdicts = [
        Verdict(
            run_id="a" * 32,
            probe_id="b" * 32,
            measured_at=datetime(2024, 3, 1, tzinfo=UTC),
            asn=44244,
            country="IR",
            platform="youtube",
            target=f"t{i}.youtube.com",
            status=Status.OK if i == 0 else Status.INCONCLUSIVE,
            technique=None,
            confidence=None,
            rule_id="control.missing",
            rules_version="test",
            evidence=(),
            detail="no control",
        )
        for i in range(4)
    ]
    path = tmp_path / "y.db"
    with Store.open(path) as store:
        store_verdicts(store, verdicts)
        store.save_platform_summaries("a" * 32, summarise(verdicts, []))
    html = tmp_path / "r.html"
    code, out, err = invoke("report", "--db", str(path), "--html", str(html))
    assert code == 0, err
    (state,) = [line for line in out.splitlines() if "AS44244 Irancell" in line]
    cells = [cell.strip() for cell in state.split("│")]
    assert cells[2:4] == ["inconclusive", "0/4"]
    assert "3 inconclusive" in state
    page = html.read_text()
    assert '<td class="s-inconclusive">inconclusive' in page
    assert '<td class="s-ok">' not in page
