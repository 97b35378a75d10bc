"""`probe run`, `report`, `export` and `targets` end to end on loopback: a real DNS server, real
TLS/HTTP servers, a real SQLite file, driven through the CLI as a user would."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from analysis.export import MEASUREMENT_COLUMNS
from probe.checks import CheckContext
from probe.model import Observation, TcpConnect
from probe.store import Store
from probe.store.uploads import add_token
from tests.cli import invoke
from tests.servers import hostile
from tests.servers.background import background
from tests.servers.collector import CollectorProcess
from tests.servers.dns_server import FakeNameserver
from tests.servers.tls_certs import Pki
from tests.sites import Site, write_site_config


def test_run_measures_every_layer_and_stores_it(site: Site, tmp_path: Path) -> None:
    # A database of its own: the count below must not see another test's runs.
    db_path = tmp_path / "m.db"
    code, out, err = invoke(
        "run", "--config", str(site.config), "--db", str(db_path), "--json", consent=True
    )
    assert code == 0, err
    document = json.loads(out)
    assert document["connectivity"] == "ok"
    by_target = {t["target"]: t for t in document["targets"]}
    ok = by_target[f"https://ok.lo.test:{site.https_port}/"]
    assert (ok["reached"], ok["failure"]) == ("http", None)
    refused = by_target["refused.lo.test"]
    assert (refused["failure"], refused["failed_layer"]) == ("connection_refused", "tcp")
    assert by_target["nx.lo.test"]["failure"] == "dns_nxdomain_error"
    assert by_target["plain-post"]["reached"] == "tcp"  # plain HTTP to a TLS port: no HTTP answer

    with sqlite3.connect(db_path) as db:
        layers = {row[0] for row in db.execute("select layer from measurements")}
        (stored,) = db.execute("select count(*) from measurements").fetchone()
        run = db.execute("select connectivity, interrupted, finished_at from runs").fetchone()
    assert layers == {"dns", "tcp", "tls", "http"}
    assert stored == document["measurements"]
    assert run[0] == "ok" and not run[1] and run[2]


def test_run_json_says_a_mostly_inconclusive_platform_is_inconclusive(
    site: Site, tmp_path: Path
) -> None:
    # The site: one target ok, three that fail with no helper to tell blocked from down.
    code, out, err = invoke(
        "run", "--config", str(site.config), "--db", str(tmp_path / "m.db"), "--json", consent=True
    )
    assert code == 0, err
    document = json.loads(out)
    statuses = sorted(v["status"] for v in document["verdicts"])
    assert statuses == ["inconclusive", "inconclusive", "inconclusive", "ok"]
    (platform,) = document["platforms"]
    assert (platform["status"], platform["blocked"], platform["total"]) == ("inconclusive", 0, 4)
    assert platform["detail"] == "0 of 4 targets blocked; 3 inconclusive"


def test_run_json_verdicts_are_the_export_records_of_the_same_run(
    site: Site, tmp_path: Path
) -> None:
    """`probe run --json` and `probe export --what verdicts` serialise a verdict alike."""
    db = tmp_path / "v.db"
    code, out, err = invoke(
        "run", "--config", str(site.config), "--db", str(db), "--json", consent=True
    )
    assert code == 0, err
    document = json.loads(out)
    exported = tmp_path / "v.jsonl"
    code, _, err = invoke(
        "export", "--what", "verdicts", "--jsonl", str(exported), "--db", str(db),
        "--config", str(site.config),
    )  # fmt: skip
    assert code == 0, err
    records = [json.loads(line) for line in exported.read_text().splitlines()]
    assert document["verdicts"] and {v["run_id"] for v in records} == {document["run_id"]}
    key = "platform", "target"
    assert sorted(document["verdicts"], key=lambda v: [v[k] for k in key]) == sorted(
        records, key=lambda v: [v[k] for k in key]
    )


def test_a_bug_on_one_target_exits_6_naming_it_and_the_others_are_stored(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from probe.checks import tcp

    real_connect = tcp.connect

    async def connect(address: str, port: int, context: CheckContext) -> Observation[TcpConnect]:
        if port == site.refused_port:
            raise RuntimeError("a bug in the check\n  with a second line")
        return await real_connect(address, port, context)

    monkeypatch.setattr(tcp, "connect", connect)
    db_path = tmp_path / "m.db"
    code, out, err = invoke(
        "run", "--config", str(site.config), "--db", str(db_path), "--json", consent=True
    )
    assert code == 6, err
    assert "Traceback" not in err
    assert "failed on 1 target(s)" in err and "refused.lo.test: RuntimeError: a bug" in err
    document = json.loads(out)
    assert document["failed_targets"] == [
        "refused.lo.test: RuntimeError: a bug in the check with a second line"
    ]
    by_target = {t["target"]: t for t in document["targets"]}
    assert by_target[f"https://ok.lo.test:{site.https_port}/"]["reached"] == "http"


def test_report_shows_the_latest_status_per_endpoint(site: Site, tmp_path: Path) -> None:
    db = str(tmp_path / "m.db")
    assert invoke("run", "--config", str(site.config), "--db", db, consent=True)[0] == 0
    code, out, _ = invoke("report", "--config", str(site.config), "--db", db)
    assert code == 0
    assert "connection_refused" in out and "dns_nxdomain_error" in out
    assert "refused.lo.test" in out


def test_export_csv_has_the_documented_columns(site: Site, tmp_path: Path) -> None:
    db = str(tmp_path / "m.db")
    assert invoke("run", "--config", str(site.config), "--db", db, consent=True)[0] == 0
    out_file = tmp_path / "m.csv"
    code, _, err = invoke(
        "export", "--csv", str(out_file), "--platform", "lo", "--db", db,
        "--config", str(site.config),
    )  # fmt: skip
    assert code == 0, err
    with out_file.open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert tuple(reader.fieldnames or ()) == MEASUREMENT_COLUMNS
    assert rows and {row["platform"] for row in rows} == {"lo"}
    assert any(row["http_title"] == "Loopback Platform" for row in rows)
    assert f"exported {len(rows)} measurements" in err


def test_targets_lists_config_catalog_and_controls(site: Site) -> None:
    code, out, _ = invoke("targets", "--config", str(site.config))
    assert code == 0
    assert "refused.lo.test" in out and "control" in out


def test_unreachable_controls_mean_no_connectivity_and_nothing_blocked(
    site: Site, tmp_path: Path
) -> None:
    pki = Pki()
    ca_pem = tmp_path / "ca.pem"
    pki.ca.cert_pem.write_to_path(str(ca_pem))
    with background(hostile.refused_port) as (refused,):
        control = f"https://control.lo.test:{refused.port}/"
        config = write_site_config(tmp_path, site.ns, ca_pem, 1, refused.port, control)
        code, out, _ = invoke(
            "run", "--config", str(config), "--db", str(tmp_path / "d.db"), consent=True
        )
    assert code == 3
    assert "No network connectivity" in out
    assert "Nothing in this run is reported as blocked" in out
    with sqlite3.connect(tmp_path / "d.db") as db:
        assert db.execute("select connectivity from runs").fetchone() == ("none",)


def test_run_summary_says_when_the_networks_own_resolver_is_broken(
    site: Site, tmp_path: Path
) -> None:
    # The network's resolver (the first) answers NXDOMAIN for every name, the control site's
    # too; a second resolver answers truly. Not censorship: the summary says so, once.
    with FakeNameserver({}) as broken:
        config = write_site_config(
            tmp_path,
            site.ns,
            site.tmp / "ca.pem",
            site.https_port,
            site.refused_port,
            f"https://control.lo.test:{site.https_port}/",
        )
        text = config.read_text().replace(
            f'resolvers = ["{site.ns.udp_spec}"]',
            f'resolvers = ["{broken.udp_spec}", "{site.ns.udp_spec}"]',
        )
        config.write_text(text)
        code, out, err = invoke(
            "run", "--config", str(config), "--db", str(tmp_path / "r.db"), consent=True
        )
    assert code == 0, err
    lines = [line for line in out.splitlines() if "resolver is broken" in line]
    assert lines == [
        "The network's resolver is broken: it failed for the run's control sites too, so DNS "
        "is inconclusive for 3 target(s) on this network (a broken resolver, not censorship; "
        "the other resolvers' answers were still measured)."
    ], out
    with Store.open(tmp_path / "r.db") as store:
        verdicts = list(store.verdicts())
    assert verdicts and not [v for v in verdicts if v.status.value == "blocked"]


def test_a_working_network_resolver_gets_no_broken_resolver_line(
    site: Site, tmp_path: Path
) -> None:
    code, out, err = invoke(
        "run", "--config", str(site.config), "--db", str(tmp_path / "w.db"), consent=True
    )
    assert code == 0, err
    assert "resolver is broken" not in out


def test_bad_input_is_one_line_and_exit_1_a_usage_error_exit_2(tmp_path: Path) -> None:
    broken = tmp_path / "config.toml"
    broken.write_text("[timeouts\n")
    code, _, err = invoke("run", "--config", str(broken), consent=True)
    assert code == 1 and "not valid TOML" in err and "Traceback" not in err
    garbage_db = tmp_path / "garbage.db"
    garbage_db.write_bytes(b"this is not sqlite" * 100)
    code, _, err = invoke("report", "--db", str(garbage_db))
    assert code == 1 and "is not a probe database" in err
    code, _, err = invoke(
        "run", "--platform", "myspace", "--db", str(tmp_path / "x.db"), consent=True
    )
    assert code == 1 and "unknown platform(s): myspace" in err
    code, _, err = invoke("export", "--db", str(tmp_path / "x.db"))
    assert code == 2 and "--csv" in err  # a usage error


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize(
    "started_with",
    [
        pytest.param(None, id="sigint-default"),
        # What a script's `probe run &` gets from a non-interactive shell: SIGINT ignored.
        pytest.param(_ignore_sigint, id="sigint-ignored-by-the-parent"),
    ],
)
def test_ctrl_c_keeps_every_finished_measurement(
    site: Site, tmp_path: Path, started_with: Callable[[], None] | None
) -> None:
    """A run interrupted while one target hangs keeps what finished and marks the run, however
    the parent left SIGINT (the hung target's timeouts are 60 s: a missed Ctrl-C cannot pass)."""
    with background(hostile.silent) as (silent,):
        config_text = site.config.read_text()
        catalog = tmp_path / "catalog"
        catalog.mkdir()
        for name in ("lo.toml", "controls.toml"):
            (catalog / name).write_text((site.config.parent / "catalog" / name).read_text())
        with (catalog / "lo.toml").open("a") as handle:
            handle.write(f'[[targets]]\nurl = "https://ok.lo.test:{silent.port}/slow"\n')
        config = tmp_path / "config.toml"
        config.write_text(
            config_text.replace("tls = 1.0", "tls = 60.0")
            .replace("http = 2.0", "http = 60.0")
            .replace(str(site.config.parent / "catalog"), str(catalog))
        )
        db = tmp_path / "i.db"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "probe",
                "run",
                "--config",
                str(config),
                "--db",
                str(db),
                "--i-understand-the-risks",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            preexec_fn=started_with,
        )
        try:
            deadline = time.monotonic() + 20
            stored = 0
            while time.monotonic() < deadline and stored < 8:
                time.sleep(0.2)
                if db.exists():
                    try:
                        with sqlite3.connect(db) as conn:
                            stored = conn.execute("select count(*) from measurements").fetchone()[0]
                    except sqlite3.OperationalError:
                        stored = 0
            assert stored >= 8, "the run did not store its finished measurements while running"
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode == 130, err.decode()
    assert b"finished measurements were kept" in err
    assert b"Traceback" not in err
    with sqlite3.connect(db) as conn:
        (interrupted, finished) = conn.execute(
            "select interrupted, finished_at from runs"
        ).fetchone()
        kept = conn.execute("select count(*) from measurements").fetchone()[0]
    assert interrupted == 1 and finished is not None
    assert kept >= stored


