"""`probe import ooni`, `probe export --what ooni-agreement` and `probe export --format ooni` from
the command line: what a researcher sees, and a loopback run that goes out as OONI documents
and comes back with the same verdicts."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from typer.testing import CliRunner

from probe.cli.app import app
from probe.store import Store
from tests.servers import hostile
from tests.servers.background import background
from tests.servers.dns_server import Behaviour, FakeNameserver
from tests.servers.tls_certs import Pki


def invoke(*args: str) -> tuple[int, str, str]:
    if args and args[0] == "run":
        args = (*args, "--i-understand-the-risks")
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "250"})
    return result.exit_code, result.stdout, result.stderr


def test_import_prints_counts_per_experiment_and_the_agreement_table(
    ooni_dir: Path, tmp_path: Path
) -> None:
    db = str(tmp_path / "o.db")
    code, out, err = invoke("import", "ooni", str(ooni_dir), "--db", db)
    assert code == 0, err
    assert "55 document(s) read" in out and "55 imported" in out
    for line in (
        "web_connectivity: 30",
        "signal: 9",
        "telegram: 7",
        "whatsapp: 6",
        "facebook_messenger: 3",
    ):
        assert line in out
    row = next(line for line in out.splitlines() if "whatsapp_web_status" in line)
    assert [cell.strip() for cell in row.strip("│ ").split("│")] == [
        "whatsapp",
        "whatsapp_web_status",
        "4",
        "1",
        "1",
        "0",
        "0",
    ]
    code, out, _ = invoke("import", "ooni", str(ooni_dir), "--db", db)
    assert code == 0 and "0 imported, 55 already imported" in out


def test_export_ooni_agreement_lists_every_disagreement(ooni_dir: Path, tmp_path: Path) -> None:
    db = str(tmp_path / "o.db")
    invoke("import", "ooni", str(ooni_dir), "--db", db)
    code, out, err = invoke("export", "--what", "ooni-agreement", "--csv", "-", "--db", db)
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    listed = {(r["experiment"], r["key"], r["agreement"]) for r in rows}
    assert ("whatsapp", "whatsapp_web_status", "disagree") in listed
    assert ("signal", "signal_backend_status", "ours_undecided") in listed
    assert {r["agreement"] for r in rows} == {"disagree", "ours_undecided", "ooni_undecided"}
    disagree = [r for r in rows if r["agreement"] == "disagree"]
    # web_connectivity 3, telegram 1, whatsapp 1, facebook_dns_blocking + 7 dns_consistent.
    assert len(disagree) == 3 + 1 + 1 + 8
    indonesia = next(r for r in disagree if r["country"] == "ID")
    assert (indonesia["input"], indonesia["ooni"], indonesia["ours"]) == (
        "http://archive.org",
        "ok",
        "blocked",
    )


def test_a_bad_path_is_one_line_and_exit_1(tmp_path: Path) -> None:
    code, _, err = invoke(
        "import", "ooni", str(tmp_path / "nope.jsonl.gz"), "--db", str(tmp_path / "o.db")
    )
    assert code == 1
    assert err.strip().count("\n") == 0 and "no such file or folder" in err


def test_hostile_names_and_messages_are_escaped_on_the_terminal(tmp_path: Path) -> None:
    path = tmp_path / "evil.jsonl"
    path.write_text(
        json.dumps({"test_name": "evil\x1b]0;pwned\x07\u202e", "test_keys": {}})
        + "\n"
        + json.dumps(
            {
                "test_name": "telegram",
                "test_keys": {"queries": "\x1b[2J"},
                "measurement_start_time": "2024-01-01 00:00:00",
            }
        )
        + "\n"
    )
    code, out, err = invoke("import", "ooni", str(path), "--db", str(tmp_path / "o.db"))
    assert code == 0
    for text in (out, err):
        assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "skipped evil\\x1b]0;pwned\\x07\\u202e: 1" in out
    assert "malformed:" in err and "test_keys.queries: expected a list" in err


# -- a loopback run, exported as OONI documents and imported back ---------------------------------

PAGE = "<html><head><title>Loopback Platform</title></head><body>hello</body></html>"


def _page_app() -> web.Application:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    application = web.Application()
    application.router.add_route("*", "/{tail:.*}", page)
    return application


@pytest.fixture
def loopback_config(tmp_path: Path) -> Iterator[Path]:
    pki = Pki()
    ca_pem = tmp_path / "ca.pem"
    pki.ca.cert_pem.write_to_path(str(ca_pem))
    identity = pki.server("ok.lo.test", "control.lo.test")
    zone = {
        "ok.lo.test": Behaviour.answer(a=["127.0.0.1"]),
        "control.lo.test": Behaviour.answer(a=["127.0.0.1"]),
        "refused.lo.test": Behaviour.answer(a=["127.0.0.1"]),
        "nx.lo.test": Behaviour.nxdomain(),
    }
    with (
        FakeNameserver(zone) as ns,
        background(
            lambda: hostile.web_app(_page_app(), ssl_context=identity.context),
            hostile.refused_port,
        ) as (https, refused),
    ):
        catalog = tmp_path / "catalog"
        catalog.mkdir()
        (catalog / "lo.toml").write_text(
            f'platform = "lo"\n[[targets]]\nurl = "https://ok.lo.test:{https.port}/"\n'
            f'[[targets]]\nkind = "tcp"\nhost = "refused.lo.test"\nports = [{refused.port}]\n'
            '[[targets]]\nkind = "dns"\nhost = "nx.lo.test"\n'
        )
        (catalog / "controls.toml").write_text(
            'platform = "control"\ncontrol = true\n[[targets]]\n'
            f'url = "https://control.lo.test:{https.port}/"\n'
        )
        config = tmp_path / "config.toml"
        config.write_text(
            '[probe]\nplatforms = ["lo"]\n'
            "[timeouts]\ndns = 1.0\nconnect = 1.0\ntls = 1.0\nhttp = 2.0\n"
            f'[dns]\nresolvers = ["{ns.udp_spec}"]\nsecond_answer_window = 0.05\n'
            f'[tls]\nca_file = "{ca_pem}"\n[catalog]\ndir = "{catalog}"\n'
        )
        yield config


def test_a_loopback_run_exported_as_ooni_imports_back_to_the_same_verdicts(
    loopback_config: Path, tmp_path: Path
) -> None:
    mine, back = str(tmp_path / "mine.db"), str(tmp_path / "back.db")
    code, _, err = invoke("run", "--config", str(loopback_config), "--db", mine)
    assert code == 0, err
    export = tmp_path / "mine.jsonl"
    code, _, err = invoke("export", "--format", "ooni", "--jsonl", str(export), "--db", mine)
    assert code == 0, err
    documents = [json.loads(line) for line in export.read_text().splitlines()]
    assert {d["test_name"] for d in documents} == {"web_connectivity", "urlgetter"}
    assert all(d["software_name"] == "censorprobe" for d in documents)
    code, out, err = invoke("import", "ooni", str(export), "--db", back)
    assert code == 0, err
    with Store.open(mine) as original, Store.open(back) as imported:
        (run,) = original.runs()
        ours = [
            (v.platform, v.target, v.status, v.technique, v.rule_id)
            for v in original.verdicts(run_id=run.id)
        ]
        again = [
            (v.platform, v.target, v.status, v.technique, v.rule_id)
            for v in imported.verdicts(run_id=run.id)
        ]
        assert len(list(imported.measurements(run_id=run.id))) == len(
            list(original.measurements(run_id=run.id))
        )
    assert again == ours
    statuses = {status for _, _, status, _, _ in ours}
    assert len(statuses) >= 2  # the run had both working and failing targets
    # Importing our export into the database it came from adds nothing.
    code, out, _ = invoke("import", "ooni", str(export), "--db", mine)
    assert code == 0 and " 0 imported" in out


def test_a_merged_import_keeps_its_provenance_and_agreement(ooni_dir: Path, tmp_path: Path) -> None:
    imported, merged = str(tmp_path / "o.db"), str(tmp_path / "all.db")
    invoke("import", "ooni", str(ooni_dir), "--db", imported)
    code, out, err = invoke("merge", imported, "--into", merged)
    assert code == 0, err
    assert "annotations: 55 new of 55" in out
    with Store.open_readonly(imported) as before, Store.open_readonly(merged) as after:
        kept = list(after.annotations("ooni:"))
        assert kept == list(before.annotations("ooni:"))
    provenance = [json.loads(value) for _, value in kept]
    # Every annotation as imported (above); the ids of the documents that carry them.
    assert sum(1 for p in provenance if p["report_id"]) == 52
    assert sum(1 for p in provenance if p["measurement_uid"]) == 9
    listed = [
        invoke("export", "--what", "ooni-agreement", "--csv", "-", "--db", db)[1]
        for db in (imported, merged)
    ]
    assert listed[0] == listed[1] and listed[0].count("\n") > 10
    code, out, _ = invoke("merge", imported, "--into", merged)
    assert code == 0 and "annotations: 0 new of 55" in out  # idempotent
