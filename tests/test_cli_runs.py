"""Finding one's way around the data: `probe runs` lists past runs, `probe show RUN [TARGET]`
shows one run's verdicts with the measurements behind them (run ids by unique prefix), and a
filter that matches nothing says so instead of showing other networks' data."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from probe.cli.render import evidence_line
from probe.model import Connectivity, DifferentialKind, Layer, Measurement, NetworkInfo, Run
from probe.records import Confidence, Status, Verdict
from probe.store import Store
from tests.builders import (
    PAGE,
    dns_query,
    http_transaction,
    measurement,
    observation,
    tcp,
    tls,
    tls_handshake,
)
from tests.cli import invoke
from tests.sites import Site

T0 = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
X_TITLE = "X. It's what's happening"
TCI = NetworkInfo(
    asn=58224, as_name="Iran Telecommunication Company PJS", country="IR", vpn_suspected=False
)
VPN = NetworkInfo(asn=9009, as_name="M247 Europe SRL", country="RO", vpn_suspected=True)


def _run(store: Store, run_id: str, network: NetworkInfo, started: datetime) -> Run:
    run = Run(
        id=run_id,
        probe_id="p" * 32,
        started_at=started,
        software_version="0.1.0",
        config_digest="d",
        network=network,
        finished_at=started + timedelta(minutes=1),
        connectivity=Connectivity.OK,
    )
    store.start_run(run)
    return run


def _verdict(run: Run, target: str, status: Status, evidence: list[Measurement]) -> Verdict:
    blocked = status is Status.BLOCKED
    return Verdict(
        run_id=run.id,
        probe_id=run.probe_id,
        measured_at=run.started_at,
        asn=run.network.asn,
        country=run.network.country,
        platform="twitter",
        target=target,
        status=status,
        technique="tls.sni_reset" if blocked else None,
        confidence=Confidence.CONFIRMED if blocked else None,
        rule_id="tls.sni_reset" if blocked else "ok",
        rules_version="test",
        evidence=tuple(m.id for m in evidence),
        detail="TLS with SNI twitter.com failed (connection_reset)" if blocked else "reached",
    )


@pytest.fixture
def history(tmp_path: Path) -> Path:
    """Three runs: two on TCI (ids sharing the prefix aaaa), one through a VPN."""
    db = tmp_path / "history.db"
    with Store.open(db) as store:
        first = _run(store, "aaaa1" + "0" * 27, TCI, T0)
        second = _run(store, "aaaa2" + "0" * 27, TCI, T0 + timedelta(hours=1))
        third = _run(store, "bbbb3" + "0" * 27, VPN, T0 + timedelta(hours=2))
        for run in (first, second, third):
            dns = measurement(
                "twitter",
                "https://twitter.com/",
                observation(Layer.DNS, "system", dns_query("twitter.com", ["104.244.42.1"])),
                run_id=run.id,
            )
            tls = measurement(
                "twitter",
                "https://twitter.com/",
                observation(
                    Layer.TLS,
                    "104.244.42.1:443",
                    tls_handshake("104.244.42.1", 443, "twitter.com", "connection_reset"),
                    "connection_reset",
                    "tls_handshake",
                ),
                run_id=run.id,
            )
            ok = measurement(
                "twitter",
                "https://x.com/",
                observation(
                    Layer.HTTP,
                    "https://x.com/",
                    http_transaction(
                        "https://x.com/", "104.244.42.2", title="X. It's what's happening"
                    ),
                ),
                run_id=run.id,
            )
            store.save_measurements([dns, tls, ok])
            store.save_verdicts(
                run.id,
                [
                    _verdict(run, "https://twitter.com/", Status.BLOCKED, [dns, tls]),
                    _verdict(run, "https://x.com/", Status.OK, [ok]),
                ],
            )
    return db


def _rows(out: str) -> list[list[str]]:
    """The cells of `probe runs`' rows: columns are two or more spaces apart."""
    return [
        re.split(r"\s{2,}", line.strip())
        for line in out.splitlines()
        if re.match(r"^[0-9a-f]{8} ", line.strip())
    ]