def test_no_measurement_without_informed_consent(site: Site, tmp_path: Path) -> None:
    db = tmp_path / "consent.db"
    code, _, err = invoke("run", "--config", str(site.config), "--db", str(db))
    assert code == 4
    assert "no measurement" in err.lower()
    assert not db.exists()
    # Once given (here with the flag, as automation does), it is remembered.
    assert invoke("run", "--config", str(site.config), "--db", str(db), consent=True)[0] == 0
    assert invoke("run", "--config", str(site.config), "--db", str(db)).code == 0


def test_a_second_run_while_one_holds_the_lock_exits_at_once(site: Site, tmp_path: Path) -> None:
    from probe.lock import RunLock

    with RunLock():
        code, _, err = invoke(
            "run", "--config", str(site.config), "--db", str(tmp_path / "l.db"), consent=True
        )
    assert code == 75
    assert "another probe run" in err and "is in progress" in err
    assert not (tmp_path / "l.db").exists()


def test_a_test_list_on_the_command_line_adds_its_urls_and_reports_bad_rows(
    site: Site, tmp_path: Path
) -> None:
    test_list = tmp_path / "list.csv"
    test_list.write_text(
        "url,category_code,category_description,date_added,source,notes\n"
        "https://news.lo.test/,NEWS,News Media,2014-04-15,citizenlab,\n"
        "not a url,NEWS,News Media,2014-04-15,citizenlab,\n"
    )
    code, out, err = invoke(
        "targets", "--config", str(site.config), "--test-list", str(test_list),
        "--platform", "testlist",
    )  # fmt: skip
    assert code == 0, err
    assert "https://news.lo.test/" in out and "testlist" in out
    assert f"{test_list}:3:" in err and "skipped" in err