def test_runs_lists_every_run_newest_first_with_network_counts_and_vpn_flag(
    history: Path,
) -> None:
    result = invoke("runs", "--db", str(history))
    assert result.code == 0, result.stderr
    rows = _rows(result.stdout)
    assert [row[0] for row in rows] == ["bbbb3000", "aaaa2000", "aaaa1000"]
    assert rows[0] == [
        "bbbb3000", "2026-11-20 11:30", "AS9009 M247 Europe SRL (RO)", "ok", "1", "1", "0", "0",
        "yes",
    ]  # fmt: skip
    assert rows[2][-1] == "no"
    assert rows[2][2] == "AS58224 Iran Telecommunication Company PJS (IR)"

    only_tci = invoke("runs", "--db", str(history), "--network", "AS58224", "--limit", "1")
    assert [row[0] for row in _rows(only_tci.stdout)] == ["aaaa2000"]


def test_show_takes_a_unique_prefix_and_lists_each_verdict_with_its_evidence(
    history: Path,
) -> None:
    result = invoke("show", "bbbb", "--db", str(history))
    assert result.code == 0, result.stderr
    out = result.stdout
    assert out.startswith("run bbbb3" + "0" * 27 + "\n")
    assert "Measured 2026-11-20 11:30 UTC from AS9009 M247 Europe SRL (RO); VPN or proxy" in out
    lines = out.splitlines()
    blocked = lines.index(
        "blocked twitter https://twitter.com/ tls.sni_reset (confirmed): "
        "TLS with SNI twitter.com failed (connection_reset)"
    )
    assert lines[blocked + 1 : blocked + 3] == [
        "    dns system ok: 104.244.42.1; rcode NOERROR",
        "    tls 104.244.42.1:443 connection_reset (tls_handshake): SNI twitter.com",
    ]
    assert "ok twitter https://x.com/" in lines  # an ok target: one line, its sentence with -v
    evidence = f'    http https://x.com/ ok: status 200; title "{X_TITLE}"; {len(PAGE)} bytes'
    assert evidence not in lines  # an ok target's evidence: with -v only
    verbose = invoke("show", "bbbb", "-v", "--db", str(history)).stdout
    assert evidence in verbose.splitlines()
    assert "ok twitter https://x.com/: reached" in verbose.splitlines()


def test_show_one_target_shows_only_its_verdict_and_evidence(history: Path) -> None:
    result = invoke("show", "aaaa1", "x.com", "--db", str(history))
    assert result.code == 0, result.stderr
    assert "https://x.com/" in result.stdout and "https://twitter.com/" not in result.stdout
    assert any(
        ln.startswith("    http https://x.com/ ok: status 200") for ln in result.stdout.splitlines()
    )
    missing = invoke("show", "aaaa1", "facebook.com", "--db", str(history))
    assert missing.code == 1 and "no target of run aaaa1000 matches facebook.com" in missing.stderr


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("aaaa", "is the start of several run ids"),
        ("cccc", "no run 'cccc'"),
        ("not-hex", "is not a run id"),
    ],
)
def test_a_run_id_that_names_no_single_run_is_a_one_line_error(
    history: Path, given: str, message: str
) -> None:
    result = invoke("show", given, "--db", str(history))
    assert result.code == 1
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_runs_and_show_on_the_probes_own_run(site: Site, tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    ran = invoke(
        "run", "--json", "--config", str(site.config), "--db", str(db), "--i-understand-the-risks"
    )
    assert ran.code == 0, ran.stderr
    document = json.loads(ran.stdout)
    listed = invoke("runs", "--db", str(db)).stdout
    assert document["run_id"][:8] in listed
    shown = invoke("show", document["run_id"][:8], "refused.lo.test", "--db", str(db))
    assert shown.code == 0, shown.stderr
    assert "connection_refused (connect)" in shown.stdout


@pytest.mark.parametrize(
    "filters",
    [("--network", "AS12345"), ("--since", "2030-01-01"), ("--until", "2020-01-01")],
    ids=lambda f: " ".join(f),
)
def test_a_filter_that_matches_nothing_says_so_and_shows_nothing(
    history: Path, tmp_path: Path, filters: tuple[str, str]
) -> None:
    report = invoke("report", "--db", str(history), *filters)
    assert report.code == 0, report.stderr
    assert (
        report.stdout.strip()
        == f"Nothing matches {' '.join(filters)}: no verdicts, nothing to show."
    )
    runs = invoke("runs", "--db", str(history), *filters)
    assert runs.stdout.strip() == f"No runs match {' '.join(filters)}."
    exported = tmp_path / "v.csv"
    export = invoke("export", "--what", "verdicts", "--csv", str(exported), "--db", str(history),
                    *filters)  # fmt: skip
    assert export.code == 0, export.stderr
    assert f"exported 0 verdicts to {exported} (nothing matches {' '.join(filters)})" in (
        export.stderr
    )
    assert exported.read_text().count("\n") == 1  # the header only


def test_a_filter_on_a_network_that_has_data_shows_only_that_network(history: Path) -> None:
    report = invoke("report", "--db", str(history), "--network", "AS9009").stdout
    assert "AS9009" in report and "AS58224" not in report


def test_runs_shows_which_runs_the_collector_acknowledged(history: Path) -> None:
    from probe.store.uploads import Acknowledged, acknowledge

    assert not re.search(r" VPN +up\b", invoke("runs", "--db", str(history)).stdout)
    with Store.open(history) as store:
        acknowledge(store, [Acknowledged("aaaa1" + "0" * 27, None, done=True)])
        acknowledge(store, [Acknowledged("bbbb3" + "0" * 27, None, done=False)])  # half-way
    out = invoke("runs", "--db", str(history)).stdout
    assert re.search(r" VPN +up\b", out)
    rows = {cells[0]: cells[-1] for cells in _rows(out)}
    assert rows == {"bbbb3000": "no", "aaaa2000": "no", "aaaa1000": "yes"}


def test_runs_and_show_fit_80_columns_on_a_real_terminal(history: Path) -> None:
    from tests.cli import on_terminal

    for args in (["runs"], ["show", "bbbb"]):
        shown = on_terminal([*args, "--db", str(history)], columns=80, env={"NO_COLOR": "1"})
        assert shown.code == 0, shown.stdout
        assert max(len(line) for line in shown.stdout.splitlines()) <= 80
        assert args != ["runs"] or re.search(r" inc +VPN", shown.stdout)  # no column cut off
    listed = on_terminal(["runs", "--db", str(history)], columns=80, env={"NO_COLOR": "1"})
    # The network column may wrap, at spaces: every word of the name is whole.
    assert {"AS9009", "M247", "Europe", "SRL", "(RO)"} <= set(listed.stdout.split())


def test_evidence_names_the_harmless_half_and_the_repeat_connect() -> None:
    # "[sni]" once read as rich markup and vanished, leaving "443  ok"; the runner's second
    # connect to the same address looked like a duplicate row.
    harmless = tls(
        "twitter", "https://x.com/", "104.244.42.1", 443, "www.google.com",
        differential_kind=DifferentialKind.SNI, target_sni="x.com",
    )  # fmt: skip
    shown = evidence_line(harmless).plain
    assert shown.startswith("    tls 104.244.42.1:443 [sni] ok: SNI www.google.com (harmless")
    first = tcp("telegram", "149.154.167.51", "149.154.167.51", 443, "generic_timeout_error")
    repeat = tcp("telegram", "149.154.167.51", "149.154.167.51", 443, "generic_timeout_error",
                 attempt=2)  # fmt: skip
    assert evidence_line(first).plain == (
        "    tcp 149.154.167.51:443 generic_timeout_error (connect)"
    )
    assert evidence_line(repeat).plain == (
        "    tcp 149.154.167.51:443 generic_timeout_error (connect): repeat connect"
    )