def _with_upload(site: Site, tmp: Path, url: str, token: str) -> Path:
    config = tmp / "upload.toml"
    config.write_text(site.config.read_text() + f'\n[upload]\nurl = "{url}"\ntoken = "{token}"\n')
    return config


def test_runs_upload_after_measuring_and_queue_while_the_collector_is_down(
    site: Site, tmp_path: Path
) -> None:
    collector_db = tmp_path / "collector.db"
    with Store.open(collector_db) as store:
        _, token = add_token(store, "volunteer")
    db = str(tmp_path / "probe.db")
    down = _with_upload(site, tmp_path, f"http://127.0.0.1:{site.refused_port}", token)

    # The collector is unreachable: the run still succeeds, and stays queued.
    code, _out, err = invoke("run", "--config", str(down), "--db", db, consent=True)
    assert code == 0, err
    assert "upload: uploaded 0 run(s)" in err and "cannot reach the collector" in err
    code, out, _ = invoke("upload", "--status", "--config", str(down), "--db", db)
    assert code == 0 and "1 run(s) and" in out

    with CollectorProcess(str(collector_db)) as collector:
        up = _with_upload(site, tmp_path, collector.url, token)
        code, _out, err = invoke("run", "--config", str(up), "--db", db, consent=True)
        assert code == 0 and "upload: uploaded 2 run(s)" in err, err
    code, out, _ = invoke("upload", "--status", "--config", str(up), "--db", db)
    assert "everything is uploaded" in out
    with Store.open(db) as probe, Store.open(collector_db) as pooled:
        assert {r.id for r in pooled.runs()} == {r.id for r in probe.runs()}
        assert len(list(pooled.measurements())) == len(list(probe.measurements()))
